"""The row functions of the kinds that come up: events, bound volumes, virtual nodes, shared classes.

Each reads the caches through a View and returns objects or writes; none does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from syncer.engine.model import Key, Obj, Routes, View, WorkKey, Write
from syncer.resources import classes, events, nodes, volumes
from syncer.resources.context import TenantContext
from tispace import naming
from tispace.kube import resources as r
from tispace.kube.resources import Resource


def super_ns_labels(routes: Routes, super_ns: str) -> dict[str, str]:
    """A super namespace's labels, which name its tenant and the tenant namespace (none when it is
    not cached)."""
    return ((routes.super_obj("Namespace", "", super_ns) or {}).get("metadata", {}).get("labels")) or {}


def tenant_of_super_ns(routes: Routes, super_ns: str) -> str | None:
    return routes.tenant_of_root(super_ns_labels(routes, super_ns).get(naming.LABEL_TENANT, ""))


# --- events -------------------------------------------------------------------------------------
def event_kept(event: Obj, routes: Routes) -> Obj | None:
    """The super cache holds only the events a tenant may see: about a pod, service or claim, in a
    tenant's namespace. A shared super cluster's other events (most of them) would cost the syncer
    memory, one object each, for nothing. Until the namespaces are listed, every such event is held.

    An event made in a namespace the syncer's namespace watch has not shown yet (it made both moments
    apart) is held from its next update: events are best effort, as upstream's are."""
    if (event.get("involvedObject") or {}).get("kind") not in events.UP_KINDS:
        return None
    ns = event["metadata"].get("namespace", "")
    if routes.super_synced("Namespace") and not routes.has_super("Namespace", "", ns):
        return None
    return event


def event_route(key: Key, old: Obj | None, new: Obj | None, routes: Routes) -> Iterable[tuple[str, WorkKey]]:
    """Events about synced pods, services and claims (the only ones cached) go up to the tenant that
    owns the object."""
    if new is None:
        return []
    tenant = tenant_of_super_ns(routes, key[0])
    return [(tenant, ("Event", key[0], key[1]))] if tenant else []


def _involved(event: Obj | None, view: View) -> tuple[str, str, str] | None:
    """The tenant object (kind, namespace, name) a super event is about, when it is this tenant's
    and cached (so a key is made only for an event that can be written)."""
    if event is None:
        return None
    involved = event.get("involvedObject") or {}
    kind = involved.get("kind", "")
    if kind not in events.UP_KINDS:
        return None
    super_obj = view.super(kind, event["metadata"]["namespace"], involved.get("name", ""))
    owner = naming.tenant_key(super_obj) if super_obj else None
    if owner is None or owner[0] != view.ctx.root or not view.has_tenant(kind, owner[1], owner[2]):
        return None
    return kind, owner[1], owner[2]


def event_location(key: Key, event: Obj | None, view: View) -> Key | None:
    involved = _involved(event, view)
    return (involved[1], key[1]) if involved else None


def event_to_tenant(event: Obj, have: Obj | None, view: View) -> Obj | None:
    involved = _involved(event, view)
    obj = view.tenant(*involved) if involved else None
    return events.to_tenant(event, obj) if obj else None


def event_update(want: Obj, have: Obj | None, event: Obj, ctx: TenantContext) -> list[Write]:
    """A repeated event (same name) updates the tenant's copy."""
    meta = want["metadata"]
    patch = {k: want[k] for k in events.MUTABLE if k in want}
    return [Write("tenant", "patch", r.EVENTS, meta["name"], meta["namespace"], patch)]


# --- volumes ------------------------------------------------------------------------------------
def pv_route(key: Key, old: Obj | None, new: Obj | None, routes: Routes) -> Iterable[tuple[str, WorkKey]]:
    """A super PV goes to the tenant whose claim it is (or was) bound to."""
    for obj in (new, old):
        ref = volumes.bound_claim(obj) if obj else None
        tenant = tenant_of_super_ns(routes, ref[0]) if ref else None
        if tenant:
            return [(tenant, ("PersistentVolume", "", key[1]))]
    return []


