"""The View and Effects of one tenant over the real informers and clients (the I/O edge of reconcile)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from cachetools import TTLCache

from syncer.engine.hooks import QUOTAS
from syncer.engine.informer import Informer
from syncer.engine.model import Obj, SyncedKind, Write
from syncer.engine.tenant import TenantRuntime, bound_node
from syncer.resources import simple
from syncer.resources.context import TenantContext
from tispace import naming
from tispace.kube.client import ApiError, Client

log = logging.getLogger("syncer")

_ECHO = "echo@"
"""Prefix of the `what` an echo is remembered under: no reconcile step is named so."""
_BOUND = "bound@"
"""Prefix of the `what` a binding on its way is remembered under, with the node it names."""


class JustDone:
    """What this process just wrote, for as long as an informer may lag behind it (a minute).

    Two questions are asked of it. Reconcile: has this step of that object just been done? A pod
    re-queued by another event before the cache shows its renewed token, its binding or its last
    status write would ask for a second TokenRequest, POST a second binding (refused with 409) or
    send the same status again (reconcile keys a status write by its digest). The informers: is
    this watch event the echo of a settled write: exactly the object (uid and resourceVersion) that
    write returned, or, before the answer comes, what a status write or a binding wrote? Its
    reconcile would read what was just written and find nothing to do, yet cost as much as one that
    works; a later change by anyone has another resourceVersion and is heard.
    """

    def __init__(self, seconds: float = 60) -> None:
        self._keys: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=100_000, ttl=seconds)
        self._statuses: dict[str, Obj] = {}
        """Settled status writes on their way, by the object's uid."""
        self._taken: dict[str, str] = {}
        """The resourceVersion of the event taken for such a write's echo, by uid, until its answer."""

    def done(self, what: str, uid: str) -> None:
        self._keys[(what, uid)] = True

    def done_just_now(self, what: str, uid: str) -> bool:
        return (what, uid) in self._keys

    def sending(self, w: Write) -> None:
        """A settled write about to be sent. Its echo may come before its answer (half the status
        writes' did, 5 tenants x 100 pods), so what the echo will show is remembered first: a
        status write's status, a binding's node (a binding's answer is a Status, which names no
        resourceVersion; its echo is the event that binds the pod, still Pending)."""
        if (echo := _echo_of(w)) is None:
            return
        uid, node, status = echo
        if node:
            self.done(_BOUND + node, uid)
        if status:
            self._statuses[uid] = status

    def sent(self, w: Write, answer: Obj | None) -> bool:
        """A settled write answered (`answer`), or not (None: refused, or there already). What its
        answer returned is its echo, unless an event was taken for it first. True when that event
        was not its echo (the write changed nothing, or failed, while someone else's change came):
        its object must be reconciled all the same."""
        meta = (answer or {}).get("metadata") or {}
        echo = _echo_of(w)
        if echo is not None:
            uid, node, status = echo
            if node and answer is None:
                self._keys.pop((_BOUND + node, uid), None)
            if status and self._statuses.pop(uid, None) is None:
                return self._taken.pop(uid, None) != meta.get("resourceVersion")
        if meta.get("uid") and meta.get("resourceVersion"):
            self.done(_ECHO + meta["resourceVersion"], meta["uid"])
        return False

    def heard(self, obj: Obj, bound_before: str | None = None) -> bool:
        """Whether obj is the echo of a settled write (each echo is heard once): the object its
        answer returned, or what `sending` remembered. Never an object being deleted but by its
        resourceVersion. `bound_before`: the node the cached copy of a pod was bound to."""
        meta = obj["metadata"]
        uid = meta.get("uid", "")
        key = (_ECHO + meta.get("resourceVersion", ""), uid)
        if key in self._keys:  # nearly every event misses: a lookup costs a quarter of a pop
            del self._keys[key]
            return True
        if meta.get("deletionTimestamp"):
            return False
        status = obj.get("status") or {}
        if (sent := self._statuses.get(uid)) is not None and all(status.get(k) == v for k, v in sent.items()):
            del self._statuses[uid]
            self._taken[uid] = meta.get("resourceVersion", "")
            return True
        node = bound_node(obj)
        if node is None or node == bound_before or status.get("phase", "Pending") != "Pending":
            return False
        key = (_BOUND + node, uid)
        if key not in self._keys:
            return False
        del self._keys[key]
        return True


