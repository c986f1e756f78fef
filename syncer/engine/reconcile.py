"""The one reconcile: any kind of the table, one key, from both caches, idempotently.

It names no kind: what differs between kinds is in their table row (pure translate functions)
and their hooks. Nothing is deleted from the super cluster because a tenant is unreachable:
only a tenant object gone from a synced cache, or one being deleted, leads to a super delete.
"""

from __future__ import annotations

import datetime
import hashlib
import logging

import orjson

from syncer.engine.model import (
    Direction,
    Effects,
    Key,
    Later,
    NotYet,
    Obj,
    SyncedKind,
    Unsynced,
    View,
    Write,
    tell,
)
from syncer.resources import nodes
from syncer.resources.context import Refused
from tispace import naming
from tispace.kube.client import ApiError

log = logging.getLogger("syncer.reconcile")
UID_WAIT = 2.0
"""A recreated tenant object waits this long for the old super copy (a namespace takes a while)."""


async def reconcile(kind: SyncedKind, key: Key, view: View, fx: Effects) -> None:
    if (listing := view.listing(kind)) is not None:
        raise Unsynced(listing)  # never act on a half-listed cache
    if kind.direction is Direction.DOWN:
        await _down(kind, key, view, fx)
    else:
        await _up(kind, key, view, fx)


def _age(obj: Obj) -> float:
    created = datetime.datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.UTC) - created).total_seconds()


async def _down(kind: SyncedKind, key: Key, view: View, fx: Effects) -> None:
    assert kind.to_super is not None and kind.patch_down is not None
    ns, name = key
    hooks = kind.hooks
    tobj = view.tenant(kind.name, ns, name)
    if hooks.observe:
        hooks.observe(tobj, fx)
    ctx = view.ctx
    sns, sname = kind.super_location(ns, name, ctx)
    sobj = view.super(kind.name, sns, sname)
    if sobj is not None and (naming.tenant_key(sobj) or ("",))[0] != ctx.root:
        return  # not ours: never modified, never deleted
    adopting = sobj is not None and hooks.adopting(sobj)

    if tobj is None or not kind.enabled(ctx):  # gone, or its kind no longer synced for this tenant
        if sobj is not None:
            if adopting and _age(sobj) < hooks.adopt_seconds:
                raise Later(hooks.adopt_seconds)  # its tenant object may still be on its way
            await fx.write(
                Write("super", "delete", kind.resource, sname, sns or None, uid=sobj["metadata"]["uid"])
            )
        return
    if kind.skip(tobj):
        return
    tmeta = tobj["metadata"]
    if tmeta.get("deletionTimestamp"):
        await _delete_down(kind, tobj, sobj, sns, sname, fx)
        return
    s_uid = (sobj or {}).get("metadata", {}).get("annotations", {}).get(naming.ANN_UID)
    if sobj is not None and not adopting and s_uid != tmeta["uid"]:
        # A recreated tenant object of the same name: the old super copy goes first (its DELETED
        # event queues this key again; the timer is a backstop).
        if not sobj["metadata"].get("deletionTimestamp"):
            await fx.write(
                Write(
                    "super", "delete", kind.resource, sname, sns or None, uid=sobj["metadata"]["uid"], grace=0
                )
            )
            raise Later(0.2)
        raise Later(UID_WAIT)
    if sobj is None and (kind.finished(tobj) or (hooks.missing and await hooks.missing(tobj, view, fx))):
        return
    try:
        desired = kind.to_super(tobj, ctx)
    except Refused as why:
        if hooks.on_refused:
            await hooks.on_refused(tobj, why, fx)
        else:
            await fx.write(tell(tobj, "Warning", why.reason, why.message, nodes.seconds_now()))
        return
    if sobj is None:
        if sns and kind.resource.namespaced:
            if view.namespace_taken(sns):
                message = (
                    f"the super cluster namespace {sns} was not made for this tenant; nothing is synced into "
                    "it (ask the admin: the namespace must be removed or this namespace renamed)"
                )
                await fx.write(tell(tobj, "Warning", "NamespaceTaken", message, nodes.seconds_now()))
                return
            if hooks.wait_for and hooks.wait_for(tobj, sns, view):
                raise Later(1.0)  # a scheduler that sees no claim backs off for minutes
            if not view.quota_in_force(sns):
                raise NotYet(f"the tenant's quota in {sns} is not counted yet")  # a broken one backs off
        made = await hooks.prepare(tobj, desired, view, fx) if hooks.prepare else desired
        # A kind with after_apply goes on below with what the create returned, so the create's echo
        # would only find all done: settled (a reconcile per pod).
        create = Write(
            "super", "create", kind.resource, sname, sns or None, made, settled=bool(hooks.after_apply)
        )
        sobj = await fx.write(create)
        if hooks.after_apply is None or sobj is None:
            return
    patch = kind.patch_down(desired, sobj)
    if patch:
        await fx.write(
            Write("super", "patch", kind.resource, sname, sns or None, patch, patch_type=kind.patch_type)
        )
    if hooks.after_apply:
        await hooks.after_apply(tobj, desired, sobj, view, fx)
    status = kind.status_up(sobj, tobj, ctx) if kind.status_up else None
    meta = tobj["metadata"]
    if status is not None and not view.done_just_now(wrote := _status_written(status), meta["uid"]):
        await fx.write(
            Write(
                "tenant",
                "patch",
                kind.resource,
                meta["name"],
                meta.get("namespace"),
                {"metadata": {"uid": meta["uid"]}, "status": status},
                subresource="status",
                settled=True,  # the last step: its echo would only compare the status again
            )
        )
        fx.done(wrote, meta["uid"])