def tenant_claim(super_pv: Obj, view: View) -> Obj | None:
    """The tenant claim a super PV is bound to, when that claim is this tenant's; else None."""
    ref = volumes.bound_claim(super_pv)
    if ref is None:
        return None
    super_claim = view.super("PersistentVolumeClaim", ref[0], ref[1])
    if super_claim is None or super_claim["metadata"]["uid"] != ref[2]:
        return None
    owner = naming.tenant_key(super_claim)
    if owner is None or owner[0] != view.ctx.root:
        return None
    claim = view.tenant("PersistentVolumeClaim", owner[1], owner[2])
    uid = super_claim["metadata"]["annotations"][naming.ANN_UID]
    return claim if claim is not None and claim["metadata"]["uid"] == uid else None


def pv_to_tenant(super_pv: Obj, have: Obj | None, view: View) -> Obj | None:
    """None when not bound to one of the tenant's claims: a released volume's copy stays visible (the
    tenant's PV controller shows Released)."""
    claim = tenant_claim(super_pv, view)
    return volumes.pv_up(super_pv, claim, view.ctx) if claim is not None else None


def pv_update(want: Obj, have: Obj | None, super_pv: Obj, ctx: TenantContext) -> list[Write]:
    """The super PV's size and class up; the tenant's labels and reclaim policy down."""
    assert have is not None
    name = have["metadata"]["name"]
    out = []
    if up := volumes.pv_up_patch(have, super_pv):
        out.append(Write("tenant", "patch", r.PVS, name, None, up))
    if down := volumes.pv_down_patch(have, super_pv):
        out.append(Write("super", "patch", r.PVS, name, None, down))
    return out


# --- nodes --------------------------------------------------------------------------------------
def node_route(key: Key, old: Obj | None, new: Obj | None, routes: Routes) -> Iterable[tuple[str, WorkKey]]:
    """Tenants with a virtual node of that name, or whose node selector takes it."""
    return [
        (tenant, ("Node", "", key[1]))
        for tenant, view in routes.views()
        if view.has_tenant("Node", "", key[1]) or (new and nodes.selects(view.ctx.node_selector, new))
    ]


def node_to_tenant(super_node: Obj, have: Obj | None, view: View) -> Obj | None:
    """A virtual node from the start when selected; else only while one of the tenant's pods runs on
    it (made by the pod's binding, removed by the node loop when idle)."""
    if have is None and not nodes.selects(view.ctx.node_selector, super_node):
        return None
    return nodes.virtual_node(super_node, view.ctx)


def node_update(want: Obj, have: Obj | None, super_node: Obj, ctx: TenantContext) -> list[Write]:
    assert have is not None
    name = have["metadata"]["name"]
    out = []
    if nodes.status_differs(want["status"], have):
        out.append(
            Write("tenant", "patch", r.NODES, name, None, {"status": want["status"]}, subresource="status")
        )
    if patch := nodes.label_patch(super_node, have, ctx):
        out.append(Write("tenant", "patch", r.NODES, name, None, patch))
    return out


# --- shared classes -----------------------------------------------------------------------------
def public_copy(copy: Callable[[Obj], Obj]) -> Callable[[Obj, Obj | None, View], Obj | None]:
    def to_tenant(source: Obj, have: Obj | None, view: View) -> Obj | None:
        return copy(source)

    return to_tenant


def public_update(res: Resource) -> Callable[[Obj, Obj | None, Obj, TenantContext], list[Write]]:
    """Classes are mostly immutable: a stale copy is replaced."""

    def update(want: Obj, have: Obj | None, source: Obj, ctx: TenantContext) -> list[Write]:
        assert have is not None
        if not classes.differs(want, have):
            return []
        name = want["metadata"]["name"]
        return [
            Write("tenant", "delete", res, name, None, uid=have["metadata"]["uid"]),
            Write("tenant", "create", res, name, None, want),
        ]

    return update
