"""The virtual nodes' heartbeat loop."""

import asyncio
import datetime
import time
import types
from collections import Counter
from typing import Any

import aiohttp
import pytest

from syncer.engine import vnodes
from syncer.resources import nodes
from tispace.kube.client import ApiError


def _node(name: str, made: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": made}}


def _tenant(name: str, nodes: list[str]) -> types.SimpleNamespace:
    synced = asyncio.Event()
    synced.set()
    informer = types.SimpleNamespace(synced=synced, cache={("", n): _node(n) for n in nodes})
    return types.SimpleNamespace(
        name=name,
        informers={"Node": informer},
        vnode_idle_since={},
        lease_renewed={},
        renewals_read=True,
        pods_per_node=lambda: Counter(nodes),
        client=None,
        ctx=types.SimpleNamespace(node_selector=None),  # nodes on demand
    )


async def test_every_tenants_leases_are_renewed_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant whose API server is slow must not hold back the others' Leases (one after another,
    20 tenants of 90 nodes took longer than a Lease lasts and every node went NotReady)."""
    tenants = {"slow": _tenant("slow", ["n1"]), "fast": _tenant("fast", ["n1", "n2"])}
    fast_done = asyncio.Event()
    renewed: list[tuple[str, str]] = []

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        if t.name == "slow":
            await fast_done.wait()  # finishes only once the other tenant's are done
        renewed.append((t.name, node["metadata"]["name"]))
        if len([r for r in renewed if r[0] == "fast"]) == 2:
            fast_done.set()

    monkeypatch.setattr(vnodes, "renew_lease", renew)
    super_nodes = types.SimpleNamespace(get=lambda ns, name: None)
    loop = asyncio.create_task(vnodes.node_loop(tenants, super_nodes))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(
            fast_done.wait(), 30
        )  # a bound, not a timing: one after another never gets here
        while ("slow", "n1") not in renewed:
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
    assert renewed == [("fast", "n1"), ("fast", "n2"), ("slow", "n1")]


async def test_a_node_without_pods_goes_after_its_grace_and_a_busy_one_is_renewed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deleted: list[str] = []
    renewed: list[str] = []
    t = _tenant("t", ["busy", "idle", "fresh"])
    t.pods_per_node = lambda: Counter(["busy", "busy"])  # two pods on one node, none elsewhere
    t.vnode_idle_since["idle"] = 0.0  # idle since long ago; "fresh" only from now on

    async def delete(res: object, name: str) -> None:
        deleted.append(name)

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        renewed.append(node["metadata"]["name"])

    t.client = types.SimpleNamespace(delete=delete)
    monkeypatch.setattr(vnodes, "renew_lease", renew)
    super_nodes = types.SimpleNamespace(get=lambda ns, name: None)  # no super node selects them
    loop = asyncio.create_task(vnodes.node_loop({"t": t}, super_nodes))  # type: ignore[arg-type]
    try:
        while len(deleted) + len(renewed) < 3:
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
    assert deleted == ["idle"] and sorted(renewed) == ["busy", "fresh"]
    assert "idle" not in t.vnode_idle_since and "fresh" in t.vnode_idle_since


async def test_a_tenants_leases_are_renewed_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hundred renewals at once opened a hundred connections (and TLS handshakes) every round."""
    t = _tenant("t", [f"n{i}" for i in range(30)])
    in_flight, most, done = 0, 0, 0

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        nonlocal in_flight, most, done
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        done += 1

    monkeypatch.setattr(vnodes, "renew_lease", renew)
    super_nodes = types.SimpleNamespace(get=lambda ns, name: None)
    loop = asyncio.create_task(vnodes.node_loop({"t": t}, super_nodes))  # type: ignore[arg-type]
    try:
        while done < 30:
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
    assert most == vnodes.RENEWALS_IN_FLIGHT


