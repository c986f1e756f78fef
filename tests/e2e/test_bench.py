"""`tispace bench` end to end, at the smallest size: every figure is there and nothing is left behind."""

from __future__ import annotations

from tests.e2e.conftest import SyncerProc
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import bench, localcluster


class _Syncer:
    """The session's syncer as the bench drives it (the fault tests' restart: same command, same port)."""

    def __init__(self, proc: SyncerProc) -> None:
        self.proc = proc

    def pid(self) -> int:
        return self.proc.comp.proc.pid

    def port(self) -> int:
        return self.proc.port

    def restart(self) -> None:
        self.proc.stop()
        self.proc.start()


async def test_a_bench_run_reports_both_paths_and_leaves_nothing_behind(
    syncer: SyncerProc, super_cluster: localcluster.SuperCluster, super_client: Client
) -> None:
    phases: list[str] = []
    result = await bench.run(
        super_cluster.kubeconfig,
        bench.Plan(tenants=1, pods=3, timeout=180),
        syncer=_Syncer(syncer),
        progress=phases.append,
    )
    # the direct path first, its pods gone before any tenant exists
    assert phases.index("removing the direct pods") < phases.index("creating 1 tenants")
    for path in ("through_tenants", "direct"):
        assert result[path]["pods"] == 3 and len(result["latencies"][path]) == 3
        assert result[path]["p99"] >= result[path]["p50"] > 0
    through = result["requests_per_pod_through_tenants"]
    assert through["tenants"]["by_verb_resource"]["POST pods"] >= 1  # the bench's own creates
    assert through["super"]["by_verb_resource"]["POST pods"] >= 1  # the syncer's
    assert result["requests_per_pod_direct"]["super"]["by_verb_resource"]["POST pods"] >= 1
    assert result["requests_ratio"] > 1  # a tenant API server's requests come on top of the super one's
    assert "cpu_ratio" not in result  # no processes were named, so there is no CPU to compare
    assert set(result["bench_client_cpu_seconds"]) == {"direct", "through_tenants"}
    assert result["syncer_cpu_seconds"] > 0 and result["resync_after_restart_seconds"] > 0
    assert result["drift_check_cpu_seconds"] >= 0
    leftovers = [
        ns["metadata"]["name"]
        for ns in (await super_client.list(r.NAMESPACES))["items"]
        if ns["metadata"]["name"].startswith("bench-direct-")
    ]
    assert leftovers == []
    vcs = (await super_client.list(r.VIRTUALCLUSTERS, "default"))["items"]
    assert not [vc for vc in vcs if vc["metadata"]["name"].startswith("bench-")]
