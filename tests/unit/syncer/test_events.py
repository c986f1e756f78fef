"""Events going up: what a tenant sees of a super event, and which super events the syncer holds."""

from __future__ import annotations

from typing import Any

from syncer.engine import up
from syncer.engine.model import View
from syncer.engine.pods import TOKEN_KEPT, token_dropped
from syncer.kinds import KINDS
from syncer.resources import events, pods

POD = {
    "metadata": {
        "name": "web-0",
        "namespace": "db",
        "uid": "tenant-uid",
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
}


def test_scheduler_event_goes_up_without_super_names() -> None:
    super_event = {
        "metadata": {"name": "web-0.1879", "namespace": "t-abcdef-dev-db"},
        "involvedObject": {
            "kind": "Pod",
            "name": "web-0",
            "namespace": "t-abcdef-dev-db",
            "uid": "super-uid",
        },
        "reason": "Scheduled",
        "type": "Normal",
        "message": "Successfully assigned t-abcdef-dev-db/web-0 to node-1",
        "eventTime": "2026-01-01T00:00:05.123456Z",
        "reportingComponent": "default-scheduler",
        "action": "Binding",
    }
    up = events.to_tenant(super_event, POD)
    assert up["metadata"] == {"name": "web-0.1879", "namespace": "db"}
    assert up["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-0",
        "namespace": "db",
        "uid": "tenant-uid",
    }
    assert up["message"] == "Successfully assigned db/web-0 to node-1"
    assert "t-abcdef" not in str(up)
    assert up["lastTimestamp"] == up["firstTimestamp"] == "2026-01-01T00:00:05Z"
    assert up["source"] == {"component": "default-scheduler"} and up["count"] == 1


def test_legacy_event_keeps_count_and_field_path() -> None:
    super_event = {
        "metadata": {"name": "e"},
        "involvedObject": {"namespace": "x", "fieldPath": "spec.containers{c}"},
        "reason": "Pulled",
        "message": "ok",
        "count": 4,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:01:00Z",
        "source": {"component": "kubelet"},
    }
    up = events.to_tenant(super_event, POD)
    assert up["count"] == 4 and up["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert up["firstTimestamp"] == "2026-01-01T00:00:00Z"


def test_a_claim_event_goes_up_about_the_tenant_claim() -> None:
    claim = {"metadata": {"name": "data-kv-0", "namespace": "store", "uid": "c-1"}}
    super_event = {
        "metadata": {"name": "data-kv-0.abc", "namespace": "t-abcdef-dev-store"},
        "involvedObject": {
            "kind": "PersistentVolumeClaim",
            "name": "data-kv-0",
            "namespace": "t-abcdef-dev-store",
        },
        "reason": "ProvisioningSucceeded",
        "message": "Successfully provisioned volume pvc-1",
        "lastTimestamp": "2026-01-01T00:00:05Z",
        "count": 1,
    }
    up = events.to_tenant(super_event, claim)
    assert up["involvedObject"]["kind"] == "PersistentVolumeClaim"
    assert up["involvedObject"]["uid"] == "c-1" and up["metadata"]["namespace"] == "store"
    assert "PersistentVolumeClaim" in events.UP_KINDS and "Service" in events.UP_KINDS


class Namespaces:
    """The Routes an event's keep reads: the super namespaces of tenants, listed or not yet."""

    def __init__(self, names: set[str], synced: bool = True) -> None:
        self.names = names
        self.synced = synced

    def super_obj(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind == "Namespace"
        return {"metadata": {"name": name}} if name in self.names else None

    def has_super(self, kind: str, namespace: str, name: str) -> bool:
        return self.super_obj(kind, namespace, name) is not None

    def tenant_of_root(self, root: str) -> str | None:
        return None

    def super_synced(self, kind: str) -> bool:
        return self.synced

    def views(self) -> list[tuple[str, View]]:
        return []


def event(namespace: str, kind: str = "Pod") -> dict[str, Any]:
    return {"metadata": {"name": "e", "namespace": namespace}, "involvedObject": {"kind": kind}}


def test_the_super_cache_holds_only_events_a_tenant_may_see() -> None:
    routes = Namespaces({"t-abc123-dev-app"})
    assert up.event_kept(event("t-abc123-dev-app"), routes) is not None
    assert up.event_kept(event("t-abc123-dev-app", "Service"), routes) is not None
    assert up.event_kept(event("t-abc123-dev-app", "PersistentVolumeClaim"), routes) is not None
    assert up.event_kept(event("t-abc123-dev-app", "Node"), routes) is None  # no tenant sees it
    assert up.event_kept(event("kube-system"), routes) is None  # the super cluster's own
    # Before the namespaces are listed, every event about a synced kind is held (none is lost).
    assert up.event_kept(event("kube-system"), Namespaces(set(), synced=False)) is not None
    assert up.event_kept(event("kube-system", "Node"), Namespaces(set(), synced=False)) is None


def test_a_super_pod_is_cached_without_its_token() -> None:
    annotations = {"a": "b", pods.ANN_TOKEN: "eyJ.signed", pods.ANN_TOKEN_REFRESH: "2026-12-07T00:00:00Z"}
    pod = {"metadata": {"name": "p", "annotations": annotations}, "spec": {}}
    kept = token_dropped(pod, Namespaces(set()))
    assert kept["metadata"]["annotations"] == {
        "a": "b",
        pods.ANN_TOKEN: TOKEN_KEPT,  # where the token is, so a token taken off the pod is seen
        pods.ANN_TOKEN_REFRESH: "2026-12-07T00:00:00Z",
    }
    assert KINDS["Pod"].super_kept is token_dropped  # what the syncer's super pod informer keeps
    assert token_dropped({"metadata": {"name": "q"}}, Namespaces(set())) == {"metadata": {"name": "q"}}
