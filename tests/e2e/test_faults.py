"""Faults: a syncer killed mid-burst, a tenant API server that stops answering (issue: reliability)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from syncer.engine import pods as pod_hooks
from syncer.engine import vnodes
from syncer.resources import nodes, pods
from tests.e2e.conftest import ManagerProc, SyncerProc, TenantHandle
from tests.e2e.helpers import absent, eventually, live_pods, pod, running, syncer_status
from tispace import naming, procs, tenants
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import localcluster


def _deployment(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    "terminationGracePeriodSeconds": 0,
                },
            },
        },
    }


async def _logged(log: Path, text: str) -> bool:
    """Whether a program's log holds `text` yet (read off the event loop)."""
    return await asyncio.to_thread(lambda: text in log.read_text())


async def test_syncer_killed_mid_burst_loses_nothing_and_duplicates_nothing(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("fault-burst")
    sns = f"{t.root}-default"
    t.kubectl("apply", "-f", "-", stdin=json.dumps(_deployment("burst", 40)))

    async def some_down() -> list[dict] | None:
        pods = await live_pods(super_client, sns, "app=burst")
        return pods if 5 <= len(pods) < 40 else None

    before = await eventually(some_down, what="part of the burst in the super cluster")
    syncer.kill()
    killed = time.monotonic()
    syncer.start()
    tenant_pods = await eventually(
        lambda: running(t.client, "default", 40, "app=burst"), timeout=180, what="40 tenant pods Running"
    )
    print(
        f"syncer kill -9 mid-burst ({len(before)}/40 down): "
        f"all 40 Running {time.monotonic() - killed:.1f}s later"
    )
    super_pods = await eventually(
        lambda: running(super_client, sns, 40, "app=burst"), what="40 super pods Running"
    )
    assert sorted(p["metadata"]["name"] for p in super_pods) == sorted(
        p["metadata"]["name"] for p in tenant_pods
    )
    # Nothing that went down before the kill was deleted and made again.
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in super_pods}
    assert all(uids[p["metadata"]["name"]] == p["metadata"]["uid"] for p in before)
    for tp in tenant_pods:
        assert tp["spec"]["nodeName"] and tp["status"]["podIP"]


async def test_a_tenant_the_syncer_cannot_reach_when_it_starts_is_served_once_it_can(
    syncer: SyncerProc, manager: ManagerProc, tenant_factory, super_client: Client
) -> None:
    """A failed first connect is tried again until it works, not left until the VirtualCluster
    changes. Here the admin kubeconfig is missing, with the manager that would restore it stopped."""
    t: TenantHandle = await tenant_factory("fault-late")
    manager.kill()
    try:
        saved = await super_client.get(r.SECRETS, "admin-kubeconfig", t.root)
        await super_client.delete(r.SECRETS, "admin-kubeconfig", t.root)
        syncer.kill()
        syncer.start()
        log = Path(syncer.comp.proc.log)
        await eventually(
            lambda: _logged(log, "default/fault-late not served yet"),
            what="the syncer's failed connect",
        )
        await t.client.create(r.PODS, pod("late"), "default")
        saved["metadata"] = {k: v for k in ("name", "namespace", "labels") if (v := saved["metadata"].get(k))}
        await super_client.create(r.SECRETS, saved, t.root)
        await eventually(
            lambda: running(super_client, f"{t.root}-default", 1, "app=late"), what="served after all"
        )
    finally:
        manager.start()


