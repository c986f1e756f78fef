"""Serving tenants: each tenant's VirtualCluster events in order, tenants side by side."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from aiohttp import web

from syncer.engine import serving as serving_mod
from syncer.engine import tenant as tenant_mod
from syncer.engine.metrics import Metrics
from syncer.engine.queue import FairQueue
from syncer.engine.serving import KeyedLock, Serving
from syncer.engine.tenant import TOKEN_ADMISSION, TenantRuntime
from syncer.resources.context import TenantContext
from syncer.settings import SyncerOptions
from tests.unit.loopback import serving
from tispace import aio, api, kubeconfig
from tispace.kube.client import ApiError, Client
from tispace.naming import RootNamespace

DEAD = kubeconfig.Credentials(server="http://127.0.0.1:9", ca_pem=b"")


async def test_a_keyed_lock_orders_one_key_and_not_two() -> None:
    locks = KeyedLock()
    order: list[str] = []
    a_held = asyncio.Event()
    release_a = asyncio.Event()

    async def first_a() -> None:
        async with locks.hold("a"):
            a_held.set()
            await release_a.wait()
            order.append("a1")

    async def second_a() -> None:
        async with locks.hold("a"):
            order.append("a2")

    async def b() -> None:
        async with locks.hold("b"):
            order.append("b")

    t1 = asyncio.create_task(first_a())
    await a_held.wait()
    t2 = asyncio.create_task(second_a())
    await asyncio.wait_for(b(), 5)  # "b" does not wait for "a"
    release_a.set()
    await asyncio.gather(t1, t2)
    assert order == ["b", "a1", "a2"]
    assert len(locks) == 0  # nothing kept once nobody holds or waits


async def test_a_keyed_lock_is_dropped_after_an_error_or_a_cancel() -> None:
    locks = KeyedLock()
    with pytest.raises(RuntimeError):
        async with locks.hold("a"):
            raise RuntimeError("boom")
    held = asyncio.Event()

    async def hold_forever() -> None:
        async with locks.hold("a"):
            held.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await held.wait()
    waiter = asyncio.create_task(locks.hold("a").__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    task.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)
    assert len(locks) == 0


def _vc(name: str, phase: str = api.Phase.RUNNING, generation: int = 1, observed: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "generation": generation},
        "status": {"phase": phase, "observedGeneration": observed},
    }


@pytest.fixture(autouse=True)
def probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The token probe (tenant_mod.token_signer) answers at once, with a signer named for the tenant
    and how many probes it took; the tenants probed, in order."""
    probed: list[str] = []

    async def token_signer(super_client: Client, client: Client, root: str, name: str) -> Any:
        probed.append(name)
        return f"{name}#{len(probed)}"

    monkeypatch.setattr(tenant_mod, "token_signer", token_signer)
    return probed


def _runtime(vc: dict[str, Any]) -> TenantRuntime:
    """What connecting to the tenant of `vc` gives, without an API server (no kinds: no informers)."""
    name = vc["metadata"]["name"]
    ctx = TenantContext(root=RootNamespace(f"root-{name}"), vc_name=name, vc_namespace="default")
    return TenantRuntime(f"default/{name}", ctx, Client(DEAD, name=name), 1, lambda t, k: None, [])


async def _connect(vc: dict[str, Any], sup: Client, *args: Any) -> TenantRuntime:
    return _runtime(vc)


def _slow_connects(monkeypatch: pytest.MonkeyPatch, *names: str) -> asyncio.Event:
    """Connecting these tenants (every tenant if none is named) waits for the event returned: a
    tenant API server slow to answer."""
    gate = asyncio.Event()

    async def connect(vc: dict[str, Any], sup: Client, *args: Any) -> TenantRuntime:
        if not names or vc["metadata"]["name"] in names:
            await gate.wait()
        return _runtime(vc)

    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", connect)
    return gate


@pytest.fixture
async def super_client() -> Any:
    async with Client(DEAD, name="super") as c:
        yield c


def _serving(super_client: Client) -> Serving:
    queue: FairQueue[Any] = FairQueue()

    async def started(t: TenantRuntime) -> None:
        return None

    return Serving(
        super_client,
        SyncerOptions(),
        queue,
        Metrics(queue),
        [],
        None,
        enqueue=lambda tenant, key: None,
        started=started,
        changed=lambda t: None,
        stopped=lambda name: None,
    )