async def test_a_frozen_tenant_holds_back_only_its_own_next_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant API server that never answers must not stop another tenant's Leases from being
    renewed round after round (its node controller would mark every node NotReady)."""
    tenants = {"frozen": _tenant("frozen", ["a", "b"]), "fine": _tenant("fine", ["n1"])}
    never = asyncio.Event()
    calls: list[tuple[str, str]] = []

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        calls.append((t.name, node["metadata"]["name"]))
        if t.name == "frozen":
            await never.wait()

    monkeypatch.setattr(vnodes, "renew_lease", renew)
    monkeypatch.setattr(vnodes, "NODE_PERIOD", 0.01)
    monkeypatch.setattr(vnodes, "RENEW_PERIOD", 0.0)  # every round
    super_nodes = types.SimpleNamespace(get=lambda ns, name: None)
    loop = asyncio.create_task(vnodes.node_loop(tenants, super_nodes))  # type: ignore[arg-type]

    async def fine_renewed_five_times() -> None:
        while calls.count(("fine", "n1")) < 5:
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(fine_renewed_five_times(), 30)  # a bound, not a timing
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    # the frozen tenant's one round is still in flight: no second round was piled onto it
    assert sorted(c for c in calls if c[0] == "frozen") == [("frozen", "a"), ("frozen", "b")]


async def test_a_lease_is_renewed_when_due_not_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rounds come every NODE_PERIOD (idle nodes go on time); a Lease is written only once its last
    renewal is RENEW_PERIOD old, as a kubelet renews at a quarter of the Lease's duration. A node
    made on demand just now has its Lease from its making (the pod's binding): written again at the
    next round, each new node cost an extra write. A selected node is made without one."""
    t = _tenant("t", ["old", "recent", "new", "made-now", "selected-now"])
    for name in ("made-now", "selected-now"):
        t.informers["Node"].cache[("", name)] = _node(name, nodes.seconds_now())
    t.lease_renewed.update({"old": time.monotonic() - vnodes.RENEW_PERIOD, "recent": time.monotonic()})
    t.ctx.node_selector = {}  # every super node there is: only selected-now's
    renewed: list[str] = []

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        renewed.append(node["metadata"]["name"])

    monkeypatch.setattr(vnodes, "renew_lease", renew)
    monkeypatch.setattr(vnodes, "NODE_PERIOD", 0.01)
    selected_now = {"metadata": {"name": "selected-now", "labels": {}}}
    super_nodes = types.SimpleNamespace(get=lambda ns, name: selected_now if name == "selected-now" else None)
    loop = asyncio.create_task(vnodes.node_loop({"t": t}, super_nodes))  # type: ignore[arg-type]
    try:
        while len(renewed) < 2:  # the first round renews all that are due at once
            await asyncio.sleep(0.01)
        for _ in range(5):  # five more rounds: nothing else is due for a minute
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    # a node this process never renewed, made long ago (by an earlier syncer), is due at once
    assert sorted(renewed) == ["new", "old", "selected-now"]
    assert t.lease_renewed["old"] >= t.lease_renewed["recent"] and "new" in t.lease_renewed


async def test_a_renewal_sends_the_whole_lease_and_makes_a_missing_one() -> None:
    """The merge patch carries the owner, so a Lease made before Leases had one gets it; a Lease
    someone deleted is made again, owned by its node."""
    sent: list[tuple[str, dict[str, Any]]] = []

    async def patch(res: object, name: str, body: dict[str, Any], namespace: str) -> None:
        sent.append(("patch", body))
        raise ApiError(404, {"message": "not found"}, "PATCH", name)

    async def create(res: object, body: dict[str, Any], namespace: str) -> None:
        sent.append(("create", body))

    t = _tenant("t", ["n1"])
    t.client = types.SimpleNamespace(patch=patch, create=create)
    now = "2026-12-06T00:00:00.000000Z"
    await vnodes.renew_lease(t, _node("n1"), now)  # type: ignore[arg-type]
    assert [verb for verb, _ in sent] == ["patch", "create"]
    for _, lease in sent:
        assert lease["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-n1"}
        ]
        assert lease["spec"] == {
            "holderIdentity": "n1",
            "leaseDurationSeconds": nodes.LEASE_SECONDS,
            "renewTime": now,
        }


