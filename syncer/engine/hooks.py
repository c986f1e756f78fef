"""Hooks of the namespace (the tenant's quota) and of the Service (host-first IPs, the tenant DNS)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from syncer.engine import up
from syncer.engine.model import Effects, Hooks, Key, Obj, Routes, View, Watch, WorkKey, Write
from syncer.resources import services, simple
from tispace import naming
from tispace.kube import resources as r

log = logging.getLogger("syncer.hooks")


def quota_route(key: Key, old: Obj | None, new: Obj | None, routes: Routes) -> Iterable[tuple[str, WorkKey]]:
    """A tenant quota changed or deleted in the super cluster: its namespace is reconciled (drift)."""
    tenant = up.tenant_of_super_ns(routes, key[0])
    tenant_ns = up.super_ns_labels(routes, key[0]).get(naming.LABEL_TENANT_NAMESPACE)
    return [(tenant, ("Namespace", "", tenant_ns))] if tenant and tenant_ns else []


QUOTAS = Watch("ResourceQuota", r.RESOURCEQUOTAS, naming.MANAGED_SELECTOR, quota_route)


def quota_write(view: View, super_ns: str) -> Write | None:
    """The tenant's limits on one super namespace (VirtualCluster spec.resourceQuota), as the super
    cache shows them: set, changed, removed by hand, or lifted."""
    current = view.super(QUOTAS.name, super_ns, simple.QUOTA)
    want = simple.namespace_quota(view.ctx, super_ns) if view.ctx.quota else None
    if want is not None and (current or {}).get("spec", {}).get("hard") != want["spec"]["hard"]:
        return Write(
            "super",
            "patch",
            r.RESOURCEQUOTAS,
            simple.QUOTA,
            super_ns,
            want,
            patch_type="apply",
            field_manager="tispace-syncer",
            force=True,
        )
    if want is None and current is not None:
        return Write(
            "super", "delete", r.RESOURCEQUOTAS, simple.QUOTA, super_ns, uid=current["metadata"]["uid"]
        )
    return None


async def namespace_after_apply(ns: Obj, desired: Obj, super_ns: Obj, view: View, fx: Effects) -> None:
    if w := quota_write(view, super_ns["metadata"]["name"]):
        await fx.write(w)


NAMESPACE = Hooks(after_apply=namespace_after_apply, watches=(QUOTAS,))


def learn_dns(svc: Obj | None, fx: Effects) -> None:
    """The tenant's DNS Service address goes into every pod's resolv.conf."""
    if dns := services.tenant_dns_ip(svc):
        fx.update_context(dns_ip=dns)


SERVICE = Hooks(observe=learn_dns, adopting=services.is_pending, adopt_seconds=services.PENDING_SECONDS)