async def test_a_slow_tenant_does_not_hold_back_the_others(
    super_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted syncer connects every tenant side by side: one slow API server delays only its own."""
    gate = _slow_connects(monkeypatch, "slow")
    s = _serving(super_client)
    names = ["slow", "a", "b"]
    for n in names:
        s.vcs.cache[("default", n)] = _vc(n)
    task = asyncio.create_task(s.serve_all(s.unserved()))
    try:
        await aio.poll(lambda: len(s.tenants) == 2, timeout=5, interval=0.01, what="two tenants served")
        assert sorted(s.tenants) == ["default/a", "default/b"]
        gate.set()
        await asyncio.wait_for(task, 5)
        assert sorted(s.tenants) == [f"default/{n}" for n in sorted(names)]
        assert s.by_root == {f"root-{n}": f"default/{n}" for n in names}
    finally:
        for n in list(s.tenants):
            await s.stop(n)


async def test_a_tenant_that_cannot_be_claimed_or_fails_is_logged_and_the_others_served(
    super_client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def claim(name: str) -> bool:
        if name == "default/held":
            raise ApiError(409, {"reason": "Conflict"}, "PUT", "/leases/held")
        if name == "default/broken":
            raise KeyError("kubeconfig")  # anything unexpected: logged with its traceback
        return True

    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", _connect)
    s = _serving(super_client)
    monkeypatch.setattr(s, "_claim", claim)
    for n in ("held", "broken", "free"):
        s.vcs.cache[("default", n)] = _vc(n)
    try:
        await s.serve_all(s.unserved())
        assert list(s.tenants) == ["default/free"]
        assert "tenant default/held not served yet" in caplog.text
        assert "tenant default/broken not served yet" in caplog.text and "KeyError" in caplog.text
    finally:
        for n in list(s.tenants):
            await s.stop(n)


class _Shard:
    """A shard of one replica that owns every tenant; counts its heartbeats."""

    duration = 15.0
    renew_period = 0.01

    def __init__(self) -> None:
        self.heartbeats = 0

    async def heartbeat(self) -> None:
        self.heartbeats += 1

    def mine(self, tenant: str) -> bool:
        return True

    async def acquire(self, tenant: str) -> bool:
        return True

    async def release(self, tenant: str) -> None:
        return None


async def test_a_tenant_slow_to_connect_does_not_stop_the_shard_heartbeat(
    super_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without heartbeats the other replicas would take this one's tenants while it still serves them."""
    gate = _slow_connects(monkeypatch)
    s = _serving(super_client)
    shard = _Shard()
    s.shard = shard  # type: ignore[assignment]
    s.vcs.cache[("default", "slow")] = _vc("slow")
    loop = asyncio.create_task(s.shard_loop(shard))  # type: ignore[arg-type]
    try:
        await aio.poll(
            lambda: shard.heartbeats >= 5, timeout=5, interval=0.01, what="heartbeats while connecting"
        )
        assert not s.tenants
        gate.set()
        await aio.poll(
            lambda: "default/slow" in s.tenants, timeout=5, interval=0.01, what="the tenant served"
        )
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        for n in list(s.tenants):
            await s.stop(n)


async def test_a_tenant_whose_first_writes_hang_is_given_up_and_its_slot_freed(
    super_client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def started(t: TenantRuntime) -> None:
        await asyncio.Event().wait()  # an API server that accepts connections and never answers

    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", _connect)
    monkeypatch.setattr(serving_mod, "STARTED_TIMEOUT", 0.01)
    s = _serving(super_client)
    s._started = started
    s.vcs.cache[("default", "frozen")] = _vc("frozen")
    await asyncio.wait_for(s.serve_all(s.unserved()), 30)  # a bound, not a timing
    assert not s.tenants and not s.by_root and len(s._locks) == 0
    assert "tenant default/frozen not served yet" in caplog.text


async def test_a_tenant_whose_first_writes_fail_with_a_bug_is_not_left_half_served(
    super_client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Served but never started, its informers would never list and its keys would wait for good."""

    async def started(t: TenantRuntime) -> None:
        raise KeyError("webhook")

    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", _connect)
    s = _serving(super_client)
    s._started = started
    s.vcs.cache[("default", "buggy")] = _vc("buggy")
    await asyncio.wait_for(s.serve_all(s.unserved()), 30)  # a bound, not a timing
    assert not s.tenants and not s.by_root and s.queue.tenants() == []
    assert "tenant default/buggy not served yet" in caplog.text and "KeyError" in caplog.text


async def test_a_virtual_cluster_event_that_fails_is_logged_with_its_traceback(
    super_client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An event's task is awaited by nobody: its failure must reach the log, not asyncio's
    "exception was never retrieved" at collection."""

    async def claim(name: str) -> bool:
        raise KeyError("kubeconfig")

    s = _serving(super_client)
    monkeypatch.setattr(s, "_claim", claim)
    s.vcs.cache[("default", "broken")] = _vc("broken")
    s._on_vc(("default", "broken"), None, _vc("broken"))
    (task,) = s._vc_tasks
    await task
    assert task.exception() is None
    assert "tenant default/broken not served yet" in caplog.text and "KeyError" in caplog.text


def _hanging(s: Serving) -> list[str]:
    """Tenants of `s` connect, then their first writes hang (an API server that never answers); returns
    the names of the tenants stopped."""
    stopped: list[str] = []

    async def started(t: TenantRuntime) -> None:
        await asyncio.Event().wait()

    s._started = started
    s._stopped = stopped.append
    return stopped


def _turns_running(s: Serving, name: str) -> tuple[tuple[str, str], dict[str, Any]]:
    """The VirtualCluster `name` is Running: cached, and its event handled."""
    key, vc = ("default", name), _vc(name)
    s.vcs.cache[key] = vc
    s._on_vc(key, None, vc)
    return key, vc


async def test_a_virtual_cluster_deleted_while_its_tenant_connects_stops_it_at_once(
    super_client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The connect holds the tenant's lock for up to STARTED_TIMEOUT (30 s): the stop does not wait
    for it, the connect is given up, and its tenant is stopped and its client closed."""
    caplog.set_level(logging.INFO, logger="syncer")
    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", _connect)
    s = _serving(super_client)
    stopped = _hanging(s)
    key, vc = _turns_running(s, "gone")
    await aio.poll(lambda: "default/gone" in s.tenants, timeout=5, interval=0.01, what="connecting")
    client = s.tenants["default/gone"].client
    del s.vcs.cache[key]
    s._on_vc(key, vc, None)
    await asyncio.wait_for(asyncio.gather(*s._vc_tasks), 10)  # a bound, far under STARTED_TIMEOUT
    assert not s.tenants and not s.by_root and len(s._locks) == 0 and not s._connecting_now
    assert stopped == ["default/gone"] and client._pool._closed
    assert "tenant default/gone: connect given up" in caplog.text and "Traceback" not in caplog.text


async def test_two_events_that_give_a_connect_up_end_only_that_connect(
    super_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connect retried by the serve round (a child of its gather), then the VirtualCluster in Error
    and deleted in one go: the round ends as usual (a cancel that escaped would end the serve loop
    for good), and the tenant is stopped once."""
    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", _connect)
    s = _serving(super_client)
    stopped = _hanging(s)
    key, vc = ("default", "twice"), _vc("twice")
    s.vcs.cache[key] = vc
    round_ = asyncio.create_task(s.serve_all(s.unserved()))
    await aio.poll(lambda: "default/twice" in s.tenants, timeout=5, interval=0.01, what="connecting")
    broken = _vc("twice", api.Phase.ERROR)
    s.vcs.cache[key] = broken
    s._on_vc(key, vc, broken)
    del s.vcs.cache[key]
    s._on_vc(key, broken, None)
    await asyncio.wait_for(round_, 10)  # a bound, not a timing; raises if the cancel escaped
    await asyncio.wait_for(asyncio.gather(*s._vc_tasks), 10)
    assert not s.tenants and stopped == ["default/twice"] and not s._connecting_now and not s._given_up


async def test_a_tenant_stopped_after_a_failed_connect_is_stopped_whole_if_deleted_meanwhile(
    super_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its first writes failed and it is being stopped when its VirtualCluster goes: nothing cuts
    the stop short (its client closed, with shards its Lease handed back)."""
    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", _connect)
    s = _serving(super_client)
    stopping, finish = asyncio.Event(), asyncio.Event()
    plain_stop = TenantRuntime.stop
    closed: list[str] = []

    async def started(t: TenantRuntime) -> None:
        raise ConnectionRefusedError("its API server went away")

    async def slow_stop(t: TenantRuntime) -> None:
        stopping.set()
        await finish.wait()
        await plain_stop(t)
        closed.append(t.ctx.vc_name)

    s._started = started
    monkeypatch.setattr(TenantRuntime, "stop", slow_stop)
    key, vc = _turns_running(s, "late")
    await asyncio.wait_for(stopping.wait(), 10)  # a bound, not a timing
    del s.vcs.cache[key]
    s._on_vc(key, vc, None)
    finish.set()
    await asyncio.wait_for(asyncio.gather(*s._vc_tasks), 10)
    assert not s.tenants and not s._connecting_now and closed == ["late"]


async def test_a_tenant_that_stays_running_is_not_given_up_by_its_events(
    super_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _slow_connects(monkeypatch)
    s = _serving(super_client)
    key, vc = _turns_running(s, "kept")
    await aio.poll(lambda: "default/kept" in s._connecting_now, timeout=5, interval=0.01, what="connecting")
    s._on_vc(key, vc, vc)  # a status update, still Running
    gate.set()
    await asyncio.wait_for(asyncio.gather(*s._vc_tasks), 10)  # a bound, not a timing
    try:
        assert list(s.tenants) == ["default/kept"]
    finally:
        await s.stop("default/kept")


async def test_a_syncer_stopping_while_a_tenant_connects_stops_the_tenant_and_is_not_held(
    super_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", _connect)
    s = _serving(super_client)
    stopped = _hanging(s)
    s.vcs.cache[("default", "busy")] = _vc("busy")
    serving = asyncio.create_task(s.serve_all(s.unserved()))
    await aio.poll(lambda: "default/busy" in s.tenants, timeout=5, interval=0.01, what="connecting")
    client = s.tenants["default/busy"].client
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert not s.tenants and stopped == ["default/busy"] and client._pool._closed
    assert len(s._locks) == 0 and not s._connecting_now


async def test_a_spec_change_has_the_tenant_sign_until_it_is_rolled_out_then_is_probed_again(
    super_client: Client, monkeypatch: pytest.MonkeyPatch, probes: list[str]
) -> None:
    """A spec change (a cluster domain is the token issuer's) reaches the control plane when the
    manager reports its generation observed: meanwhile the syncer's tokens could name the old issuer."""
    monkeypatch.setattr(serving_mod.TenantRuntime, "connect", _connect)
    s = _serving(super_client)
    key, vc = _turns_running(s, "dev")
    await asyncio.wait_for(asyncio.gather(*s._vc_tasks), 10)  # a bound, not a timing
    try:
        t = s.tenants["default/dev"]
        assert (t.ctx.token_signer, probes) == ("default/dev#1", ["default/dev"])

        async def changed(generation: int, observed: int) -> None:
            s.vcs.cache[key] = new = _vc("dev", generation=generation, observed=observed)
            s._on_vc(key, vc, new)
            await asyncio.wait_for(asyncio.gather(*s._vc_tasks), 10)

        await changed(2, 1)  # being rolled out: the tenant signs
        assert t.ctx.token_signer is None and len(probes) == 1
        await changed(2, 2)  # rolled out: probed again
        assert t.ctx.token_signer == "default/dev#2"
        await changed(2, 2)  # a status update: no probe
        assert len(probes) == 2
    finally:
        await s.stop("default/dev")


def _token_webhook(name: str, resources: list[str]) -> dict[str, Any]:
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": resources}
    return {"metadata": {"name": name, "resourceVersion": "2"}, "webhooks": [{"name": "w", "rules": [rule]}]}


async def test_a_tenant_whose_webhooks_or_policies_act_on_token_requests_signs_its_pods_tokens(
    super_client: Client, probes: list[str]
) -> None:
    """Upstream's API server has its admission see every TokenRequest: while a tenant's webhook
    configuration or admission policy may act on one, the tenant signs; once none does, the syncer."""
    events: dict[str, asyncio.Queue[dict[str, Any] | None]] = {
        res.plural: asyncio.Queue() for res in TOKEN_ADMISSION
    }
    listed = {
        "validatingwebhookconfigurations": [_token_webhook("quota", ["pods"])],  # acts on pods alone
        "mutatingadmissionpolicies": [],
    }

    async def handler(request: web.Request) -> web.StreamResponse:
        plural = request.match_info["plural"]
        if request.query.get("watch") != "1":
            return web.json_response({"metadata": {"resourceVersion": "1"}, "items": listed.get(plural, [])})
        resp = web.StreamResponse()
        await resp.prepare(request)
        while (event := await events[plural].get()) is not None:
            await resp.write(orjson.dumps(event) + b"\n")
        return resp

    app = web.Application()
    app.router.add_get("/apis/admissionregistration.k8s.io/v1/{plural}", handler)
    async with serving(app) as creds:
        ctx = TenantContext(root=RootNamespace("root-dev"), vc_name="dev", vc_namespace="default")
        t = TenantRuntime("default/dev", ctx, Client(creds), 1, lambda *_: None, [], None, TOKEN_ADMISSION)
        await t.sign_tokens(super_client, _vc("dev"), enabled=True)
        assert t.ctx.token_signer is None  # probed, but what may act on TokenRequests is not listed yet
        t.start()
        try:

            async def signer_is(want: Any) -> None:
                await aio.poll(lambda: t.ctx.token_signer == want, timeout=5, interval=0.01, what=str(want))

            await signer_is("default/dev#1")
            audit = _token_webhook("audit", ["serviceaccounts/token"])
            await events["validatingwebhookconfigurations"].put({"type": "ADDED", "object": audit})
            await signer_is(None)
            policy = {"metadata": {"name": "p", "resourceVersion": "3"}, "spec": {"matchConstraints": {}}}
            policy["spec"]["matchConstraints"]["resourceRules"] = audit["webhooks"][0]["rules"]
            webhooks, policies = t.token_admission[1], t.token_admission[2]
            await events["mutatingadmissionpolicies"].put({"type": "ADDED", "object": policy})
            await aio.poll(lambda: len(policies.cache) == 1, timeout=5, interval=0.01, what="the policy")
            narrowed = {**audit, "webhooks": [{"name": "w", "rules": []}]}
            await events["validatingwebhookconfigurations"].put({"type": "MODIFIED", "object": narrowed})
            await aio.poll(lambda: not webhooks.cache, timeout=5, interval=0.01, what="the webhook narrowed")
            assert t.ctx.token_signer is None  # the policy alone holds the syncer off
            await events["mutatingadmissionpolicies"].put({"type": "DELETED", "object": policy})
            await signer_is("default/dev#1")  # neither acts on TokenRequests any more
            assert probes == ["default/dev"]
            await t.sign_tokens(super_client, _vc("dev"), enabled=False)  # --no-sign-tokens
            assert t.ctx.token_signer is None and probes == ["default/dev"]
        finally:
            await t.stop()
            for queue in events.values():  # the server's watches end
                queue.put_nowait(None)


@pytest.mark.parametrize(
    ("versions", "signs"),
    [
        ({"v1": []}, True),  # v1.35 as it comes: no MutatingAdmissionPolicy in any version
        ({"v1": [], "v1beta1": ["mutatingadmissionpolicies"]}, False),  # v1beta1 turned on
    ],
)
async def test_an_api_server_older_than_mutating_admission_policies_v1_has_the_syncer_sign_if_it_serves_none(
    super_client: Client,
    probes: list[str],
    caplog: pytest.LogCaptureFixture,
    versions: dict[str, list[str]],
    signs: bool,
) -> None:
    """Kubernetes v1.35 serves no MutatingAdmissionPolicy v1 (404): the syncer signs when no other
    version serves them either (none can act on a TokenRequest), and the tenant when one does; the v1
    list is asked again after a minute, not every few seconds."""
    asked: list[str] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        plural = request.match_info["plural"]
        asked.append(plural)
        if plural == "mutatingadmissionpolicies":
            raise web.HTTPNotFound()
        if request.query.get("watch") != "1":
            return web.json_response({"metadata": {"resourceVersion": "1"}, "items": []})
        resp = web.StreamResponse()
        await resp.prepare(request)
        await done.wait()  # a quiet watch
        return resp

    async def group(request: web.Request) -> web.Response:
        gvs = [{"groupVersion": f"admissionregistration.k8s.io/{v}", "version": v} for v in versions]
        return web.json_response({"kind": "APIGroup", "versions": gvs})

    async def version(request: web.Request) -> web.Response:
        names = versions[request.match_info["version"]]
        return web.json_response({"kind": "APIResourceList", "resources": [{"name": n} for n in names]})

    app = web.Application()
    app.router.add_get("/apis/admissionregistration.k8s.io", group)
    app.router.add_get("/apis/admissionregistration.k8s.io/{version}", version)
    app.router.add_get("/apis/admissionregistration.k8s.io/v1/{plural}", handler)
    caplog.set_level(logging.INFO, logger="syncer.informer")
    async with serving(app) as creds:
        ctx = TenantContext(root=RootNamespace("root-old"), vc_name="old", vc_namespace="default")
        t = TenantRuntime("default/old", ctx, Client(creds), 1, lambda *_: None, [], None, TOKEN_ADMISSION)
        await t.sign_tokens(super_client, _vc("old"), enabled=True)
        t.start()
        try:
            policies = t.token_admission[2]

            def answered() -> bool:
                return any("not served" in r.getMessage() for r in caplog.records) and all(
                    i.synced.is_set() for i in t.token_admission if i is not policies
                )

            await aio.poll(answered, timeout=5, interval=0.01, what="the 404 answered")
            assert t.ctx.token_signer == ("default/old#1" if signs else None)
            assert asked.count("mutatingadmissionpolicies") == 1
            assert policies.absent is signs
        finally:
            await t.stop()
            done.set()