async def test_a_frozen_tenant_api_server_hurts_no_one_and_deletes_nothing(
    syncer: SyncerProc, tenant_factory, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    frozen: TenantHandle = await tenant_factory("fault-frozen")
    other: TenantHandle = await tenant_factory("fault-other")
    await frozen.client.create(r.PODS, pod("keep"), "default")
    fns = f"{frozen.root}-default"
    kept = await eventually(lambda: running(super_client, fns, 1, "app=keep"), what="frozen tenant pod down")
    registry = procs.Registry(super_cluster.dir / "tenants" / frozen.root / "procs.json")
    api = next(c.proc for c in registry.load() if c.name == "kube-apiserver")
    os.kill(api.pid, signal.SIGSTOP)
    try:
        # The other tenant is served as usual while the first one cannot answer.
        other.kubectl("apply", "-f", "-", stdin=json.dumps(_deployment("busy", 10)))
        await eventually(
            lambda: running(other.client, "default", 10, "app=busy"),
            timeout=120,
            what="other tenant served",
        )
        # Nothing of the frozen tenant was deleted from the super cluster.
        still = await running(super_client, fns, 1, "app=keep")
        assert still and still[0]["metadata"]["uid"] == kept[0]["metadata"]["uid"]
    finally:
        os.kill(api.pid, signal.SIGCONT)
        resumed = time.monotonic()
    # After it answers again it catches up: new work goes down, the old pod is still there.
    await frozen.client.create(r.PODS, pod("later"), "default")
    await eventually(lambda: running(super_client, fns, 1, "app=later"), timeout=120, what="caught up")
    print(f"frozen tenant API server: new work synced {time.monotonic() - resumed:.1f}s after it resumed")
    assert (await super_client.get(r.PODS, "keep", fns))["metadata"]["uid"] == kept[0]["metadata"]["uid"]


async def test_a_tenant_deleted_while_the_syncer_connects_it_is_given_up_and_leaves_nothing(
    syncer: SyncerProc, tenant_factory, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    """A restarted syncer connects a tenant whose API server is frozen: the connect waits on the
    tenant's first writes, up to 30 s, holding the tenant's lock. Its VirtualCluster deleted
    meanwhile gives the connect up at once, and the tenant leaves nothing in the super cluster."""
    t: TenantHandle = await tenant_factory("fault-gone")
    name = f"{t.namespace}/{t.name}"
    await t.client.create(r.PODS, pod("doomed"), "default")
    await eventually(lambda: running(super_client, f"{t.root}-default", 1), what="the tenant's pod down")
    registry = procs.Registry(super_cluster.dir / "tenants" / t.root / "procs.json")
    api = next(c.proc for c in registry.load() if c.name == "kube-apiserver")
    log = Path(syncer.comp.proc.log)
    os.kill(api.pid, signal.SIGSTOP)
    try:
        syncer.kill()
        syncer.start()

        async def connecting() -> bool:
            tenant = (await syncer_status(syncer.port))["tenants"].get(name)
            return tenant is not None and not tenant["synced"]

        await eventually(connecting, what="the syncer connecting the frozen tenant")
        await super_client.delete(r.VIRTUALCLUSTERS, t.name, t.namespace)
        await eventually(
            lambda: _logged(log, f"tenant {name}: connect given up"),
            what="the connect given up",
        )
        assert name not in (await syncer_status(syncer.port))["tenants"]
    finally:
        os.kill(api.pid, signal.SIGCONT)
    await tenants.wait_gone(super_client, t.name, t.namespace)
    left = await super_client.list(r.NAMESPACES, label_selector=f"{naming.LABEL_TENANT}={t.root}")
    assert left["items"] == [] and await super_client.get_or_none(r.NAMESPACES, t.root) is None


async def test_super_etcd_and_api_server_restarts_lose_nothing(
    syncer: SyncerProc, tenant_factory, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    t: TenantHandle = await tenant_factory("fault-restart")
    sns = f"{t.root}-default"
    await t.client.create(r.PODS, pod("before"), "default")
    [kept] = await eventually(lambda: running(super_client, sns, 1, "app=before"), what="pod down")
    for component in ("etcd", "kube-apiserver"):
        await asyncio.to_thread(super_cluster.restart, component)
    restarted = time.monotonic()
    # Every client reconnects on its own: new work flows both ways, and nothing was deleted or re-made.
    await t.client.create(r.PODS, pod("after"), "default")
    await eventually(lambda: running(super_client, sns, 1, "app=after"), timeout=120, what="synced after")
    print(f"super etcd + API server restarted: a new pod synced {time.monotonic() - restarted:.1f}s later")
    await eventually(lambda: running(t.client, "default", 1, "app=after"), what="status up after")
    assert (await super_client.get(r.PODS, "before", sns))["metadata"]["uid"] == kept["metadata"]["uid"]
    tenant_before = await t.client.get(r.PODS, "before", "default")
    assert tenant_before["status"]["phase"] == "Running"


SUPER = {"informer": "super/"}


async def syncer_counter(syncer: SyncerProc, metric: str, where: dict[str, str]) -> float:
    """Sum of a syncer counter over the series whose labels start with the values in `where`."""
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{syncer.port}/metrics") as resp:
        text = await resp.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric and all(sample.labels.get(k, "").startswith(v) for k, v in where.items())
    )


async def test_expired_watches_are_relisted_and_nothing_is_lost(
    syncer: SyncerProc, tenant_factory, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    """A super API server killed outright comes back with an empty watch cache: every watch the
    syncer resumes from its last resourceVersion is answered 410 Gone and must be relisted."""
    t: TenantHandle = await tenant_factory("fault-expired")
    sns = f"{t.root}-default"
    await t.client.create(r.PODS, pod("before"), "default")
    [kept] = await eventually(lambda: running(super_client, sns, 1, "app=before"), what="pod down")
    expired = await syncer_counter(syncer, "tispace_syncer_watch_expired_total", SUPER)
    api = next(c for c in super_cluster.components() if c.name == "kube-apiserver")
    os.kill(api.proc.pid, signal.SIGKILL)
    while procs.alive(api.proc):
        await asyncio.sleep(0.05)
    # The tenant goes on meanwhile (its API server does not need the super one's).
    await t.client.create(r.PODS, pod("during"), "default")
    await asyncio.sleep(2)  # tenants' leases keep writing to etcd: the syncer's revisions fall behind
    await asyncio.to_thread(super_cluster.restart, "kube-apiserver")
    back = time.monotonic()
    await eventually(lambda: _grew(syncer, expired), what="the syncer's super watches expired and relisted")
    await eventually(lambda: running(super_client, sns, 1, "app=during"), timeout=120, what="synced after")
    print(
        f"super API server killed (watches expired): "
        f"pod made meanwhile synced {time.monotonic() - back:.1f}s after"
    )
    await eventually(lambda: running(t.client, "default", 1, "app=during"), what="status up")
    assert (await super_client.get(r.PODS, "before", sns))["metadata"]["uid"] == kept["metadata"]["uid"]


async def _grew(syncer: SyncerProc, before: float) -> bool:
    return await syncer_counter(syncer, "tispace_syncer_watch_expired_total", SUPER) > before


def _throttle(super_ns: str) -> list[dict]:
    """API Priority and Fairness that rejects (429) every pod create of the syncer's service account
    in one super namespace (a priority level with no seats, rejecting rather than queuing)."""
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": "a-tispace-test-throttle"},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 0,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": "a-tispace-test-throttle"},
        "spec": {
            "matchingPrecedence": 10,
            "priorityLevelConfiguration": {"name": "a-tispace-test-throttle"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"name": "syncer", "namespace": "tispace-system"},
                        }
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["create"],
                            "apiGroups": [""],
                            "resources": ["pods"],
                            "namespaces": [super_ns],
                        }
                    ],
                }
            ],
        },
    }
    return [level, schema]


