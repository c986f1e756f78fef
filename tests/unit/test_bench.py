from tispace import bench


def test_summarize_percentiles_and_throughput() -> None:
    lat = [i / 100 for i in range(1, 101)]  # 0.01 .. 1.00 s
    r = bench.summarize(lat, seconds=2.0)
    assert r.pods == 100 and r.throughput == 50.0
    assert (r.p50, r.p90, r.p99, r.max) == (0.505, 0.901, 0.99, 1.0)  # inclusive method, rounded to ms


def test_summarize_single_pod() -> None:
    r = bench.summarize([0.3], seconds=0.5)
    assert (r.p50, r.p99, r.throughput) == (0.3, 0.3, 2.0)
