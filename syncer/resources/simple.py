"""Kinds whose super copy is the tenant object with translated metadata: a row each."""

from __future__ import annotations

from typing import Any

from syncer.resources.context import TenantContext, meta_patch, super_meta
from tispace import naming

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
"""Published in every namespace by each cluster's controller manager, with that cluster's CA."""
SUPER_ROOT_CA_CONFIGMAP = "tenant-kube-root-ca.crt"


def configmap_super_name(name: str) -> str:
    """The tenant's CA bundle must not fight the super cluster's of the same name."""
    return SUPER_ROOT_CA_CONFIGMAP if name == ROOT_CA_CONFIGMAP else name


def is_default_serviceaccount(obj: dict[str, Any]) -> bool:
    """Every super namespace gets its own `default` ServiceAccount; ours would collide with it."""
    return bool(obj["metadata"]["name"] == "default")


def namespace_to_super(obj: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    meta = super_meta(obj, ctx, namespace=None, name=ctx.super_ns(obj["metadata"]["name"]))
    meta["labels"][naming.LABEL_TENANT_NAMESPACE] = obj["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


QUOTA = "tenant-quota"


def namespace_quota(ctx: TenantContext, super_ns: str) -> dict[str, Any]:
    """The ResourceQuota each super namespace of a tenant with limits carries (server-side applied)."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": QUOTA,
            "namespace": super_ns,
            "labels": {naming.MANAGED_BY: naming.MANAGED_BY_VALUE, naming.LABEL_TENANT: ctx.root},
        },
        "spec": {"hard": dict(ctx.quota)},
    }


def configmap_to_super(obj: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    out = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": super_meta(
            obj,
            ctx,
            namespace=ctx.super_ns(obj["metadata"]["namespace"]),
            name=configmap_super_name(obj["metadata"]["name"]),
        ),
    }
    for f in ("data", "binaryData", "immutable"):
        if f in obj:
            out[f] = obj[f]
    return out


def secret_to_super(obj: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    """Service-account token secrets become Opaque: the super cluster must not re-sign or own them."""
    stype = obj.get("type", "Opaque")
    out = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque" if stype == SA_TOKEN_TYPE else stype,
        "metadata": super_meta(obj, ctx, namespace=ctx.super_ns(obj["metadata"]["namespace"])),
    }
    for f in ("data", "immutable"):
        if f in obj:
            out[f] = obj[f]
    return out


def serviceaccount_to_super(obj: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    """Never automount the super cluster's tokens into tenant pods."""
    out = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "automountServiceAccountToken": False,
        "metadata": super_meta(obj, ctx, namespace=ctx.super_ns(obj["metadata"]["namespace"])),
    }
    if obj.get("imagePullSecrets"):
        out["imagePullSecrets"] = obj["imagePullSecrets"]
    return out


def data_patch(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any] | None:
    """Metadata plus every top-level field the translator sets (data, type, ...)."""
    patch = meta_patch(desired, actual) or {}
    for f, want in desired.items():
        if f in ("metadata", "apiVersion", "kind"):
            continue
        if actual.get(f) != want:
            patch[f] = want
    for f in ("data", "binaryData"):
        if f in actual and f not in desired:
            patch[f] = None
    return patch or None


def metadata_only_patch(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any] | None:
    return meta_patch(desired, actual)