def _status_written(status: Obj) -> str:
    """What a status write is remembered by: an event of the tenant object that arrives before the
    informer shows the write (its binding's, say) must not send the same status again."""
    return (
        "status "
        + hashlib.blake2b(orjson.dumps(status, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()
    )


async def _delete_down(
    kind: SyncedKind, tobj: Obj, sobj: Obj | None, sns: str, sname: str, fx: Effects
) -> None:
    tmeta = tobj["metadata"]
    if sobj is not None:
        if not sobj["metadata"].get("deletionTimestamp"):
            await fx.write(
                Write(
                    "super",
                    "delete",
                    kind.resource,
                    sname,
                    sns or None,
                    uid=sobj["metadata"]["uid"],
                    grace=tmeta.get("deletionGracePeriodSeconds"),
                    settled=True,  # its echo (being deleted) finds nothing to do; its DELETED event is heard
                )
            )
        return
    if kind.graceful:  # the super object is gone: finish the tenant delete as a kubelet would
        await fx.write(
            Write(
                "tenant",
                "delete",
                kind.resource,
                tmeta["name"],
                tmeta.get("namespace"),
                uid=tmeta["uid"],
                grace=0,
            )
        )


async def _up(kind: SyncedKind, key: Key, view: View, fx: Effects) -> None:
    assert kind.to_tenant is not None
    source = view.super(kind.name, *key)
    where = kind.tenant_location(key, source, view) if kind.tenant_location else key
    if where is None:
        return  # not this tenant's
    have = view.tenant(kind.name, *where) if kind.tenant_watched else None
    ctx = view.ctx
    if have is not None and kind.mine is not None and not kind.mine(have, ctx):
        return  # the tenant's own object: never touched
    want = kind.to_tenant(source, have, view) if source is not None else None
    if want is None:
        if have is not None and source is None and kind.prune:
            await fx.write(
                Write(
                    "tenant", "delete", kind.resource, where[1], where[0] or None, uid=have["metadata"]["uid"]
                )
            )
        return
    assert source is not None
    if have is None:
        try:
            made = await fx.write(
                Write(
                    "tenant",
                    "create",
                    kind.resource,
                    where[1],
                    where[0] or None,
                    want,
                    conflict_ok=not kind.tenant_watched,
                )
            )
        except ApiError as e:
            if e.status != 409:
                raise
            raise ApiError(
                409, {"message": f"the tenant has its own {kind.name} {where[1]!r}"}, "POST", where[1]
            ) from e
        if made is not None:
            log.debug(
                "%s %s made in the tenant",
                kind.name,
                where[1],
                extra={"tenant": ctx.vc_namespace + "/" + ctx.vc_name, "kind": kind.name, "object": where[1]},
            )
            return
        if kind.tenant_watched:
            return
    assert kind.update_up is not None
    for w in kind.update_up(want, have, source, ctx):
        await fx.write(w)


async def rejected(kind: SyncedKind, key: Key, view: View, fx: Effects, err: ApiError) -> None:
    """Tell the tenant that the super cluster refused its object: an Event, and what the kind adds."""
    tobj = view.tenant(kind.name, *key) if kind.tenant_watched else None
    if tobj is None:
        return
    ns, name = key
    message = f"the super cluster refused {kind.name} {ns + '/' if ns else ''}{name}: {err.message}"
    await fx.write(tell(tobj, "Warning", "SyncRejected", message, nodes.seconds_now()))
    if kind.hooks.on_rejected:
        await kind.hooks.on_rejected(tobj, message, fx)
