"""Cluster-scoped objects that come up: bound volumes and the shared (public) classes."""

from __future__ import annotations

import logging
from typing import Any

from syncer.engine.informer import Informer
from syncer.engine.tenant import TenantRuntime
from syncer.resources import classes, volumes
from tispace import naming
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client

log = logging.getLogger("syncer.up")


def tenant_claim(
    t: TenantRuntime, super_pv: dict[str, Any] | None, super_claims: Informer
) -> dict[str, Any] | None:
    """The tenant claim a super PV is bound to, when that claim is this tenant's; else None."""
    ref = volumes.bound_claim(super_pv) if super_pv else None
    if ref is None:
        return None
    super_claim = super_claims.get(ref[0], ref[1])
    if super_claim is None or super_claim["metadata"]["uid"] != ref[2]:
        return None
    owner = naming.tenant_key(super_claim)
    if owner is None or owner[0] != t.ctx.root:
        return None
    claim = t.informers["PersistentVolumeClaim"].get(owner[1], owner[2])
    uid = super_claim["metadata"]["annotations"][naming.ANN_UID]
    return claim if claim is not None and claim["metadata"]["uid"] == uid else None


async def reconcile_pv(
    t: TenantRuntime, name: str, super_client: Client, super_pvs: Informer, super_claims: Informer
) -> None:
    super_pv = super_pvs.get("", name)
    tenant_pv = t.pvs.get("", name)
    claim = tenant_claim(t, super_pv, super_claims)
    if tenant_pv is not None and not volumes.is_synced_pv(tenant_pv, t.ctx):
        return  # the tenant's own PV: never goes down, never touched
    if claim is None:
        if tenant_pv is not None and super_pv is None:  # the volume is gone in the super cluster
            await t.client.delete(r.PVS, name, uid=tenant_pv["metadata"]["uid"])
        return  # released volumes stay visible (the tenant's PV controller shows Released)
    assert super_pv is not None
    if tenant_pv is None:
        await t.client.create(r.PVS, volumes.pv_up(super_pv, claim, t.ctx))
        log.info(
            "volume %s up for claim %s/%s",
            name,
            claim["metadata"]["namespace"],
            claim["metadata"]["name"],
            extra={"tenant": t.name, "kind": "PersistentVolume", "object": name},
        )
        return
    if up := volumes.pv_up_patch(tenant_pv, super_pv):
        await t.client.patch(r.PVS, name, up)
        log.info(
            "volume %s follows the super cluster: %s",
            name,
            up,
            extra={"tenant": t.name, "kind": "PersistentVolume", "object": name},
        )
    patch = volumes.pv_down_patch(tenant_pv, super_pv)
    if patch:
        await super_client.patch(r.PVS, name, patch)
        log.info(
            "tenant changes of volume %s carried down: %s",
            name,
            patch,
            extra={"tenant": t.name, "kind": "PersistentVolume", "object": name},
        )


async def reconcile_public(
    t: TenantRuntime, kind: classes.PublicKind, name: str, super_inf: Informer
) -> None:
    source = super_inf.get("", name)
    have = t.public[kind.name].get("", name)
    if source is None:
        if have is not None:
            await t.client.delete(kind.resource, name, uid=have["metadata"]["uid"])
        return
    want = kind.to_tenant(source)
    if have is not None and not classes.differs(want, have):
        return
    if have is not None:  # classes are mostly immutable: replace a stale copy
        await t.client.delete(kind.resource, name, uid=have["metadata"]["uid"])
    try:
        await t.client.create(kind.resource, want)
    except ApiError as e:
        if e.status != 409:
            raise
        raise ApiError(409, {"message": f"the tenant has its own {kind.name} {name!r}"}, "POST", name) from e
