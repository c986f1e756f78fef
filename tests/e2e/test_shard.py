"""Three syncer replicas split the tenants by Leases, under the least-privilege service account
(issue: reliability, scale-out), and each program's RBAC allows what it needs and nothing more."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import SyncerProc, TenantHandle, credentials
from tests.e2e.helpers import eventually, pod, running, syncer_status
from tispace import binaries, localnet, procs
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import localcluster, stack

SYSTEM = "tispace-system"
LEASE_SECONDS = 6


async def served(port: int) -> dict[str, list[str]]:
    body = await syncer_status(port)
    return {"tenants": sorted(body["tenants"]), "members": body["shard"]["members"]}


@pytest.fixture
def replicas(
    syncer: SyncerProc, vn_agent: procs.Component, super_cluster: localcluster.SuperCluster
) -> Iterator[list[procs.Component]]:
    """The session syncer steps aside for three sharded replicas (acting as the syncer's service
    account, as it does), and comes back after."""
    kc = credentials(super_cluster, "syncer")
    syncer.stop()
    comps: list[procs.Component] = []
    try:
        for n in range(3):
            comps.append(
                stack.start_program(
                    super_cluster.dir / "logs",
                    f"syncer-replica-{n}",
                    lambda port, n=n: [
                        "syncer",
                        f"--super-kubeconfig={kc}",
                        f"--port={port}",
                        f"--vn-agent-host={localnet.VIRTUAL_ADDRESS}",
                        f"--vn-agent-port={vn_agent.port}",
                        f"--shard-namespace={SYSTEM}",
                        f"--identity=replica-{n}",
                        f"--lease-seconds={LEASE_SECONDS}",
                    ],
                )
            )
        yield comps
    finally:
        for c in comps:
            procs.stop(c.proc)
        syncer.start()


async def test_three_replicas_split_tenants_and_take_over_a_killed_ones(
    replicas: list[procs.Component], tenant_factory, super_client: Client
) -> None:
    tenants: list[TenantHandle] = [await tenant_factory(f"shard-{c}") for c in "abcd"]
    names = {f"{t.namespace}/{t.name}" for t in tenants}
    ports = [c.port for c in replicas]

    async def split() -> dict[int, list[str]] | None:
        views = {p: await served(p) for p in ports}
        owned = [name for v in views.values() for name in v["tenants"]]
        full = all(len(v["members"]) == len(ports) for v in views.values())
        ok = full and names <= set(owned) and len(owned) == len(set(owned))
        return {p: v["tenants"] for p, v in views.items()} if ok else None

    owners = await eventually(split, timeout=120, what="every tenant served by exactly one of three replicas")
    assert sum(1 for p in ports if set(owners[p]) & names) >= 2, f"tenants not spread: {owners}"
    for t in tenants:
        await t.client.create(r.PODS, pod("before"), "default")
    before = {}
    for t in tenants:
        [p] = await eventually(
            lambda t=t: running(super_client, f"{t.root}-default", 1, "app=before"), what=f"{t.name} synced"
        )
        before[t.name] = p["metadata"]["uid"]

    victim_port = next(p for p in ports if set(owners[p]) & names)
    victim = next(c for c in replicas if c.port == victim_port)
    orphaned = [t for t in tenants if f"{t.namespace}/{t.name}" in owners[victim_port]]
    os.kill(victim.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    for t in orphaned:
        await t.client.create(r.PODS, pod("after"), "default")
    survivors = [p for p in ports if p != victim_port]

    async def taken_over() -> bool:
        views = [await served(p) for p in survivors]
        owned = [name for v in views for name in v["tenants"]]
        return names <= set(owned) and len(owned) == len(set(owned))

    await eventually(
        taken_over, timeout=4 * LEASE_SECONDS + 60, what="the killed replica's tenants taken over"
    )
    for t in orphaned:
        await eventually(
            lambda t=t: running(super_client, f"{t.root}-default", 1, "app=after"),
            what=f"{t.name} synced after the takeover",
        )
        await eventually(lambda t=t: running(t.client, "default", 1, "app=after"), what="status up")
    print(
        f"takeover: {len(orphaned)} tenants serving again {time.monotonic() - killed_at:.1f}s after the kill"
    )
    # Nothing was deleted and made again, and nothing was made twice.
    for t in tenants:
        [p] = await running(super_client, f"{t.root}-default", 1, "app=before")
        assert p["metadata"]["uid"] == before[t.name]
        names_down = [
            x["metadata"]["name"] for x in (await super_client.list(r.PODS, f"{t.root}-default"))["items"]
        ]
        assert len(names_down) == len(set(names_down))


SA = "system:serviceaccount:tispace-system:"
# (service account, verb, resource, namespace or "", allowed)
MATRIX = [
    ("syncer", "create", "pods", "some-tenant-default", True),
    ("syncer", "delete", "secrets", "some-tenant-default", True),
    ("syncer", "patch", "resourcequotas", "some-tenant-default", True),
    ("syncer", "watch", "virtualclusters.tenancy.x-k8s.io", "team", True),
    ("syncer", "patch", "leases.coordination.k8s.io", SYSTEM, True),
    ("syncer", "patch", "persistentvolumes", "", True),
    ("syncer", "patch", "pods/ephemeralcontainers", "some-tenant-default", True),
    ("syncer", "update", "virtualclusters.tenancy.x-k8s.io", "team", False),
    ("syncer", "patch", "leases.coordination.k8s.io", "kube-system", False),
    ("syncer", "delete", "nodes", "", False),
    ("syncer", "delete", "persistentvolumes", "", False),
    ("syncer", "create", "clusterrolebindings.rbac.authorization.k8s.io", "", False),
    ("syncer", "create", "pods/exec", "some-tenant-default", False),
    ("syncer", "create", "customresourcedefinitions.apiextensions.k8s.io", "", False),
    ("vc-manager", "patch", "virtualclusters.tenancy.x-k8s.io/status", "team", True),
    ("vc-manager", "create", "namespaces", "", True),
    ("vc-manager", "create", "statefulsets.apps", "some-root", True),
    ("vc-manager", "create", "pods", "some-root", False),
    ("vc-manager", "create", "pods/exec", "some-root", False),
    ("vc-manager", "delete", "nodes", "", False),
    ("vc-manager", "create", "clusterroles.rbac.authorization.k8s.io", "", False),
    ("vn-agent", "create", "pods/exec", "some-tenant-default", True),
    ("vn-agent", "get", "pods/log", "some-tenant-default", True),
    ("vn-agent", "create", "pods/portforward", "some-tenant-default", True),
    ("vn-agent", "create", "pods", "some-tenant-default", False),
    ("vn-agent", "delete", "pods", "some-tenant-default", False),
    ("vn-agent", "create", "secrets", "some-root", False),
    ("portal", "create", "virtualclusters.tenancy.x-k8s.io", "tispace-portal", True),
    ("portal", "delete", "virtualclusters.tenancy.x-k8s.io", "tispace-portal", True),
    ("portal", "update", "virtualclusters.tenancy.x-k8s.io", "tispace-portal", False),
    ("portal", "patch", "virtualclusters.tenancy.x-k8s.io/status", "tispace-portal", False),
    ("portal", "list", "pods", "", True),
    ("portal", "create", "pods", "some-root", False),
    ("portal", "get", "secrets", "some-root", False),  # only admin-kubeconfig and root-ca, by name
    ("portal", "list", "secrets", "some-root", False),
    ("portal", "create", "namespaces", "", False),
]


def test_each_program_may_do_what_it_needs_and_nothing_more(installed: localcluster.SuperCluster) -> None:
    wrong = []
    for sa, verb, resource, ns, allowed in MATRIX:
        plural, _, sub = resource.partition("/")
        args = ["auth", "can-i", verb, plural, f"--as={SA}{sa}"] + ([f"--subresource={sub}"] if sub else [])
        args += [f"--namespace={ns}"] if ns else []
        out = subprocess.run(
            [binaries.path("kubectl"), f"--kubeconfig={installed.kubeconfig}", *args],
            capture_output=True,
            text=True,
        )
        if (out.stdout.strip() == "yes") != allowed:
            wrong.append(
                f"{sa} {verb} {resource} in {ns or 'cluster'}: {out.stdout.strip()} {out.stderr.strip()}"
            )
    assert not wrong, "\n".join(wrong)
