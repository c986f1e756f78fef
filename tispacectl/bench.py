"""Pods through tenants vs directly in the super cluster, measured in the same run.

For each path: create the template's objects for P pods per namespace concurrently, watch
until every pod is Running, and record create-to-Running latency per pod (the clock starts
just before the first POST of that pod's objects). Then, with every pod still there: one
full drift check (POST /patrol), and a syncer restart timed until every tenant is synced
and the queue is empty. The syncer's CPU seconds and peak RSS come from /proc, so they
cover exactly the through-tenants phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tispace import aio, kubeconfig, procs, tenants
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispace.kube.resources import Resource
from tispacectl import localcluster

CONCURRENCY = 50
WATCH_RETRY_SECONDS = 1.0
"""A pod watch that failed is listed and watched again after this."""
TEMPLATES = ("plain", "claim", "service")
Tick = Callable[[str, int], None]
"""(path, pods Running so far) -> None: drives the progress bar."""


@dataclass(frozen=True)
class Plan:
    tenants: int = 1
    pods: int = 100
    template: str = "plain"
    noisy: int = 0
    """When > 0, tenant 0 creates `pods * noisy` pods while every other tenant creates `pods`."""
    timeout: float = 600

    def pods_of(self, tenant: int) -> int:
        return self.pods * self.noisy if self.noisy and tenant == 0 else self.pods

    @property
    def total(self) -> int:
        return sum(self.pods_of(i) for i in range(self.tenants))


QUICK = Plan(tenants=2, pods=50, timeout=150)


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


def objects(template: str, name: str, *, direct: bool) -> list[tuple[Resource, dict[str, Any]]]:
    """What one pod of a template needs, in creation order; the same on both paths except that
    a direct pod names the Kata runtime class (through a tenant the syncer sets it)."""
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "busybox"}],
        "terminationGracePeriodSeconds": 0,
    }
    if direct:
        spec["runtimeClassName"] = localcluster.RUNTIME_CLASS
    labels = {"bench": "tispace", "pod": name}
    out: list[tuple[Resource, dict[str, Any]]] = []
    if template == "claim":
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }
        out.append((r.PVCS, claim))
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": name}}]
    elif template == "service":
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"port": 80}]},
        }
        out.append((r.SERVICES, svc))
    elif template != "plain":
        raise ValueError(f"unknown template {template!r}; use one of {', '.join(TEMPLATES)}")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}
    return [*out, (r.PODS, pod)]


async def _run_path(
    client: Client, namespace: str, count: int, plan: Plan, tick: Callable[[int], None], *, direct: bool
) -> list[float]:
    """Create `count` pods (with their template's objects) and return each one's create-to-Running seconds."""
    listing = await client.list(r.PODS, namespace)
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    done = asyncio.Event()

    def seen(pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if pod.get("status", {}).get("phase") == "Running" and name in created and name not in running:
            running[name] = time.monotonic()
            tick(1)
        if len(running) >= count:
            done.set()

    async def relist() -> str:
        relisted = await client.list(r.PODS, namespace)
        for pod in relisted["items"]:
            seen(pod)
        return str(relisted["metadata"]["resourceVersion"])

    async def watch() -> None:
        rv = listing["metadata"]["resourceVersion"]
        while not done.is_set():
            try:
                async for ev in client.watch(r.PODS, namespace, resource_version=rv, timeout_seconds=60):
                    if ev["type"] == "ERROR":  # expired under load (410): list again, go on from there
                        rv = await relist()
                        break
                    rv = ev["object"]["metadata"].get("resourceVersion", rv)
                    if ev["type"] != "BOOKMARK":
                        seen(ev["object"])
                    if done.is_set():
                        return
            except (ApiError, OSError, aiohttp.ClientError):
                # A tenant API server just made, on a busy machine, may refuse or drop the watch: a
                # watcher that ended here left its pods unseen until the phase timed out.
                await asyncio.sleep(WATCH_RETRY_SECONDS)
                with contextlib.suppress(ApiError, OSError, aiohttp.ClientError):
                    rv = await relist()

    sem = asyncio.Semaphore(CONCURRENCY)

    async def create(i: int) -> None:
        name = f"bench-{i}"
        async with sem:
            created[name] = time.monotonic()
            for res, obj in objects(plan.template, name, direct=direct):
                await client.ensure(res, obj, namespace)  # a create retried after a timeout finds it made

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(create(i) for i in range(count)))
    try:
        await asyncio.wait_for(done.wait(), plan.timeout)
    finally:
        watcher.cancel()
    return [running[n] - created[n] for n in created]


async def _all_gone(client: Client, namespaces: list[str]) -> bool:
    return all([await client.get_or_none(r.NAMESPACES, ns) is None for ns in namespaces])


async def _ready_namespace(client: Client, name: str) -> None:
    await client.ensure(r.NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    await aio.poll(  # pods need the namespace's default ServiceAccount
        lambda: client.get_or_none(r.SERVICEACCOUNTS, "default", name),
        timeout=30,
        interval=0.1,
        what=f"the default ServiceAccount of namespace {name}",
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_group(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes (gone processes count 0)."""
    out = {}
    for group, pids in groups.items():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(FileNotFoundError):
                total += _cpu_seconds(pid)
        out[group] = total
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {g: round(after[g] - before.get(g, 0.0), 2) for g in after}


def samples(metrics_text: str, family: str) -> Iterator[Sample]:
    """The samples named `family` in Prometheus text (a counter's with its `_total`, a gauge's). Only
    their lines are parsed: an API server's whole /metrics took the parser about a second."""
    family_lines = (f"{family}{{", f"{family} ", f"# HELP {family} ", f"# TYPE {family} ")
    wanted = "\n".join(line for line in metrics_text.splitlines() if line.startswith(family_lines))
    for parsed in text_string_to_metric_families(wanted + "\n"):
        yield from (sample for sample in parsed.samples if sample.name == family)


def request_counts(metrics_text: str) -> Counter[str]:
    """An API server's requests so far, by "VERB resource[/subresource]" (apiserver_request_total)."""
    out: Counter[str] = Counter()
    for sample in samples(metrics_text, "apiserver_request_total"):
        labels = sample.labels
        what = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        out[f"{labels.get('verb', '?')} {what or labels.get('path', '?')}"] += int(sample.value)
    return out


def reconcile_counts(metrics_text: str) -> Counter[str]:
    """The syncer's reconciles so far, by kind (the count of its tispace_syncer_sync_seconds)."""
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "tispace_syncer_sync_seconds_count":
                out[sample.labels.get("kind", "?")] += int(sample.value)
    return out


async def _requests(clients: list[Client]) -> Counter[str]:
    """Requests so far summed over API servers (the bench's own scrapes of /metrics included, a few)."""
    total: Counter[str] = Counter()
    for c in clients:
        total += request_counts(await c.get_text("/metrics"))
    return total


async def _reconciles(syncer: Syncer | None) -> Counter[str]:
    if syncer is None:
        return Counter()
    return reconcile_counts(await asyncio.to_thread(syncer_text, syncer.port(), "/metrics"))


def per_pod(before: Counter[str], after: Counter[str], pods: int) -> dict[str, Any]:
    """Requests per pod by verb and resource (those above 0.01 per pod), and their total."""
    delta = after - before
    rows = {
        k: round(v / pods, 2) for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v / pods >= 0.01
    }
    return {"total": round(sum(delta.values()) / pods, 2), "by_verb_resource": rows}


def cost_ratios(figures: dict[str, Any]) -> dict[str, float]:
    """Through the tenants against directly, for the same pods: CPU-seconds of every component
    (`cpu_ratio`), and API requests per pod on every API server (`requests_ratio`: the tenant API
    servers' and the super one's against the super one's alone). The second says how much of the
    first is the second API server's work, which no cut in the syncer removes. A ratio whose
    direct figure is missing or zero is left out."""
    ratios: dict[str, float] = {}
    direct_cpu = sum(figures.get("cpu_seconds_direct", {}).values())
    if direct_cpu > 0:
        through_cpu = sum(figures.get("cpu_seconds_through_tenants", {}).values())
        ratios["cpu_ratio"] = round(through_cpu / direct_cpu, 2)
    direct_requests = figures.get("requests_per_pod_direct", {}).get("super", {}).get("total", 0)
    if direct_requests > 0:
        through = figures.get("requests_per_pod_through_tenants", {})
        total = sum(through.get(side, {}).get("total", 0) for side in ("super", "tenants"))
        ratios["requests_ratio"] = round(total / direct_requests, 2)
    return ratios


@contextlib.contextmanager
def flame_graph(pid: int | None, path: Path | None) -> Iterator[None]:
    """py-spy samples the syncer while the block runs and writes a flame graph (SVG) to `path`."""
    if pid is None or path is None:
        yield
        return
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise ProfilerMissing("--profile needs py-spy: pip install -e '.[bench]'")
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--output", str(path), "--rate", "200", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes the graph when interrupted
        proc.wait(timeout=120)


class ProfilerMissing(RuntimeError):
    """py-spy, the profile's one need, is an optional extra like matplotlib."""


async def idle_cost(pids: list[int], seconds: float) -> dict[str, float]:
    """CPU (millicores), RSS and private memory (MiB) of a set of processes left alone for `seconds`.
    RSS counts the binaries' code, which every tenant's copies share; private memory is what one
    more tenant costs."""
    before = cpu_by_group({"cp": pids})["cp"]
    await asyncio.sleep(seconds)
    used = cpu_by_group({"cp": pids})["cp"] - before
    rss = sum(procs.rss_bytes(p) for p in pids)
    private = sum(procs.private_bytes(p) for p in pids)
    return {
        "seconds": seconds,
        "millicores": round(1000 * used / seconds, 1),
        "rss_mib": round(rss / 2**20, 1),
        "private_mib": round(private / 2**20, 1),
    }


class Syncer(Protocol):
    """The running syncer the bench measures and restarts."""

    def pid(self) -> int: ...

    def port(self) -> int: ...

    def restart(self) -> None: ...


def syncer_call(port: int, path: str, method: str = "GET") -> dict[str, Any]:
    """The syncer's own HTTP endpoint (/status: tenants served, synced, queue depth)."""
    result: dict[str, Any] = json.loads(syncer_text(port, path, method))
    return result


def syncer_text(port: int, path: str, method: str = "GET") -> str:
    """The syncer's own HTTP endpoint, as text (/metrics)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return str(resp.read().decode())


async def _resync_seconds(syncer: Syncer, tenant_names: list[str], timeout: float) -> float:
    """Restart the syncer; seconds until it serves every tenant, all synced, queue empty."""
    t0 = time.monotonic()
    await asyncio.to_thread(syncer.restart)

    async def resynced() -> bool:
        try:
            st = await asyncio.to_thread(syncer_call, syncer.port(), "/status")
        except OSError:
            return False
        served = st.get("tenants", {})
        return all(served.get(n, {}).get("synced") for n in tenant_names) and st.get("queue") == 0

    left = timeout - (time.monotonic() - t0)  # the restart counts
    await aio.poll(resynced, timeout=left, interval=0.1, what="the syncer resynced after its restart")
    return time.monotonic() - t0


def _machine() -> dict[str, Any]:
    from tispace import binaries

    versions = {}
    for name, flag in (("kube-apiserver", "--version"), ("etcd", "--version"), ("kwok", "--version")):
        out = os.popen(f"{binaries.path(name)} {flag} 2>/dev/null").read().splitlines()
        versions[name] = out[0] if out else "?"
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


async def _drive(
    targets: list[tuple[Client, str]], plan: Plan, tick: Tick, path: str
) -> tuple[PathResult, list[list[float]]]:
    """Each target (an API server and a namespace) its share of the plan's pods, all at once: the
    path's result and each target's latencies."""
    t0 = time.monotonic()
    per_target = await asyncio.gather(
        *(
            _run_path(c, ns, plan.pods_of(i), plan, lambda n: tick(path, n), direct=path == "direct")
            for i, (c, ns) in enumerate(targets)
        )
    )
    return summarize([x for lat in per_target for x in lat], time.monotonic() - t0), list(per_target)


async def _direct_phase(
    sup: Client,
    namespaces: list[str],
    plan: Plan,
    tick: Tick,
    processes: Callable[[], dict[str, list[int]]],
    progress: Callable[[str], None],
) -> tuple[PathResult, list[list[float]], dict[str, Any]]:
    """The plan's pods straight into the super cluster, one namespace per tenant, then removed (the
    namespaces waited out): the path's result, each namespace's latencies, the phase's figures."""
    try:
        for ns in namespaces:
            await _ready_namespace(sup, ns)
        progress(f"directly: {plan.total} pods ({plan.template})")
        requests0 = await _requests([sup])
        groups0 = cpu_by_group(processes())
        own0 = time.process_time()
        result, per_ns = await _drive([(sup, ns) for ns in namespaces], plan, tick, "direct")
        return (
            result,
            per_ns,
            {
                "cpu_seconds_direct": cpu_delta(groups0, cpu_by_group(processes())),
                # the load generator shares the machine: its own CPU, apart from the components'
                "bench_client_cpu_seconds": {"direct": round(time.process_time() - own0, 2)},
                "requests_per_pod_direct": {"super": per_pod(requests0, await _requests([sup]), plan.total)},
            },
        )
    finally:
        progress("removing the direct pods")
        for ns in namespaces:
            await sup.delete(r.NAMESPACES, ns)
        await aio.poll(
            lambda: _all_gone(sup, namespaces),
            timeout=plan.timeout,
            interval=1,
            what="direct namespaces gone",
        )


