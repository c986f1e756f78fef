"""Services and their Endpoints: what goes down, what comes up, and the host-first ClusterIP. Pure.

Host-first: the super cluster allocates a Service's ClusterIP (and node ports) while the tenant
API server is still admitting the Service, through the syncer's mutating webhook, so the
tenant object is stored with the super IP and a ClusterIP means the same on both sides.
"""

from __future__ import annotations

from typing import Any

from syncer.resources.context import Refused, TenantContext, copied, meta_patch, super_meta
from tispace import naming

PENDING_UID = "pending/"
"""ANN_UID prefix of a super Service made during admission, before the tenant object has a uid."""
PENDING_SECONDS = 60.0
"""How long such a Service waits for its tenant object before it counts as an orphan."""
ENDPOINTS_MANAGED_BY = "endpoints.kubernetes.io/managed-by"
ENDPOINTS_CONTROLLER = "endpoint-controller"
# Spec fields the tenant owns and the super copy follows; the IPs are fixed at creation.
_SPEC_DOWN = (
    "type",
    "selector",
    "ports",
    "sessionAffinity",
    "sessionAffinityConfig",
    "publishNotReadyAddresses",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
    "loadBalancerSourceRanges",
    "allocateLoadBalancerNodePorts",
    "loadBalancerClass",
    "ipFamilyPolicy",
    "ipFamilies",
    "trafficDistribution",
    "externalName",
)


def is_tenant_apiserver_service(obj: dict[str, Any]) -> bool:
    """`default/kubernetes` is each API server's own; the super one already exists."""
    meta = obj["metadata"]
    return bool(meta.get("namespace") == "default" and meta["name"] == "kubernetes")


def needs_host_ip(obj: dict[str, Any]) -> bool:
    """Whether the super cluster must allocate this Service's ClusterIP at admission."""
    spec = obj.get("spec") or {}
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") not in ("None",)


def is_pending(super_obj: dict[str, Any]) -> bool:
    ann = super_obj["metadata"].get("annotations") or {}
    return str(ann.get(naming.ANN_UID, "")).startswith(PENDING_UID)


def service_to_super(obj: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    out_spec = {f: copied(spec[f]) for f in _SPEC_DOWN if f in spec}
    for f in ("clusterIP", "clusterIPs"):
        if spec.get(f):  # a tenant-chosen IP (or "None") is asked for as is; empty means "allocate"
            out_spec[f] = copied(spec[f])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": super_meta(obj, ctx, namespace=ctx.super_ns(obj["metadata"]["namespace"])),
        "spec": out_spec,
    }


def admission_object(obj: dict[str, Any], request_uid: str) -> dict[str, Any]:
    """The tenant Service as admission sees it (no uid yet), marked pending with the request uid."""
    out = copied(obj)
    out["metadata"]["uid"] = PENDING_UID + request_uid
    return out


def service_patch(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any] | None:
    patch: dict[str, Any] = meta_patch(desired, actual) or {}
    want, have = desired["spec"], actual.get("spec") or {}
    spec = {f: want.get(f) for f in _SPEC_DOWN if f in want and want.get(f) != have.get(f)}
    spec.update({f: None for f in ("selector", "sessionAffinityConfig") if f in have and f not in want})
    if spec:
        patch["spec"] = spec
    return patch or None


def admission_patch(tenant_svc: dict[str, Any], super_svc: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON patch giving the tenant Service the super Service's IPs and node ports."""
    sspec, tspec = super_svc["spec"], tenant_svc.get("spec") or {}
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/spec/clusterIP", "value": sspec["clusterIP"]},
        {"op": "add", "path": "/spec/clusterIPs", "value": sspec.get("clusterIPs") or [sspec["clusterIP"]]},
    ]
    for f in ("ipFamilies", "ipFamilyPolicy"):
        if f in sspec:
            ops.append({"op": "add", "path": f"/spec/{f}", "value": sspec[f]})
    for i, (tport, sport) in enumerate(zip(tspec.get("ports") or [], sspec.get("ports") or [], strict=False)):
        if sport.get("nodePort") and tport.get("nodePort") != sport["nodePort"]:
            ops.append({"op": "add", "path": f"/spec/ports/{i}/nodePort", "value": sport["nodePort"]})
    return ops


def load_balancer_up(
    super_obj: dict[str, Any], tenant_obj: dict[str, Any], ctx: TenantContext
) -> dict[str, Any] | None:
    """Load balancer addresses of a Service or Ingress flow up (the super cluster's controllers fill them)."""
    want = (super_obj.get("status") or {}).get("loadBalancer") or {}
    have = (tenant_obj.get("status") or {}).get("loadBalancer") or {}
    return {"loadBalancer": want} if want != have else None


def ingress_to_super(obj: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    """An Ingress goes down only with a shared IngressClass (or none: the super default)."""
    spec = copied(obj.get("spec") or {})
    cls = spec.get("ingressClassName")
    if cls and cls not in ctx.public_ingress_classes:
        offered = ", ".join(sorted(ctx.public_ingress_classes)) or "(none)"
        raise Refused(
            "IngressClassNotAllowed",
            f"ingress class {cls!r} is not shared with this cluster; use one of: {offered}",
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": super_meta(obj, ctx, namespace=ctx.super_ns(obj["metadata"]["namespace"])),
        "spec": spec,
    }


def is_controller_endpoints(obj: dict[str, Any]) -> bool:
    """Endpoints a tenant controller computes: the endpoint controller's from tenant pods (the super
    cluster computes its own) and the tenant API server's own `default/kubernetes`."""
    labels = obj["metadata"].get("labels") or {}
    return labels.get(ENDPOINTS_MANAGED_BY) == ENDPOINTS_CONTROLLER or is_tenant_apiserver_service(obj)


def endpoints_to_super(obj: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    """Endpoints of a selectorless Service go down; tenant pod and node references do not."""
    subsets = []
    for subset in obj.get("subsets") or []:
        s = copied(subset)
        for field in ("addresses", "notReadyAddresses"):
            for addr in s.get(field) or []:
                addr.pop("targetRef", None)
                addr.pop("nodeName", None)
        subsets.append(s)
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": super_meta(obj, ctx, namespace=ctx.super_ns(obj["metadata"]["namespace"])),
        "subsets": subsets,
    }


def tenant_dns_ip(obj: dict[str, Any] | None) -> str | None:
    """The tenant's own DNS address when this is its `kube-system/kube-dns` Service (host-first, so
    the same IP works from super pods); tenant pods then use it as their nameserver."""
    if obj is None or (obj["metadata"].get("namespace"), obj["metadata"]["name"]) != (
        "kube-system",
        "kube-dns",
    ):
        return None
    ip = (obj.get("spec") or {}).get("clusterIP")
    return ip if ip and ip != "None" else None
