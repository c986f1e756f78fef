"""Everything a translate function may know about a tenant: passed in, never looked up."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import orjson

from syncer import settings
from syncer.resources.tokens import Signer
from tispace import naming
from tispace.naming import RootNamespace, SuperNamespace, TenantNamespace


@dataclass(frozen=True)
class TenantContext:
    root: RootNamespace
    vc_name: str
    vc_namespace: str
    cluster_domain: str = "cluster.local"
    opaque_prefixes: tuple[str, ...] = ()
    transparent_prefixes: tuple[str, ...] = ()
    runtime_class: str = settings.RUNTIME_CLASS
    dns_ip: str = settings.DNS_IP
    api_host: str = "kubernetes.default.svc"
    api_port: int = 443
    vn_agent_host: str = "127.0.0.1"
    vn_agent_port: int = settings.VN_AGENT_PORT
    scheduler_policy: dict[str, str] = field(default_factory=dict)
    """Tenant schedulerName -> super schedulerName; unlisted names go to the default scheduler."""
    default_storage_class: str = settings.STORAGE_CLASS
    """Super class for claims without a class."""
    storage_class_policy: dict[str, str] = field(default_factory=dict)
    """Tenant storage class -> super class, for names other than the public classes."""
    public_storage_classes: frozenset[str] = frozenset()
    """Super classes shared with every tenant (label tenancy.x-k8s.io/public=true); kept current."""
    public_ingress_classes: frozenset[str] = frozenset()
    """Shared IngressClasses, kept current the same way."""
    public_volume_attributes_classes: frozenset[str] = frozenset()
    """Shared VolumeAttributesClasses (claims may name them), kept current the same way."""
    node_label_prefixes: tuple[str, ...] = ()
    """Super node label prefixes the admin copies to virtual nodes (custom location labels)."""
    node_selector: dict[str, Any] | None = None
    """Super nodes that are this tenant's nodes from the start (a label selector; {}: all); None: a
    node appears only while one of the tenant's pods runs on it (VirtualCluster spec.nodes)."""
    opt_in: frozenset[str] = frozenset()
    """Kinds this tenant asked to have synced (VirtualCluster spec.optInKinds)."""
    quota: tuple[tuple[str, str], ...] = ()
    """ResourceQuota hard limits of each of the tenant's super namespaces (spec.resourceQuota.hard)."""
    token_signer: Signer | None = None
    """The tenant's service-account key, when its API server signs with it: the syncer signs pod tokens
    itself. None: the tenant signs them (a TokenRequest each)."""

    def super_ns(self, tenant_ns: str) -> SuperNamespace:
        return naming.super_namespace(self.root, TenantNamespace(tenant_ns))


class Refused(Exception):
    """The tenant asked for something the super cluster must not do; the reason goes to the tenant."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


CONTROLLER_OWNED = (
    "pv.kubernetes.io/",
    "volume.kubernetes.io/",
    "volume.beta.kubernetes.io/",
    "deployment.kubernetes.io/",
    "endpoints.kubernetes.io/",
    "control-plane.alpha.kubernetes.io/",
    "kubernetes.io/metadata.name",
)
"""Label/annotation prefixes each cluster's own controllers or API server write (binding,
provisioning, revisions, a namespace's own name label): never copied from a tenant object, never
removed from a super one. Without the namespace label every patrol found each namespace changed."""


POD_OWNED = (*CONTROLLER_OWNED, "topology.kubernetes.io/zone", "topology.kubernetes.io/region")
"""A pod's zone and region labels are written by each API server on binding, from its own node
(PodTopologyLabelsAdmission); a virtual node carries its super node's, so both sides agree. Copied
or undone, they cost two pod patches per pod."""


def copied(value: Any) -> Any:
    """A deep copy of JSON data: an orjson round trip costs a sixth of `copy.deepcopy` on an API
    object, and translate functions copy on every reconcile."""
    return orjson.loads(orjson.dumps(value))


def super_meta(
    tenant_obj: dict[str, Any],
    ctx: TenantContext,
    *,
    namespace: str | None,
    name: str | None = None,
    owned: tuple[str, ...] = CONTROLLER_OWNED,
) -> dict[str, Any]:
    """Metadata of the super copy: filtered labels and annotations plus the ownership marks."""
    meta = tenant_obj["metadata"]
    labels = naming.filter_meta(
        meta.get("labels"), opaque=ctx.opaque_prefixes, transparent=ctx.transparent_prefixes
    )
    labels[naming.MANAGED_BY] = naming.MANAGED_BY_VALUE
    labels[naming.LABEL_TENANT] = ctx.root
    annotations = naming.filter_meta(
        meta.get("annotations"), opaque=ctx.opaque_prefixes, transparent=ctx.transparent_prefixes
    )
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    labels = {k: v for k, v in labels.items() if not k.startswith(owned)}
    annotations = {k: v for k, v in annotations.items() if not k.startswith(owned)}
    annotations.update(
        naming.owner_annotations(
            root=ctx.root, vc_name=ctx.vc_name, vc_namespace=ctx.vc_namespace, tenant_obj=tenant_obj
        )
    )
    if meta.get("ownerReferences"):
        annotations[naming.ANN_OWNER_REFERENCES] = orjson.dumps(meta["ownerReferences"]).decode()
    out: dict[str, Any] = {"name": name or meta["name"], "labels": labels, "annotations": annotations}
    if namespace:
        out["namespace"] = namespace
    return out


def meta_patch(
    desired: dict[str, Any], actual: dict[str, Any], owned: tuple[str, ...] = CONTROLLER_OWNED
) -> dict[str, Any] | None:
    """A merge patch that brings actual labels/annotations to desired (None when equal)."""
    patch: dict[str, Any] = {}
    for field_ in ("labels", "annotations"):
        want = desired["metadata"].get(field_) or {}
        have = {k: v for k, v in (actual["metadata"].get(field_) or {}).items() if not k.startswith(owned)}
        if want != have:
            patch[field_] = {**{k: None for k in have if k not in want}, **want}
    return {"metadata": patch} if patch else None


def api_time(value: object) -> datetime.datetime | None:
    """A time an object carries (RFC 3339); None when missing, garbled or without a zone, which
    callers treat as long past."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None