async def _through_phase(
    sup: Client,
    clients: list[Client],
    plan: Plan,
    tick: Tick,
    processes: Callable[[], dict[str, list[int]]],
    progress: Callable[[str], None],
    syncer: Syncer | None,
    profile: Path | None,
) -> tuple[PathResult, list[list[float]], dict[str, Any]]:
    """The plan's pods through the tenants, each tenant its share: the path's result, each tenant's
    latencies, the phase's figures (the syncer's with them)."""
    cpu0 = _cpu_seconds(syncer.pid()) if syncer else 0.0
    rss0 = procs.rss_bytes(syncer.pid()) if syncer else 0
    reconciles0 = await _reconciles(syncer)
    progress(f"through tenants: {plan.total} pods ({plan.template})")
    requests0 = (await _requests([sup]), await _requests(clients))
    groups0 = cpu_by_group(processes())
    own0 = time.process_time()
    with flame_graph(syncer.pid() if syncer else None, profile):
        through, per_tenant = await _drive([(c, "bench") for c in clients], plan, tick, "through")
    figures: dict[str, Any] = {
        "cpu_seconds_through_tenants": cpu_delta(groups0, cpu_by_group(processes())),
        "bench_client_cpu_seconds": {"through_tenants": round(time.process_time() - own0, 2)},
        "requests_per_pod_through_tenants": {
            "super": per_pod(requests0[0], await _requests([sup]), plan.total),
            "tenants": per_pod(requests0[1], await _requests(clients), plan.total),
        },
    }
    if syncer:
        figures["syncer_cpu_seconds"] = round(_cpu_seconds(syncer.pid()) - cpu0, 2)
        figures["syncer_cpu_ms_per_pod"] = round(1000 * figures["syncer_cpu_seconds"] / plan.total, 2)
        reconciles = await _reconciles(syncer) - reconciles0
        figures["syncer_reconciles_per_pod"] = {
            "total": round(sum(reconciles.values()) / plan.total, 2),
            "by_kind": {k: round(v / plan.total, 2) for k, v in reconciles.most_common()},
        }
        figures["syncer_peak_rss_mib"] = round(procs.rss_bytes(syncer.pid(), peak=True) / 2**20, 1)
        # each pod twice (tenant and super caches) plus its Events and queue keys
        figures["syncer_rss_kib_per_pod"] = round(
            (procs.rss_bytes(syncer.pid()) - rss0) / 1024 / plan.total, 1
        )
    return through, per_tenant, figures