async def test_a_tenant_faster_than_the_super_cluster_accepts_is_slowed_not_dropped(
    syncer: SyncerProc, tenant_factory, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    """The super API server sheds the syncer's pod creates for one tenant (429, API Priority and
    Fairness at one seat); every pod still lands, once, while the throttle holds."""
    t: TenantHandle = await tenant_factory("fault-throttle")
    sns = f"{t.root}-default"
    await t.client.create(r.PODS, pod("first"), "default")  # the namespace exists before the throttle
    await eventually(lambda: running(super_client, sns, 1, "app=first"), what="first pod down")
    throttle = _throttle(sns)
    localcluster.apply(super_cluster.kubeconfig, throttle)
    throttled = time.monotonic()
    try:
        t.kubectl("apply", "-f", "-", stdin=json.dumps(_deployment("flood", 30)))
        await eventually(
            lambda: _rejected(super_client, "a-tispace-test-throttle"),
            timeout=120,
            what="the super API server answering 429 to the syncer",
        )
        tenant_pods = await eventually(
            lambda: running(t.client, "default", 30, "app=flood"), timeout=180, what="every pod Running"
        )
        super_pods = await running(super_client, sns, 30, "app=flood")
        rejected = await _rejected(super_client, "a-tispace-test-throttle")
        print(
            f"429 throttle: {rejected:.0f} creates rejected, "
            f"all 30 Running {time.monotonic() - throttled:.1f}s after"
        )
        assert super_pods and sorted(p["metadata"]["name"] for p in super_pods) == sorted(
            p["metadata"]["name"] for p in tenant_pods
        )
    finally:
        for obj in reversed(throttle):
            res = r.FLOWSCHEMAS if obj["kind"] == "FlowSchema" else r.PRIORITYLEVELS
            await super_client.delete(res, obj["metadata"]["name"])


async def _rejected(super_client: Client, flow_schema: str) -> float:
    """Requests the super API server rejected (429) under one FlowSchema, from its own metrics."""
    text = await super_client.get_text("/metrics")
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "apiserver_flowcontrol_rejected_requests_total"
        and sample.labels.get("flow_schema") == flow_schema
    )


async def _made_to_stay(client: Client, pod: dict, ns: str) -> dict | None:
    """The pod once KWOK runs it, made again if it went. The API server writes a deletion
    timestamp before it removes a pod deleted with no grace, and KWOK, on seeing it, deletes by name
    without a UID precondition: handled late, that takes a new pod of the same name with it (a
    kubelet's delete names the UID)."""
    current = await client.get_or_none(r.PODS, pod["metadata"]["name"], ns)
    if current is None:
        await client.create(r.PODS, pod, ns)
        return None
    return current if current.get("status", {}).get("phase") == "Running" else None


