"""Claims down with the class mapped, bound volumes up, the tenant's PV fields down; shared classes."""

import dataclasses

import pytest

from syncer.kinds import PUBLIC_KINDS
from syncer.resources import classes, volumes
from syncer.resources.context import Refused, TenantContext
from tispace import naming
from tispace.naming import RootNamespace

CTX = TenantContext(
    root=RootNamespace("t-abcdef-dev"),
    vc_name="dev",
    vc_namespace="t",
    public_storage_classes=frozenset({"rook-ceph-block", "fast"}),
    storage_class_policy={"standard": "rook-ceph-block"},
    public_volume_attributes_classes=frozenset({"gold", "silver"}),
)


def claim(cls: str | None = None, **spec: object) -> dict:
    s = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}
    if cls is not None:
        s["storageClassName"] = cls
    return {"metadata": {"name": "data-db-0", "namespace": "app", "uid": "c-1"}, "spec": s}


@pytest.mark.parametrize(
    ("cls", "want"),
    [(None, "rook-ceph-block"), ("", "rook-ceph-block"), ("fast", "fast"), ("standard", "rook-ceph-block")],
)
def test_claim_classes_map_to_super_classes(cls: str | None, want: str) -> None:
    down = volumes.claim_to_super(claim(cls), CTX)
    assert down["spec"]["storageClassName"] == want
    assert down["metadata"]["namespace"] == "t-abcdef-dev-app"


def test_a_class_that_is_not_shared_is_refused_with_the_choices() -> None:
    with pytest.raises(Refused) as err:
        volumes.claim_to_super(claim("secret-nvme"), CTX)
    assert err.value.reason == "StorageClassNotAllowed"
    assert "'secret-nvme'" in err.value.message and "fast, rook-ceph-block, standard" in err.value.message


def test_volume_name_never_goes_down_and_only_growth_is_patched() -> None:
    down = volumes.claim_to_super(claim(volumeName="pvc-foreign"), CTX)
    assert "volumeName" not in down["spec"]
    assert volumes.claim_patch(down, down) is None
    bigger = volumes.claim_to_super(claim(resources={"requests": {"storage": "5Gi"}}), CTX)
    assert volumes.claim_patch(bigger, down) == {"spec": {"resources": {"requests": {"storage": "5Gi"}}}}


SUPER_PV = {
    "metadata": {"name": "pvc-123", "labels": {"zone": "a"}},
    "spec": {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Delete",
        "storageClassName": "rook-ceph-block",
        "hostPath": {"path": "/tmp/hostpath_pv/123"},
        "claimRef": {"namespace": "t-abcdef-dev-app", "name": "data-db-0", "uid": "s-1"},
    },
}


def test_a_bound_super_pv_comes_up_pre_bound_to_the_tenant_claim() -> None:
    assert volumes.bound_claim(SUPER_PV) == ("t-abcdef-dev-app", "data-db-0", "s-1")
    assert volumes.bound_claim({"spec": {}}) is None
    up = volumes.pv_up(SUPER_PV, claim("fast"), CTX)
    assert up["metadata"]["name"] == "pvc-123"
    assert up["spec"]["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "app",
        "name": "data-db-0",
        "uid": "c-1",
    }
    assert up["spec"]["storageClassName"] == "fast" and up["spec"]["hostPath"] == SUPER_PV["spec"]["hostPath"]
    assert volumes.is_synced_pv(up, CTX)
    assert not volumes.is_synced_pv(up, dataclasses.replace(CTX, root=RootNamespace("t-999999-other")))
    assert not volumes.is_synced_pv({"metadata": {"name": "mine"}}, CTX)


def test_tenant_labels_and_reclaim_policy_go_down_and_nothing_else() -> None:
    up = volumes.pv_up(SUPER_PV, claim(), CTX)
    assert volumes.pv_down_patch(up, SUPER_PV) is None
    up["metadata"]["labels"]["tidb.pingcap.com/cluster"] = "basic"
    up["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    up["spec"]["capacity"] = {"storage": "100Gi"}
    assert volumes.pv_down_patch(up, SUPER_PV) == {
        "metadata": {"labels": {"tidb.pingcap.com/cluster": "basic"}},
        "spec": {"persistentVolumeReclaimPolicy": "Retain"},
    }
    del up["metadata"]["labels"]["zone"]  # a removed label does not remove the super one
    assert "zone" not in volumes.pv_down_patch(up, SUPER_PV)["metadata"]["labels"]


def test_public_storage_class_copy_names_tispace_as_provisioner() -> None:
    sc = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "rook-ceph-block",
            "uid": "x",
            "resourceVersion": "9",
            "labels": {naming.LABEL_PUBLIC: "true", "tier": "ssd"},
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true", "secret": "no"},
        },
        "provisioner": "rook-ceph.rbd.csi.ceph.com",
        "parameters": {"pool": "replicapool", "csi.storage.k8s.io/provisioner-secret-name": "rook"},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
    up = classes.storage_class(sc)
    assert up["provisioner"] == classes.PROVISIONER and "parameters" not in up
    assert up["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true",
        classes.ANN_PROVISIONER: "rook-ceph.rbd.csi.ceph.com",
    }
    assert up["metadata"]["labels"] == {
        "tier": "ssd",
        naming.LABEL_PUBLIC: "true",
        naming.MANAGED_BY: "tispace",
    }
    assert set(up["metadata"]) == {"name", "labels", "annotations"}
    assert not classes.differs(up, {**up, "metadata": {**up["metadata"], "uid": "t"}})
    assert classes.differs(up, {**up, "reclaimPolicy": "Retain"})


