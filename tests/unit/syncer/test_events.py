from syncer.resources import events

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