async def run(
    super_kubeconfig: Path,
    plan: Plan,
    *,
    syncer: Syncer | None,
    state_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
    tick: Tick = lambda path, n: None,
    processes: Callable[[], dict[str, list[int]]] = dict,
    profile: Path | None = None,
    idle: float = 0,
) -> dict[str, Any]:
    """Run the plan; `processes()` names groups of pids whose CPU use each phase reports; `profile`:
    a flame graph of the syncer through the tenants phase; `idle`: seconds one tenant's control plane
    is watched, untouched, before the pods (its CPU and RSS)."""
    stamp = time.strftime("%H%M%S")
    names = [f"bench-{stamp}-{i}" for i in range(plan.tenants)]
    direct_ns = [f"bench-direct-{stamp}-{i}" for i in range(plan.tenants)]
    async with Client.from_kubeconfig(super_kubeconfig, name="super") as sup:
        await sup.ensure(r.CLUSTERVERSIONS, tenants.cluster_version())
        # The direct path first, while the super cluster has no tenants, and its pods gone before
        # there are: measured after the tenants, it paid for their steady work (20 tenants' Lease
        # renewals and node controllers took half its CPU at 20 x 250) and looked slower than it is.
        direct, per_ns, extra = await _direct_phase(sup, direct_ns, plan, tick, processes, progress)
        progress(f"creating {plan.tenants} tenants")
        for name in names:
            await sup.create(r.VIRTUALCLUSTERS, tenants.virtual_cluster(name), "default")
        clients = []
        try:
            for name in names:
                await tenants.wait_phase(sup, name, "default")
                config = await tenants.admin_kubeconfig(sup, name, "default")
                clients.append(Client(kubeconfig.credentials(config), name=name))
            for c in clients:
                await _ready_namespace(c, "bench")
            if idle and state_dir:
                progress(f"one idle tenant control plane, {idle:.0f} s")
                extra["idle_tenant_control_plane"] = await idle_cost(
                    await _control_plane_pids(sup, state_dir, names[0]), idle
                )
            through, per_tenant, figures = await _through_phase(
                sup, clients, plan, tick, processes, progress, syncer, profile
            )
            extra["bench_client_cpu_seconds"].update(figures.pop("bench_client_cpu_seconds"))
            extra.update(figures)
            if plan.noisy and plan.tenants > 1:
                quiet = [x for lat in per_tenant[1:] for x in lat]
                extra["quiet_tenants"] = asdict(summarize(quiet, max(quiet)))
                extra["noisy_tenant"] = asdict(summarize(per_tenant[0], max(per_tenant[0])))
            if state_dir:
                extra["tenant_control_plane_rss_mib"] = await _control_plane_rss(sup, state_dir, names)
            if syncer:
                progress(f"one full drift check over {plan.total} pods")
                for field in ("drift_check", "drift_check_again"):  # cold, then memoized
                    scan = await asyncio.to_thread(syncer_call, syncer.port(), "/patrol", "POST")
                    extra[f"{field}_seconds"] = scan["seconds"]
                    extra[f"{field}_cpu_seconds"] = scan["cpu_seconds"]
                progress("restarting the syncer, timing the resync")
                extra["resync_after_restart_seconds"] = round(
                    await _resync_seconds(syncer, [f"default/{n}" for n in names], plan.timeout), 2
                )
        finally:
            for c in clients:
                await c.close()
            progress("cleaning up")
            for name in names:
                await sup.delete(r.VIRTUALCLUSTERS, name, "default")
            for name in names:
                await tenants.wait_gone(sup, name, "default", timeout=300)
    return {
        "plan": asdict(plan),
        "through_tenants": asdict(through),
        "direct": asdict(direct),
        "throughput_ratio": round(through.throughput / direct.throughput, 3),
        "p99_overhead_s": round(through.p99 - direct.p99, 3),
        **cost_ratios(extra),
        **extra,
        "latencies": {
            "through_tenants": [round(x, 4) for lat in per_tenant for x in lat],
            "direct": [round(x, 4) for lat in per_ns for x in lat],
        },
        "machine": _machine(),
    }