async def test_an_upgrade_renews_the_token_of_a_pod_made_when_tokens_were_secrets(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """A pod the syncer before the ninth round made mounts its token from a Secret, and a pod's volumes
    cannot change: a new syncer renews the token there at its first start and leaves the pod in place
    (KWOK runs no container to read the file)."""
    t: TenantHandle = await tenant_factory("fault-upgrade")
    sns = f"{t.root}-default"
    await t.client.create(r.PODS, pod("old"), "default")
    [made] = await eventually(lambda: running(super_client, sns, 1, "app=old"), what="pod down")
    tenant_pod = await t.client.get(r.PODS, "old", "default")
    syncer.kill()
    try:  # the pod as the old syncer made it: its token source a Secret's token key, no annotation
        await super_client.delete(r.PODS, "old", sns, grace_period=0)
        await eventually(lambda: absent(super_client, r.PODS, "old", sns), what="new-style pod gone")
        meta = {k: made["metadata"][k] for k in ("name", "labels", "annotations")}
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if not pods.is_token_key(k)}
        meta["annotations"].pop(pods.ANN_TOKEN_REFRESH)
        spec = json.loads(json.dumps(made["spec"]))
        secret_item = {"key": pods.TOKEN_KEY, "path": "token"}
        token_field = {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{pods.ANN_TOKEN}']"}
        sources = [
            {"secret": {"name": pods.token_secret_name("old"), "items": [secret_item]}}
            if any(i.get("fieldRef") == token_field for i in (src.get("downwardAPI") or {}).get("items", []))
            else src
            for src in spec["volumes"][0]["projected"]["sources"]
        ]
        assert sources != spec["volumes"][0]["projected"]["sources"]  # the token source was there
        spec["volumes"][0]["projected"]["sources"] = sources
        legacy = await eventually(lambda: _made_to_stay(super_client, {"metadata": meta, "spec": spec}, sns))
        stale = pod_hooks.token_secret(tenant_pod, legacy, t.root, "stale")
        await super_client.create(r.SECRETS, stale, sns)
    finally:
        syncer.start()

    async def renewed() -> str | None:
        secret = await super_client.get(r.SECRETS, pods.token_secret_name("old"), sns)
        token = base64.b64decode(secret["data"][pods.TOKEN_KEY]).decode()
        return token if token != "stale" else None

    async def renewal_time() -> dict | None:  # the pod's patch comes after its Secret's write
        now = await super_client.get(r.PODS, "old", sns)
        return now if pods.ANN_TOKEN_REFRESH in now["metadata"].get("annotations", {}) else None

    token = await eventually(renewed, what="the token renewed in the pod's Secret")
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["kubernetes.io"]["pod"]["uid"] == tenant_pod["metadata"]["uid"]
    assert claims["exp"] - claims["iat"] == pods.TOKEN_SECONDS  # kube-api-access's
    now = await eventually(renewal_time, what="the pod's renewal time")
    assert now["metadata"]["uid"] == legacy["metadata"]["uid"]  # renewed in place, not replaced
    refresh = datetime.datetime.fromisoformat(now["metadata"]["annotations"][pods.ANN_TOKEN_REFRESH])
    assert refresh > datetime.datetime.now(datetime.UTC)
    assert pods.ANN_TOKEN not in now["metadata"]["annotations"]  # its volume reads the Secret
    assert (await t.client.get(r.PODS, "old", "default"))["metadata"]["uid"] == tenant_pod["metadata"]["uid"]


async def test_a_restarted_syncer_renews_a_virtual_nodes_lease_when_due_not_at_once(
    syncer: SyncerProc, tenant_factory
) -> None:
    """A restarted syncer reads each Lease's renewTime and renews it on its schedule (every 60 s,
    written once 50 s have passed): it used to renew every virtual node's Lease in its first node
    round, 20 s after it started, which at 20 x 250 was 1,900 writes in one burst."""
    t: TenantHandle = await tenant_factory("fault-leases")
    await t.client.create(r.PODS, pod("leased"), "default")
    bound = await eventually(lambda: running(t.client, "default", 1, "app=leased"), what="a pod Running")
    node = bound[0]["spec"]["nodeName"]

    async def renewed_after(previous: str | None) -> str | None:
        lease = await t.client.get_or_none(r.LEASES, node, nodes.LEASE_NAMESPACE)
        at = lease and lease["spec"].get("renewTime")
        return at if at and at != previous else None

    first = await eventually(lambda: renewed_after(None), what="the virtual node's Lease")
    just = await eventually(lambda: renewed_after(first), timeout=150, what="a renewal to start from")
    syncer.kill()
    syncer.start()
    following = await eventually(lambda: renewed_after(just), timeout=150, what="the next renewal")
    gap = datetime.datetime.fromisoformat(following) - datetime.datetime.fromisoformat(just)
    assert gap >= datetime.timedelta(seconds=vnodes.RENEW_PERIOD - vnodes.NODE_PERIOD / 2)