def test_an_api_server_clock_ahead_does_not_put_a_new_nodes_lease_off() -> None:
    """A node made "an hour from now" by the syncer's clock counts as made just now."""
    t = _tenant("t", ["n1"])
    ahead = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    node = _node("n1", ahead.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert vnodes.last_renewal(t, node, on_demand=True) <= time.monotonic()  # type: ignore[arg-type]


def _renewed(name: str, ago: float) -> dict[str, Any]:
    at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ago)
    return {"metadata": {"name": name}, "spec": {"renewTime": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}


async def test_a_restarted_syncer_renews_only_the_leases_due_by_their_renew_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first round reads the tenant's Leases (one list) instead of renewing every Lease at once:
    one renewed 10 s ago waits, one renewed two periods ago, or without a time, is renewed now."""
    t = _tenant("t", ["fresh", "stale", "timeless", "missing"])
    t.renewals_read = False
    listed: list[str] = []

    async def list_leases(res: object, namespace: str) -> dict[str, Any]:
        listed.append(namespace)
        timeless = {"metadata": {"name": "timeless"}, "spec": {}}
        gone = _renewed("gone", 10)  # a Lease whose node is gone is not remembered
        return {"items": [_renewed("fresh", 10), _renewed("stale", 2 * vnodes.RENEW_PERIOD), timeless, gone]}

    renewed: list[str] = []

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        renewed.append(node["metadata"]["name"])

    t.client = types.SimpleNamespace(list=list_leases)
    monkeypatch.setattr(vnodes, "renew_lease", renew)
    super_nodes = types.SimpleNamespace(get=lambda ns, name: None)
    await vnodes._tend_all(t, "now", {"t": t}, super_nodes)  # type: ignore[arg-type]
    await vnodes._tend_all(t, "now", {"t": t}, super_nodes)  # type: ignore[arg-type]
    assert listed == [nodes.LEASE_NAMESPACE]  # read once
    assert sorted(renewed) == ["missing", "stale", "timeless"]
    assert "gone" not in t.lease_renewed and t.renewals_read


@pytest.mark.parametrize(
    "error",
    [
        ApiError(503, {"message": "etcd is down"}, "GET", "leases"),
        aiohttp.ServerDisconnectedError("etcd is down"),  # a transport error that is no OSError
    ],
)
async def test_leases_that_cannot_be_read_are_renewed_and_read_next_round(
    error: Exception, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    t = _tenant("t", ["n1"])
    t.renewals_read = False

    async def list_leases(res: object, namespace: str) -> dict[str, Any]:
        raise error

    renewed: list[str] = []

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        renewed.append(node["metadata"]["name"])

    t.client = types.SimpleNamespace(list=list_leases)
    monkeypatch.setattr(vnodes, "renew_lease", renew)
    await vnodes._tend_all(t, "now", {"t": t}, types.SimpleNamespace(get=lambda ns, name: None))  # type: ignore[arg-type]
    assert renewed == ["n1"] and not t.renewals_read
    assert "virtual node Leases not read" in caplog.text and "etcd is down" in caplog.text


def test_lease_ages_read_renew_times_and_leave_out_the_unreadable() -> None:
    now = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
    leases = [
        {"metadata": {"name": "a"}, "spec": {"renewTime": "2026-12-06T11:59:30.000000Z"}},
        {"metadata": {"name": "ahead"}, "spec": {"renewTime": "2026-12-06T12:05:00.000000Z"}},
        {"metadata": {"name": "zoneless"}, "spec": {"renewTime": "2026-12-06T11:59:30"}},
        {"metadata": {"name": "garbled"}, "spec": {"renewTime": "yesterday"}},
        {"metadata": {"name": "none"}, "spec": {"renewTime": None}},
        {"metadata": {"name": "bare"}},
    ]
    assert nodes.lease_ages(leases, now) == {"a": 30.0, "ahead": 0.0}


async def test_a_lease_read_that_hangs_is_given_up_and_the_leases_renewed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = _tenant("t", ["n1"])
    t.renewals_read = False

    async def list_leases(res: object, namespace: str) -> dict[str, Any]:
        await asyncio.Event().wait()  # an API server that never answers
        raise AssertionError("unreachable")

    renewed: list[str] = []

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        renewed.append(node["metadata"]["name"])

    t.client = types.SimpleNamespace(list=list_leases)
    monkeypatch.setattr(vnodes, "renew_lease", renew)
    monkeypatch.setattr(vnodes, "LEASE_READ_TIMEOUT", 0.01)
    await asyncio.wait_for(
        vnodes._tend_all(t, "now", {"t": t}, types.SimpleNamespace(get=lambda ns, name: None)),  # type: ignore[arg-type]
        30,  # a bound, not a timing
    )
    assert renewed == ["n1"] and not t.renewals_read


class Reads(dict[tuple[str, str], dict[str, Any]]):
    """A node cache that records which nodes were read: a real one parses each it hands out."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: list[str] = []

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        self.read.append(key[1])
        return super().get(key, default)

    def values(self) -> Any:
        raise AssertionError("a round reads the nodes it needs, not all of them")


async def test_a_round_reads_only_the_nodes_whose_lease_it_writes() -> None:
    """At 20 x 250 each round parsed every virtual node, its super node and every pod: 12% of an
    idle syncer. A tenant with nodes on demand reads no super node, and a node not due is not read."""
    t = _tenant("t", ["recent", "due"])
    t.informers["Node"].cache = Reads(t.informers["Node"].cache)
    t.lease_renewed.update({"recent": time.monotonic(), "due": time.monotonic() - vnodes.RENEW_PERIOD})
    renewed: list[str] = []

    async def renew(t: types.SimpleNamespace, node: dict[str, Any], now: str) -> None:
        renewed.append(node["metadata"]["name"])

    super_read: list[str] = []

    def super_get(ns: str, name: str) -> None:
        super_read.append(name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vnodes, "renew_lease", renew)
        await vnodes._tend_all(t, "now", {"t": t}, types.SimpleNamespace(get=super_get))  # type: ignore[arg-type]
    assert renewed == ["due"] and t.informers["Node"].cache.read == ["due"]
    assert super_read == []  # a tenant with nodes on demand selects no super node
