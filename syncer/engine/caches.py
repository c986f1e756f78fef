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
from syncer.engine.tenant import TenantRuntime
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
    this watch event the echo of a settled write, exactly the object (uid and resourceVersion) that
    write returned, or for a binding, the pod's first event on its node? Its reconcile would read
    what was just written and find nothing to do, yet cost as much as one that works; a later change
    by anyone has another resourceVersion and is heard.
    """

    def __init__(self, seconds: float = 60) -> None:
        self._keys: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=100_000, ttl=seconds)

    def done(self, what: str, uid: str) -> None:
        self._keys[(what, uid)] = True

    def done_just_now(self, what: str, uid: str) -> bool:
        return (what, uid) in self._keys

    def wrote(self, obj: Obj) -> None:
        """Remember what a settled write returned, so that its echo is not heard."""
        meta = obj.get("metadata") or {}
        if meta.get("uid") and meta.get("resourceVersion"):
            self.done(_ECHO + meta["resourceVersion"], meta["uid"])

    def binding(self, uid: str, node: str) -> None:
        """Remember a settled binding before it is sent. Its answer is a Status, which names no
        resourceVersion, and its echo may come before the answer: the echo is the pod's first event
        on that node, and it is still Pending (the status comes up after the binding)."""
        self.done(_BOUND + node, uid)

    def unbound(self, uid: str, node: str) -> None:
        """The binding failed, or found the pod bound already: no event of the pod is its echo."""
        self._keys.pop((_BOUND + node, uid), None)

    def heard(self, obj: Obj) -> bool:
        """Whether obj is the echo of a settled write (each echo is heard once)."""
        meta = obj["metadata"]
        uid = meta.get("uid", "")
        key = (_ECHO + meta.get("resourceVersion", ""), uid)
        if key not in self._keys:  # nearly every event: a lookup costs a quarter of a pop
            node = (obj.get("spec") or {}).get("nodeName")
            key = (_BOUND + node, uid) if node else key
            if key not in self._keys or meta.get("deletionTimestamp"):
                return False
            if (obj.get("status") or {}).get("phase", "Pending") != "Pending":
                return False
        del self._keys[key]
        return True


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
        binding = _binding(w) if w.settled else None
        if binding:
            self.just_done.binding(*binding)
        written: Obj | None = None
        try:
            written = await _send(client, w)
            if w.settled and written is not None:
                self.just_done.wrote(written)
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
            if binding and written is None:
                self.just_done.unbound(*binding)

    def update_context(self, **changes: Any) -> None:
        ctx = dataclasses.replace(self.t.ctx, **changes)
        if ctx != self.t.ctx:
            self.t.ctx = ctx
            log.info("tenant context: %s", changes, extra={"tenant": self.t.name})

    def done(self, what: str, uid: str) -> None:
        self.just_done.done(what, uid)


def _binding(w: Write) -> tuple[str, str] | None:
    """(pod uid, node) of a binding."""
    if w.subresource != "binding" or w.body is None:
        return None
    return w.body["metadata"]["uid"], w.body["target"]["name"]


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
