"""Cluster classes the admin shares with every tenant: read-only copies up. Pure.

A super StorageClass, VolumeAttributesClass, PriorityClass, RuntimeClass or IngressClass labelled
`tenancy.x-k8s.io/public=true` appears in every tenant under the same name. A StorageClass
copy names TiSpace as its provisioner: the tenant's own controller manager must not try to
provision (in-tree plugins would act on the tenant's behalf without the super cluster),
and its parameters (pool names, secret references) stay in the super cluster. A
VolumeAttributesClass copy names TiSpace as its driver the same way; its parameters (IOPS,
throughput) are what a tenant chooses between, so they are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tispace import naming
from tispace.kube import resources as r
from tispace.kube.resources import Resource

PROVISIONER = f"{naming.GROUP}/super-cluster"
ANN_PROVISIONER = f"{naming.GROUP}/super-provisioner"
_KEEP_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "ingressclass.kubernetes.io/is-default-class",
)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if not k.startswith(naming.GROUP)}
    labels[naming.LABEL_PUBLIC] = "true"
    labels[naming.MANAGED_BY] = naming.MANAGED_BY_VALUE
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in _KEEP_ANNOTATIONS}
    return {"name": meta["name"], "labels": labels, "annotations": annotations}


Copy = Callable[[dict[str, Any]], dict[str, Any]]


def copy_fields(res: Resource, *fields: str) -> Copy:
    """A translator copying `fields` (list items carry no apiVersion/kind: the resource names them)."""

    def to_tenant(obj: dict[str, Any]) -> dict[str, Any]:
        out = {"apiVersion": res.api_version, "kind": res.kind, "metadata": _meta(obj)}
        out.update({f: obj[f] for f in fields if f in obj})
        return out

    return to_tenant


def storage_class(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy_fields(
        r.STORAGECLASSES, "reclaimPolicy", "volumeBindingMode", "allowVolumeExpansion", "mountOptions"
    )(obj)
    out["provisioner"] = PROVISIONER
    out["metadata"]["annotations"][ANN_PROVISIONER] = obj["provisioner"]
    return out


def volume_attributes_class(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy_fields(r.VOLUMEATTRIBUTESCLASSES, "parameters")(obj)
    out["driverName"] = PROVISIONER
    out["metadata"]["annotations"][ANN_PROVISIONER] = obj["driverName"]
    return out


def priority_class(obj: dict[str, Any]) -> dict[str, Any]:
    return copy_fields(r.PRIORITYCLASSES, "value", "globalDefault", "description", "preemptionPolicy")(obj)


def runtime_class(obj: dict[str, Any]) -> dict[str, Any]:
    return copy_fields(r.RUNTIMECLASSES, "handler", "overhead", "scheduling")(obj)


def ingress_class(obj: dict[str, Any]) -> dict[str, Any]:
    return copy_fields(r.INGRESSCLASSES, "spec")(obj)


CONTEXT_CLASSES = {
    "StorageClass": "public_storage_classes",
    "IngressClass": "public_ingress_classes",
    "VolumeAttributesClass": "public_volume_attributes_classes",
}
"""Shared classes a tenant object may name, and the TenantContext field that lists them."""


def differs(want: dict[str, Any], have: dict[str, Any]) -> bool:
    """Whether the tenant copy is stale (classes are mostly immutable: a stale one is replaced)."""
    if any(have.get(k) != v for k, v in want.items() if k not in ("metadata", "apiVersion")):
        return True
    return any((have["metadata"].get(f) or {}) != want["metadata"][f] for f in ("labels", "annotations"))


def read_only_policy(resources: Iterable[Resource]) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy (and binding) that keeps the tenant's public copies read-only.

    Only TiSpace's own identity may create, change or delete an object carrying the public
    label; a tenant can neither edit a shared class nor fake one.
    """
    label = naming.LABEL_PUBLIC
    marked = f"(has(o.metadata.labels) && '{label}' in o.metadata.labels)"
    name = "tispace-public-classes-read-only"
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name, "labels": {naming.MANAGED_BY: naming.MANAGED_BY_VALUE}},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [res.group],
                            "apiVersions": [res.version],
                            "operations": ["CREATE", "UPDATE", "DELETE"],
                            "resources": [res.plural],
                        }
                        for res in resources
                    ]
                },
                "variables": [
                    {"name": "ours", "expression": "request.userInfo.username == 'tispace-admin'"},
                    {
                        "name": "marked",
                        "expression": (
                            f"(object != null && [object].exists(o, {marked})) || "
                            f"(oldObject != null && [oldObject].exists(o, {marked}))"
                        ),
                    },
                ],
                "validations": [
                    {
                        "expression": "variables.ours || !variables.marked",
                        "message": "this class is shared read-only by the TiSpace super cluster; "
                        "ask your admin to change it, or create a class of your own without the "
                        f"{label} label",
                        "reason": "Forbidden",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name, "labels": {naming.MANAGED_BY: naming.MANAGED_BY_VALUE}},
            "spec": {"policyName": name, "validationActions": ["Deny"]},
        },
    ]