async def _control_plane_pids(sup: Client, state_dir: Path, name: str) -> list[int]:
    """The processes of one tenant's control plane (process provisioner)."""
    root = await tenants.root_of(sup, name, "default")
    return [c.proc.pid for c in procs.Registry(state_dir / "tenants" / root / "procs.json").load()]


async def _control_plane_rss(sup: Client, state_dir: Path, names: list[str]) -> float:
    """Mean RSS of one tenant's control plane processes, in MiB."""
    totals = [sum(procs.rss_bytes(p) for p in await _control_plane_pids(sup, state_dir, n)) for n in names]
    return round(statistics.mean(totals) / 2**20, 1) if totals else 0.0


class PlottingMissing(RuntimeError):
    """matplotlib, the plot's one need, is an optional extra: the programs never install it."""


PLOTTING_MISSING = "the bench's plot needs matplotlib: pip install -e '.[bench]' (or '.[test]')"


def require_plotting() -> None:
    """Fail before a run of many minutes, not after it, when the plot could not be drawn."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlottingMissing(PLOTTING_MISSING)


def plot(result: dict[str, Any], path: Path) -> None:
    """Latency distributions (CDF) of both paths, in one PNG."""
    try:
        import matplotlib
    except ImportError as e:
        raise PlottingMissing(PLOTTING_MISSING) from e

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label in (
        ("through_tenants", "through tenants (syncer)"),
        ("direct", "directly in the super cluster"),
    ):
        xs = sorted(result["latencies"][key])
        ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=f"{label}, p99 {result[key]['p99']} s")
    plan = result["plan"]
    ax.set_title(
        f"create-to-Running, {plan['tenants']} tenants x {plan['pods']} pods ({plan['template']}"
        + (f", noisy x{plan['noisy']}" if plan["noisy"] else "")
        + f"); {result['machine']['cores']} cores"
    )
    ax.set_xlabel("seconds")
    ax.set_ylabel("fraction of pods Running")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
