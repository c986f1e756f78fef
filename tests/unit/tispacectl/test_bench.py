import asyncio
import sys

import pytest

from tispace.kube.client import ApiError
from tispacectl import bench


def test_summarize_percentiles_and_throughput() -> None:
    lat = [i / 100 for i in range(1, 101)]  # 0.01 .. 1.00 s
    r = bench.summarize(lat, seconds=2.0)
    assert r.pods == 100 and r.throughput == 50.0
    assert (r.p50, r.p90, r.p99, r.max) == (0.505, 0.901, 0.99, 1.0)  # inclusive method, rounded to ms


def test_summarize_single_pod() -> None:
    r = bench.summarize([0.3], seconds=0.5)
    assert (r.p50, r.p99, r.throughput) == (0.3, 0.3, 2.0)


def test_templates_make_the_same_objects_on_both_paths_but_the_runtime_class() -> None:
    for template in bench.TEMPLATES:
        through = bench.objects(template, "bench-1", direct=False)
        direct = bench.objects(template, "bench-1", direct=True)
        assert [res.kind for res, _ in through] == [res.kind for res, _ in direct]
        assert through[-1][0].kind == "Pod" and "runtimeClassName" not in through[-1][1]["spec"]
        assert direct[-1][1]["spec"]["runtimeClassName"] == "kata"
    claim = bench.objects("claim", "bench-1", direct=False)
    assert [res.kind for res, _ in claim] == ["PersistentVolumeClaim", "Pod"]
    assert claim[1][1]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "bench-1"
    svc = bench.objects("service", "bench-1", direct=False)
    assert svc[0][1]["spec"]["selector"] == svc[1][1]["metadata"]["labels"]


def test_unknown_template_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown template"):
        bench.objects("gpu", "x", direct=False)


def test_noisy_plan_gives_tenant_zero_more_pods() -> None:
    plan = bench.Plan(tenants=3, pods=10, noisy=20)
    assert [plan.pods_of(i) for i in range(3)] == [200, 10, 10] and plan.total == 220
    assert bench.Plan(tenants=3, pods=10).total == 30
    assert bench.QUICK.tenants * bench.QUICK.pods <= 100


def test_plot_writes_a_png(tmp_path) -> None:
    lat = [0.1 * i for i in range(1, 21)]
    result = {
        "plan": {"tenants": 1, "pods": 20, "template": "plain", "noisy": 0},
        "through_tenants": {"p99": 2.0},
        "direct": {"p99": 1.0},
        "latencies": {"through_tenants": lat, "direct": [x / 2 for x in lat]},
        "machine": {"cores": 2},
    }
    out = tmp_path / "bench.png"
    bench.plot(result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_bench_says_which_extra_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(bench.PlottingMissing, match=r"\[bench\]"):
        bench.require_plotting()
    with pytest.raises(bench.PlottingMissing, match=r"\[bench\]"):
        bench.plot({}, tmp_path / "bench.png")


def test_cpu_accounting_by_group_counts_live_processes_only() -> None:
    import os

    groups = bench.cpu_by_group({"me": [os.getpid()], "gone": [2**22 + 12345]})
    assert groups["me"] > 0 and groups["gone"] == 0.0
    assert bench.cpu_delta({"me": 1.0}, {"me": 1.5, "new": 0.25}) == {"me": 0.5, "new": 0.25}


# Real lines of kube-apiserver's /metrics (long by nature).
METRICS = """# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 10
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 30
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="",verb="GET",version=""} 4
# HELP apiserver_request_duration_seconds x
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_count{verb="POST",resource="pods"} 99
"""


def test_request_counts_sum_codes_by_verb_and_resource() -> None:
    counts = bench.request_counts(METRICS)
    assert counts == {"POST pods": 12, "PATCH pods/status": 30, "GET ?": 4}


def test_requests_per_pod_are_the_change_divided_by_the_pods() -> None:
    before = bench.request_counts(METRICS)
    after = before + bench.request_counts(METRICS.replace("} 10", "} 20").replace("} 30", "} 0"))
    out = bench.per_pod(before, after, 10)
    assert out == {"total": 2.6, "by_verb_resource": {"POST pods": 2.2, "GET ?": 0.4}}


# Real lines of the syncer's /metrics.
SYNCER_METRICS = """# HELP tispace_syncer_sync_seconds Reconcile time per key
# TYPE tispace_syncer_sync_seconds histogram
tispace_syncer_sync_seconds_bucket{kind="Pod",le="0.005",tenant="default/a"} 3.0
tispace_syncer_sync_seconds_count{kind="Pod",tenant="default/a"} 7.0
tispace_syncer_sync_seconds_sum{kind="Pod",tenant="default/a"} 0.2
tispace_syncer_sync_seconds_count{kind="Pod",tenant="default/b"} 5.0
tispace_syncer_sync_seconds_count{kind="Event",tenant="default/b"} 2.0
# HELP tispace_syncer_watch_echoes_total x
# TYPE tispace_syncer_watch_echoes_total counter
tispace_syncer_watch_echoes_total{informer="super/Pod"} 9.0
"""


def test_reconcile_counts_sum_tenants_by_kind() -> None:
    assert bench.reconcile_counts(SYNCER_METRICS) == {"Pod": 12, "Event": 2}


async def test_a_pod_watch_that_fails_is_listed_and_watched_again(monkeypatch) -> None:
    """A tenant API server just made, on a busy machine, may refuse the first watch: the bench
    must still see every pod Running (it timed out with none seen)."""
    monkeypatch.setattr(bench, "WATCH_RETRY_SECONDS", 0.01)
    running: dict[str, dict] = {}

    class Tenant:
        watches = 0

        async def list(self, res, namespace=None):
            return {"metadata": {"resourceVersion": "5"}, "items": list(running.values())}

        async def ensure(self, res, obj, namespace=None):
            name = obj["metadata"]["name"]
            running[name] = {"metadata": {"name": name}, "status": {"phase": "Running"}}

        async def watch(self, res, namespace=None, *, resource_version, timeout_seconds=300):
            self.watches += 1
            if self.watches == 1:
                raise ApiError(503, {"reason": "ServiceUnavailable"}, "WATCH", "/api/v1/pods")
            await asyncio.sleep(3600)
            yield {}

    plan = bench.Plan(tenants=1, pods=3, timeout=5)
    tenant = Tenant()
    latencies = await bench._run_path(tenant, "bench", 3, plan, lambda n: None, direct=False)
    assert len(latencies) == 3 and tenant.watches >= 1


def test_cost_ratios_compare_every_component_and_every_api_server_with_the_direct_path() -> None:
    figures = {
        "cpu_seconds_direct": {"super kube-apiserver": 6.0, "super etcd": 2.0},
        "cpu_seconds_through_tenants": {
            "super kube-apiserver": 9.0,
            "super etcd": 3.0,
            "tenant kube-apiserver": 8.0,
        },
        "requests_per_pod_direct": {"super": {"total": 4.0, "by_verb_resource": {}}},
        "requests_per_pod_through_tenants": {
            "super": {"total": 5.0, "by_verb_resource": {}},
            "tenants": {"total": 7.0, "by_verb_resource": {}},
        },
    }
    assert bench.cost_ratios(figures) == {"cpu_ratio": 2.5, "requests_ratio": 3.0}


def test_cost_ratios_leave_out_what_the_direct_path_did_not_measure() -> None:
    assert bench.cost_ratios({"cpu_seconds_direct": {}, "cpu_seconds_through_tenants": {"syncer": 1.0}}) == {}
    assert bench.cost_ratios({"requests_per_pod_direct": {"super": {"total": 0}}}) == {}
