"""The one declarative table of kinds synced down. A new kind is a row plus its translate functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncer.resources import pods, services, simple, volumes
from syncer.resources.context import TenantContext
from tispace.kube import resources as r
from tispace.kube.resources import Resource

Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    name: str
    resource: Resource
    to_super: Callable[[Obj, TenantContext], Obj]
    """Pure: the desired super object for a tenant object (may raise Refused)."""
    patch_down: Callable[[Obj, Obj], Obj | None]
    """Pure: patch from the actual super object to the desired one, or None."""
    patch_type: str = "merge"
    """How patch_down's patch is sent ("strategic" where lists merge by key, as pod containers do)."""
    graceful: bool = False
    """Deletion waits for the super object to go, then finalizes the tenant object (as a kubelet does)."""
    status_up: Callable[[Obj, Obj, TenantContext], Obj | None] | None = None
    """Pure: the tenant's new status from (super object, tenant object), or None when it is current."""
    super_name: Callable[[str], str] = lambda name: name
    """Name of the super copy inside its namespace (kept, except where the super cluster owns the name)."""
    skip: Callable[[Obj], bool] = lambda obj: False
    """Tenant objects never synced (the super cluster provides its own)."""
    opt_in: bool = False
    """Synced only for tenants that list the kind in VirtualCluster spec.optInKinds."""

    def enabled(self, ctx: TenantContext) -> bool:
        return not self.opt_in or self.name in ctx.opt_in

    def super_location(self, namespace: str, name: str, ctx: TenantContext) -> tuple[str, str]:
        """(namespace, name) of the super copy of tenant object (namespace, name)."""
        if self.resource.namespaced:
            return ctx.super_ns(namespace), self.super_name(name)
        return "", ctx.super_ns(name)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("Namespace", r.NAMESPACES, simple.namespace_to_super, simple.metadata_only_patch),
        Kind(
            "ConfigMap",
            r.CONFIGMAPS,
            simple.configmap_to_super,
            simple.data_patch,
            super_name=simple.configmap_super_name,
        ),
        Kind("Secret", r.SECRETS, simple.secret_to_super, simple.data_patch),
        Kind(
            "ServiceAccount",
            r.SERVICEACCOUNTS,
            simple.serviceaccount_to_super,
            simple.data_patch,
            skip=simple.is_default_serviceaccount,
        ),
        Kind(
            "Pod",
            r.PODS,
            pods.to_super,
            pods.patch_down,
            patch_type="strategic",
            graceful=True,
            status_up=pods.status_patch,
        ),
        Kind(
            "Service",
            r.SERVICES,
            services.service_to_super,
            services.service_patch,
            status_up=services.load_balancer_up,
            skip=services.is_tenant_apiserver_service,
        ),
        Kind(
            "PersistentVolumeClaim",
            r.PVCS,
            volumes.claim_to_super,
            volumes.claim_patch,
            status_up=volumes.claim_status_patch,
        ),
        Kind(
            "Ingress",
            r.INGRESSES,
            services.ingress_to_super,
            simple.data_patch,
            status_up=services.load_balancer_up,
            opt_in=True,
        ),
        Kind(
            "Endpoints",
            r.ENDPOINTS,
            services.endpoints_to_super,
            simple.data_patch,
            skip=services.is_controller_endpoints,
        ),
    )
}
