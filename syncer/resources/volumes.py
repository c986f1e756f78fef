"""Claims down, bound volumes up, and the few PV fields a tenant may carry down. Pure.

A tenant never creates a super PV (a hostPath or foreign-volume PV would escape isolation):
its claims go down with the storage class mapped, the super cluster provisions, and the
bound super PV appears in the tenant pre-bound to the tenant claim, so the tenant's own PV
controller binds them as it would any static volume. Labels and the reclaim policy are the
tenant's to change (operators set Retain), and flow down only for the tenant's own volumes.
"""

from __future__ import annotations

from typing import Any

from syncer.resources.context import Refused, TenantContext, copied, meta_patch, super_meta
from tispace import naming

# Claim spec fields that go down; volumeName never does (the super cluster binds its own PV).
_CLAIM_SPEC = ("accessModes", "resources", "volumeMode", "selector", "dataSource", "dataSourceRef")
# PV spec fields that come up; the volume source is copied as is (one of them is set).
_PV_UP = (
    "capacity",
    "accessModes",
    "volumeMode",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "volumeAttributesClassName",
)
# PV spec fields the super cluster changes on a bound volume (expansion, modification): kept current.
_PV_FOLLOWS = ("capacity", "volumeAttributesClassName")
# Claim status fields the super cluster's resizer and modifier write; phase is the tenant PV controller's.
_CLAIM_STATUS_UP = (
    "capacity",
    "conditions",
    "allocatedResources",
    "allocatedResourceStatuses",
    "currentVolumeAttributesClassName",
    "modifyVolumeStatus",
)
_PV_SOURCES = ("csi", "hostPath", "local", "rbd", "cephfs", "nfs", "iscsi", "fc", "flexVolume")


def super_class(claim: dict[str, Any], ctx: TenantContext) -> str:
    """The super storage class for a tenant claim's class, or Refused.

    Unset or empty -> the default (Ceph) class; a public class -> itself; a policy row -> its
    target; anything else is refused: the tenant cannot reach a class the admin did not share.
    """
    name = (claim.get("spec") or {}).get("storageClassName") or ""
    if not name:
        return ctx.default_storage_class
    if name in ctx.storage_class_policy:
        return ctx.storage_class_policy[name]
    if name in ctx.public_storage_classes:
        return name
    offered = ", ".join(sorted({*ctx.public_storage_classes, *ctx.storage_class_policy})) or "(none)"
    raise Refused(
        "StorageClassNotAllowed",
        f"storage class {name!r} is not offered by this TiSpace cluster; use one of: {offered}, "
        "or leave storageClassName unset for the default",
    )


def attributes_class(claim: dict[str, Any], ctx: TenantContext) -> str | None:
    """The claim's VolumeAttributesClass when it is one the admin shares, else Refused; None when unset."""
    name = (claim.get("spec") or {}).get("volumeAttributesClassName")
    if not name or name in ctx.public_volume_attributes_classes:
        return name or None
    offered = ", ".join(sorted(ctx.public_volume_attributes_classes)) or "(none)"
    raise Refused(
        "VolumeAttributesClassNotAllowed",
        f"volume attributes class {name!r} is not offered by this TiSpace cluster; use one of: {offered}",
    )


def claim_to_super(obj: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    out_spec = {f: copied(spec[f]) for f in _CLAIM_SPEC if f in spec}
    out_spec["storageClassName"] = super_class(obj, ctx)
    if vac := attributes_class(obj, ctx):
        out_spec["volumeAttributesClassName"] = vac
    if "dataSourceRef" in out_spec:  # a clone from another namespace would be another tenant's volume
        out_spec["dataSourceRef"].pop("namespace", None)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": super_meta(obj, ctx, namespace=ctx.super_ns(obj["metadata"]["namespace"])),
        "spec": out_spec,
    }


