"""Kubelet `/metrics/resource` of super nodes -> the same for one tenant's virtual nodes. Pure.

Only the tenant's pods stay, with tenant namespaces; node-level series stay only when the
agent speaks for exactly one node (a DaemonSet pod per super node), since one agent serving
every node cannot say which node a scrape is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

PodKey = tuple[str, str]
"""(namespace, name)."""


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def for_tenant(texts: Iterable[str], pods: dict[PodKey, PodKey], *, node_level: bool) -> bytes:
    """Merge node scrapes, keeping samples of `pods` (super key -> tenant key) renamed to the tenant's."""
    merged: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            out = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            for sample in family.samples:
                labels = dict(sample.labels)
                if "pod" in labels or "namespace" in labels:
                    tenant = pods.get((labels.get("namespace", ""), labels.get("pod", "")))
                    if tenant is None:
                        continue
                    labels["namespace"], labels["pod"] = tenant
                elif not node_level:
                    continue
                out.samples.append(sample._replace(labels=labels))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([m for m in merged.values() if m.samples]))
    return generate_latest(registry)