def test_other_public_kinds_copy_their_fields() -> None:
    pc = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": "high"},
        "value": 1000,
        "description": "d",
    }
    assert classes.priority_class(pc)["value"] == 1000
    rc = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "kata"},
        "handler": "kata",
    }
    assert classes.runtime_class(rc)["handler"] == "kata"


def test_read_only_policy_covers_every_public_kind() -> None:
    policy, binding = classes.read_only_policy(k.resource for k in PUBLIC_KINDS)
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert sorted(r["resources"][0] for r in rules) == sorted(k.resource.plural for k in PUBLIC_KINDS)
    assert len(PUBLIC_KINDS) == 5
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_controller_annotations_neither_go_down_nor_get_removed() -> None:
    tenant = claim()
    tenant["metadata"]["annotations"] = {
        "pv.kubernetes.io/bind-completed": "yes",
        "volume.beta.kubernetes.io/storage-provisioner": classes.PROVISIONER,
        "team": "db",
    }
    down = volumes.claim_to_super(tenant, CTX)
    ann = down["metadata"]["annotations"]
    assert (
        "pv.kubernetes.io/bind-completed" not in ann
        and "volume.beta.kubernetes.io/storage-provisioner" not in ann
    )
    assert ann["team"] == "db"
    bound = {
        **down,
        "metadata": {**down["metadata"], "annotations": {**ann, "pv.kubernetes.io/bind-completed": "yes"}},
    }
    assert volumes.claim_patch(down, bound) is None  # the super PV controller's marks stay


def test_shared_attributes_classes_go_down_and_a_change_is_a_modification() -> None:
    silver = volumes.claim_to_super(claim(volumeAttributesClassName="silver"), CTX)
    assert silver["spec"]["volumeAttributesClassName"] == "silver"
    assert "volumeAttributesClassName" not in volumes.claim_to_super(claim(), CTX)["spec"]
    gold = volumes.claim_to_super(claim(volumeAttributesClassName="gold"), CTX)
    assert volumes.claim_patch(gold, silver) == {"spec": {"volumeAttributesClassName": "gold"}}
    assert volumes.claim_patch(silver, silver) is None


def test_an_attributes_class_that_is_not_shared_is_refused_with_the_choices() -> None:
    with pytest.raises(Refused) as err:
        volumes.claim_to_super(claim(volumeAttributesClassName="platinum"), CTX)
    assert err.value.reason == "VolumeAttributesClassNotAllowed"
    assert "'platinum'" in err.value.message and "gold, silver" in err.value.message


def _with_status(obj: dict, **status: object) -> dict:
    return {**obj, "status": status}


def test_claim_status_of_a_resize_comes_up_once_both_claims_are_bound() -> None:
    """A resize or a modification done by the super cluster is what the tenant's operator waits for."""
    tenant = _with_status(claim(), phase="Bound", capacity={"storage": "1Gi"})
    resizing = _with_status(
        claim(),
        phase="Bound",
        capacity={"storage": "1Gi"},
        allocatedResources={"storage": "5Gi"},
        conditions=[{"type": "Resizing", "status": "True"}],
        currentVolumeAttributesClassName="gold",
    )
    assert volumes.claim_status_patch(resizing, tenant, CTX) == {
        "allocatedResources": {"storage": "5Gi"},
        "conditions": [{"type": "Resizing", "status": "True"}],
        "currentVolumeAttributesClassName": "gold",
    }
    tenant_now = _with_status(claim(), **resizing["status"])
    done = _with_status(
        claim(), phase="Bound", capacity={"storage": "5Gi"}, allocatedResources={"storage": "5Gi"}
    )
    assert volumes.claim_status_patch(done, tenant_now, CTX) == {
        "capacity": {"storage": "5Gi"},
        "conditions": None,  # the merge patch removes what the super claim no longer has
        "currentVolumeAttributesClassName": None,
    }
    assert volumes.claim_status_patch(done, _with_status(claim(), **done["status"]), CTX) is None
    pending = _with_status(claim(), phase="Pending")
    assert volumes.claim_status_patch(done, pending, CTX) is None  # binding is the tenant PV controller's
    assert volumes.claim_status_patch(pending, tenant, CTX) is None


def test_a_super_pv_grown_or_modified_is_followed_by_the_tenant_copy() -> None:
    up = volumes.pv_up(SUPER_PV, claim(), CTX)
    assert volumes.pv_up_patch(up, SUPER_PV) is None
    grown = {**SUPER_PV, "spec": {**SUPER_PV["spec"], "capacity": {"storage": "5Gi"}}}
    assert volumes.pv_up_patch(up, grown) == {"spec": {"capacity": {"storage": "5Gi"}}}
    modified = {**grown, "spec": {**grown["spec"], "volumeAttributesClassName": "gold"}}
    assert volumes.pv_up(modified, claim(), CTX)["spec"]["volumeAttributesClassName"] == "gold"
    assert volumes.pv_up_patch(up, modified) == {
        "spec": {"capacity": {"storage": "5Gi"}, "volumeAttributesClassName": "gold"}
    }


def test_public_attributes_class_copy_names_tispace_as_driver_and_shows_its_parameters() -> None:
    vac = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttributesClass",
        "metadata": {"name": "gold", "labels": {naming.LABEL_PUBLIC: "true"}},
        "driverName": "rook-ceph.rbd.csi.ceph.com",
        "parameters": {"iops": "6000"},
    }
    up = classes.volume_attributes_class(vac)
    assert up["driverName"] == classes.PROVISIONER and up["parameters"] == {"iops": "6000"}
    assert up["metadata"]["annotations"] == {classes.ANN_PROVISIONER: "rook-ceph.rbd.csi.ceph.com"}
