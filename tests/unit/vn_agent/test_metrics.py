"""Resource metrics of super nodes, cut down to one tenant's pods with tenant names."""

from prometheus_client.parser import text_string_to_metric_families

from vn_agent import metrics

NODE_0 = """# HELP container_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the container
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="main",namespace="ta-default",pod="shell"} 1.5 1700000000000
container_cpu_usage_seconds_total{container="main",namespace="tb-default",pod="shell"} 9 1700000000000
# HELP pod_memory_working_set_bytes [ALPHA] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="ta-default",pod="shell"} 1.048576e+06 1700000000000
# HELP node_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the node
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 120 1700000000000
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"""
NODE_1 = """# HELP container_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the container
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="db",namespace="ta-web",pod="db-0"} 3 1700000000000
"""
PODS = {
    ("ta-default", "shell"): ("default", "shell"),
    ("ta-web", "db-0"): ("web", "db-0"),
}


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }


def test_only_the_tenants_pods_stay_with_tenant_namespaces() -> None:
    got = samples(metrics.for_tenant([NODE_0, NODE_1], PODS, node_level=False))
    assert got == {
        (
            "container_cpu_usage_seconds_total",
            (("container", "main"), ("namespace", "default"), ("pod", "shell")),
        ): 1.5,
        (
            "container_cpu_usage_seconds_total",
            (("container", "db"), ("namespace", "web"), ("pod", "db-0")),
        ): 3.0,
        ("pod_memory_working_set_bytes", (("namespace", "default"), ("pod", "shell"))): 1048576.0,
    }


def test_node_series_stay_when_the_agent_speaks_for_one_node() -> None:
    got = samples(metrics.for_tenant([NODE_0], PODS, node_level=True))
    assert got[("node_cpu_usage_seconds_total", ())] == 120.0 and got[("scrape_error", ())] == 0.0
    assert not any(dict(labels).get("namespace", "").startswith(("ta-", "tb-")) for _, labels in got)


def test_timestamps_and_types_survive() -> None:
    body = metrics.for_tenant([NODE_1], PODS, node_level=False).decode()
    assert "# TYPE container_cpu_usage_seconds_total counter" in body
    assert body.rstrip().endswith("1700000000000")


def test_nothing_of_the_tenant_gives_an_empty_body() -> None:
    assert metrics.for_tenant([NODE_0], {}, node_level=False) == b""