def claim_patch(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any] | None:
    """Metadata, a larger storage request (expansion) and the attributes class (modification); the
    rest of a claim spec is immutable."""
    patch: dict[str, Any] = meta_patch(desired, actual) or {}
    spec: dict[str, Any] = {}
    aspec = actual.get("spec") or {}
    want = desired["spec"].get("resources", {}).get("requests", {}).get("storage")
    have = aspec.get("resources", {}).get("requests", {}).get("storage")
    if want and want != have:
        spec["resources"] = {"requests": {"storage": want}}
    vac = desired["spec"].get("volumeAttributesClassName")
    if vac != aspec.get("volumeAttributesClassName"):
        spec["volumeAttributesClassName"] = vac
    if spec:
        patch["spec"] = spec
    return patch or None


def claim_status_patch(
    super_claim: dict[str, Any], tenant_claim: dict[str, Any], ctx: TenantContext
) -> dict[str, Any] | None:
    """What the super cluster's resizer and modifier reported (a merge patch of the tenant claim's
    status), once both claims are Bound: binding itself is the tenant PV controller's."""
    sst, tst = super_claim.get("status") or {}, tenant_claim.get("status") or {}
    if sst.get("phase") != "Bound" or tst.get("phase") != "Bound":
        return None
    patch = {f: sst.get(f) for f in _CLAIM_STATUS_UP if sst.get(f) != tst.get(f)}
    return patch or None


def bound_claim(super_pv: dict[str, Any]) -> tuple[str, str, str] | None:
    """(super namespace, name, uid) of the claim a super PV is bound to."""
    ref = (super_pv.get("spec") or {}).get("claimRef") or {}
    if not ref.get("namespace") or not ref.get("name"):
        return None
    return ref["namespace"], ref["name"], ref.get("uid", "")


def pv_up(super_pv: dict[str, Any], tenant_claim: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    """The tenant's view of a super PV bound to one of its claims, pre-bound to that claim."""
    sspec, cmeta = super_pv["spec"], tenant_claim["metadata"]
    spec = {f: copied(sspec[f]) for f in (*_PV_UP, *_PV_SOURCES) if f in sspec}
    spec["storageClassName"] = (tenant_claim.get("spec") or {}).get("storageClassName") or ""
    spec["claimRef"] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": cmeta["namespace"],
        "name": cmeta["name"],
        "uid": cmeta["uid"],
    }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": super_pv["metadata"]["name"],
            "labels": dict(super_pv["metadata"].get("labels") or {}),
            "annotations": {naming.ANN_CLUSTER: ctx.root},
        },
        "spec": spec,
    }


def is_synced_pv(tenant_pv: dict[str, Any], ctx: TenantContext) -> bool:
    """A tenant PV the syncer made (not one the tenant created itself)."""
    return bool((tenant_pv["metadata"].get("annotations") or {}).get(naming.ANN_CLUSTER) == ctx.root)


def pv_up_patch(tenant_pv: dict[str, Any], super_pv: dict[str, Any]) -> dict[str, Any] | None:
    """The super PV's new size or attributes class onto the tenant's copy (after an expansion or a
    modification), so the tenant sees what its claim really has."""
    tspec, sspec = tenant_pv.get("spec") or {}, super_pv.get("spec") or {}
    spec = {f: sspec.get(f) for f in _PV_FOLLOWS if sspec.get(f) != tspec.get(f)}
    return {"spec": spec} if spec else None


def pv_down_patch(tenant_pv: dict[str, Any], super_pv: dict[str, Any]) -> dict[str, Any] | None:
    """The tenant's labels and reclaim policy onto the super PV (labels are added or changed, never
    removed: the super cluster's own labels stay)."""
    tlabels = tenant_pv["metadata"].get("labels") or {}
    slabels = super_pv["metadata"].get("labels") or {}
    labels = {k: v for k, v in tlabels.items() if slabels.get(k) != v}
    patch: dict[str, Any] = {"metadata": {"labels": labels}} if labels else {}
    policy = (tenant_pv.get("spec") or {}).get("persistentVolumeReclaimPolicy")
    if policy and policy != super_pv["spec"].get("persistentVolumeReclaimPolicy"):
        patch["spec"] = {"persistentVolumeReclaimPolicy": policy}
    return patch or None