def _echo_of(w: Write) -> tuple[str, str, Obj | None] | None:
    """(uid, node, status) a settled write's echo will show before its answer is known: a binding's
    pod and node, a status write's object and status."""
    if w.body is None or w.subresource not in ("binding", "status"):
        return None
    uid = w.body["metadata"]["uid"]
    if w.subresource == "binding":
        return uid, w.body["target"]["name"], None
    return uid, "", w.body["status"]


class TenantView:
    def __init__(self, t: TenantRuntime, supers: Mapping[str, Informer], just_done: JustDone) -> None:
        self.t = t
        self.supers = supers
        self.just_done = just_done

    @property
    def ctx(self) -> TenantContext:
        return self.t.ctx

    def tenant(self, kind: str, namespace: str, name: str) -> Obj | None:
        inf = self.t.informers.get(kind)
        return inf.get(namespace, name) if inf else None

    def super(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.supers[kind].get(namespace, name)

    def has_tenant(self, kind: str, namespace: str, name: str) -> bool:
        inf = self.t.informers.get(kind)
        return inf is not None and inf.has(namespace, name)

    def listing(self, kind: SyncedKind) -> asyncio.Event | None:
        caches = [self.supers[kind.name], *(self.supers[w.name] for w in kind.hooks.watches)]
        if kind.tenant_watched:
            caches.append(self.t.informers[kind.name])
        return next((c.synced for c in caches if not c.synced.is_set()), None)

    def namespace_taken(self, super_ns: str) -> bool:
        """The names of two tenants can only meet if their roots share a 6-hex hash and a prefix: rare,
        but never shared."""
        ns = self.super("Namespace", "", super_ns)
        owner = naming.tenant_key(ns) if ns else None
        return ns is not None and (owner is None or owner[0] != self.ctx.root)

    def quota_in_force(self, super_ns: str) -> bool:
        """Admission ignores a ResourceQuota until the controller-manager has filled its status.hard."""
        if not self.ctx.quota:
            return True
        q = self.super(QUOTAS.name, super_ns, simple.QUOTA)
        return q is not None and (q.get("status") or {}).get("hard") == q["spec"].get("hard")

    def done_just_now(self, what: str, uid: str) -> bool:
        return self.just_done.done_just_now(what, uid)


class ClientEffects:
    def __init__(self, t: TenantRuntime, super_client: Client, just_done: JustDone) -> None:
        self.t = t
        self.super_client = super_client
        self.just_done = just_done

    async def write(self, w: Write) -> Obj | None:
        client = self.t.client if w.side == "tenant" else self.super_client
        if w.settled:
            self.just_done.sending(w)
        written: Obj | None = None
        try:
            written = await _send(client, w)
            return written
        except ApiError as e:
            if e.status == 409 and w.conflict_ok:
                return None
            if not w.best_effort:
                raise
            what = f"{w.resource.kind} {w.namespace + '/' if w.namespace else ''}{w.name}".strip()
            log.warning("%s %s not written: %s", w.verb, what, e, extra={"tenant": self.t.name})
            return None
        finally:
            if w.settled and self.just_done.sent(w, written):
                self.t.enqueue((w.resource.kind, w.namespace or "", w.name))

    def update_context(self, **changes: Any) -> None:
        ctx = dataclasses.replace(self.t.ctx, **changes)
        if ctx != self.t.ctx:
            self.t.ctx = ctx
            log.info("tenant context: %s", changes, extra={"tenant": self.t.name})

    def done(self, what: str, uid: str) -> None:
        self.just_done.done(what, uid)


async def _send(client: Client, w: Write) -> Obj | None:
    if w.verb == "create" and w.subresource:
        return await client.request("POST", w.resource.path(w.namespace, w.name, w.subresource), body=w.body)
    if w.verb == "create":
        assert w.body is not None
        return await client.create(w.resource, w.body, w.namespace)
    if w.verb == "patch":
        return await client.patch(
            w.resource,
            w.name,
            w.body,
            w.namespace,
            patch_type=w.patch_type,
            subresource=w.subresource,
            field_manager=w.field_manager or "tispace",
            force=w.force,
        )
    if w.verb == "replace":
        assert w.body is not None
        return await client.replace(w.resource, w.body)
    return await client.delete(w.resource, w.name, w.namespace, grace_period=w.grace, uid=w.uid)
