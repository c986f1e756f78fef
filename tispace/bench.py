"""Pods through tenants vs directly in the super cluster, measured in the same run.

For each path: create P pods per namespace concurrently, watch until every one is Running,
and record create-to-Running latency per pod (the clock starts just before the POST).
The syncer's CPU seconds and peak RSS come from /proc, so they cover exactly this run.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tispace import kubeconfig, tenants
from tispace.kube import resources as r
from tispace.kube.client import Client

CONCURRENCY = 50


@dataclass(frozen=True)
class PathResult:
    pods: int
    seconds: float
    throughput: float
    p50: float
    p90: float
    p99: float
    max: float


def summarize(latencies: list[float], seconds: float) -> PathResult:
    qs = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return PathResult(
        pods=len(latencies),
        seconds=round(seconds, 3),
        throughput=round(len(latencies) / seconds, 1),
        p50=round(qs[49], 3),
        p90=round(qs[89], 3),
        p99=round(qs[98], 3),
        max=round(max(latencies), 3),
    )


def _pod(name: str, *, direct: bool) -> dict[str, Any]:
    """The same pod on both paths; through a tenant the syncer sets the Kata runtime class."""
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "busybox"}],
        "terminationGracePeriodSeconds": 0,
    }
    if direct:
        spec["runtimeClassName"] = "kata"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "tispace"}},
        "spec": spec,
    }


async def _run_path(
    client: Client, namespace: str, count: int, timeout: float, *, direct: bool
) -> list[float]:
    """Create `count` pods in `namespace` and return each one's create-to-Running seconds."""
    listing = await client.list(r.PODS, namespace)
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        rv = listing["metadata"]["resourceVersion"]
        while not done.is_set():
            async for ev in client.watch(r.PODS, namespace, resource_version=rv, timeout_seconds=60):
                obj = ev["object"]
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                name = obj.get("metadata", {}).get("name")
                if ev["type"] != "BOOKMARK" and (obj.get("status") or {}).get("phase") == "Running":
                    running.setdefault(name, time.monotonic())
                    if len(running) >= count:
                        done.set()
                        return

    sem = asyncio.Semaphore(CONCURRENCY)

    async def create(i: int) -> None:
        name = f"bench-{i}"
        async with sem:
            created[name] = time.monotonic()
            await client.create(r.PODS, _pod(name, direct=direct), namespace)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(create(i) for i in range(count)))
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        watcher.cancel()
    return [running[n] - created[n] for n in created]


async def _ready_namespace(client: Client, name: str) -> None:
    await tenants.ensure(
        client, r.NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    for _ in range(300):  # pods need the namespace's default ServiceAccount
        if await client.get_or_none(r.SERVICEACCOUNTS, "default", name):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"namespace {name}: no default ServiceAccount after 30s")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def run(
    super_kubeconfig: Path,
    *,
    tenant_count: int,
    pods: int,
    syncer_pid: int | None,
    timeout: float = 600,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    stamp = time.strftime("%H%M%S")
    async with Client.from_kubeconfig(super_kubeconfig, name="super") as sup:
        await tenants.ensure(sup, r.CLUSTERVERSIONS, tenants.cluster_version())
        names = [f"bench-{stamp}-{i}" for i in range(tenant_count)]
        progress(f"creating {tenant_count} tenants")
        for name in names:
            await sup.create(r.VIRTUALCLUSTERS, tenants.virtual_cluster(name), "default")
        clients = []
        for name in names:
            await tenants.wait_phase(sup, name, "default")
            config = await tenants.admin_kubeconfig(sup, name, "default")
            clients.append(Client(kubeconfig.credentials(config), name=name))
        try:
            for c in clients:
                await _ready_namespace(c, "bench")
            cpu0 = _cpu_seconds(syncer_pid) if syncer_pid else 0.0
            progress(f"through tenants: {tenant_count} x {pods} pods")
            t0 = time.monotonic()
            per = await asyncio.gather(*(_run_path(c, "bench", pods, timeout, direct=False) for c in clients))
            through = summarize([x for lat in per for x in lat], time.monotonic() - t0)
            syncer_cpu = (_cpu_seconds(syncer_pid) - cpu0) if syncer_pid else None
            syncer_rss = _peak_rss(syncer_pid) if syncer_pid else None
            direct_ns = [f"bench-direct-{stamp}-{i}" for i in range(tenant_count)]
            for ns in direct_ns:
                await _ready_namespace(sup, ns)
            progress(f"directly: {tenant_count} x {pods} pods")
            t0 = time.monotonic()
            per = await asyncio.gather(*(_run_path(sup, ns, pods, timeout, direct=True) for ns in direct_ns))
            direct = summarize([x for lat in per for x in lat], time.monotonic() - t0)
        finally:
            for c in clients:
                await c.close()
            progress("cleaning up")
            for name in names:
                await sup.delete(r.VIRTUALCLUSTERS, name, "default")
            for ns in [f"bench-direct-{stamp}-{i}" for i in range(tenant_count)]:
                await sup.delete(r.NAMESPACES, ns)
            for name in names:
                await tenants.wait_gone(sup, name, "default", timeout=300)
    return {
        "tenants": tenant_count,
        "pods_per_tenant": pods,
        "through_tenants": asdict(through),
        "direct": asdict(direct),
        "throughput_ratio": round(through.throughput / direct.throughput, 3),
        "p99_overhead_s": round(through.p99 - direct.p99, 3),
        "syncer_cpu_seconds": None if syncer_cpu is None else round(syncer_cpu, 2),
        "syncer_peak_rss_mib": None if syncer_rss is None else round(syncer_rss / 2**20, 1),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
    }
