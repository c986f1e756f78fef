"""The syncer's metrics: counters and histograms it updates, and collectors read when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from syncer.engine.informer import Informer
from syncer.engine.queue import FairQueue


class Metrics:
    def __init__(self, queue: FairQueue[Any]) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "tispace_syncer_sync_seconds",
            "Reconcile time per key",
            ["tenant", "kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tispace_syncer_errors_total",
            "Failed reconciles",
            ["tenant", "kind", "reason"],
            registry=self.registry,
        )
        self.tenants = Gauge("tispace_syncer_tenants", "Tenants served", registry=self.registry)
        self.drift = Counter(
            "tispace_syncer_drift_total",
            "Drift found by the patroller",
            ["tenant", "drift"],
            registry=self.registry,
        )
        self.patrol_seconds = Gauge(
            "tispace_syncer_patrol_seconds", "Duration of the last full patrol", registry=self.registry
        )
        self.registry.register(QueueCollector(queue))
        self.restarts = Counter(
            "tispace_syncer_loop_restarts_total",
            "Background loops restarted after an unexpected error (a bug: see the log)",
            ["loop"],
            registry=self.registry,
        )


class InformerCollector(Collector):
    """Relists, expired watches and echoes heard of every informer, read when scraped."""

    def __init__(self, informers: Callable[[], Iterable[Informer]]) -> None:
        self.informers = informers

    def collect(self) -> Iterator[CounterMetricFamily]:
        relists = CounterMetricFamily(
            "tispace_syncer_informer_relists",
            "Full lists (the first, then one per expired watch)",
            labels=["informer"],
        )
        expired = CounterMetricFamily(
            "tispace_syncer_watch_expired", "Watches the server expired (410 Gone)", labels=["informer"]
        )
        echoes = CounterMetricFamily(
            "tispace_syncer_watch_echoes",
            "Watch events of the syncer's own settled writes, cached without a reconcile",
            labels=["informer"],
        )
        for inf in self.informers():
            relists.add_metric([inf.name], inf.relists)
            expired.add_metric([inf.name], inf.expired)
            echoes.add_metric([inf.name], inf.echoes)
        yield relists
        yield expired
        yield echoes


class QueueCollector(Collector):
    """Keys waiting per tenant, read when scraped (a tenant no longer served has no line)."""

    def __init__(self, queue: FairQueue[Any]) -> None:
        self.queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("tispace_syncer_queue_depth", "Keys waiting, per tenant", labels=["tenant"])
        for tenant in self.queue.tenants():
            depth.add_metric([tenant], self.queue.depth(tenant))
        yield depth
