"""The View and Effects of one tenant over the real informers and clients (the I/O edge of reconcile)."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from cachetools import TTLCache

from syncer.engine import pods as pod_hooks
from syncer.engine.hooks import QUOTAS
from syncer.engine.informer import Informer
from syncer.engine.model import Obj, SyncedKind, Write
from syncer.engine.tenant import TenantRuntime
from syncer.resources import pods, simple
from syncer.resources.context import TenantContext
from tispace import naming
from tispace.kube.client import ApiError, Client

log = logging.getLogger("syncer")

JustDone = TTLCache[tuple[str, str], bool]
"""(what, uid) this process just wrote, for as long as an informer may lag behind it: a pod
re-queued by another event before the cache shows its token Secret, its binding or its last status
write would ask for a second TokenRequest, POST a second binding (refused with 409) or send the
same status again (reconcile keys a status write by its digest)."""


class Echoes:
    """The objects this process's settled writes returned (uid and resourceVersion), for as long as a
    watch may lag.

    A watch event of exactly such an object (same resourceVersion) is the write's own echo: its
    reconcile would read what was just written and find nothing to do, yet cost as much as one
    that works. A later change by anyone has another resourceVersion and is heard as usual.
    """

    def __init__(self, seconds: float = 60) -> None:
        self._written: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=100_000, ttl=seconds)

    def wrote(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("uid") and meta.get("resourceVersion"):
            self._written[(meta["uid"], meta["resourceVersion"])] = True

    def heard(self, obj: Obj) -> bool:
        """Whether obj is the echo of a settled write (each echo is heard once)."""
        meta = obj["metadata"]
        key = (meta.get("uid", ""), meta.get("resourceVersion", ""))
        if key not in self._written:  # nearly every event: a lookup costs a quarter of a pop
            return False
        del self._written[key]
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

    def synced(self, kind: SyncedKind) -> bool:
        caches = [self.supers[kind.name], *(self.supers[w.name] for w in kind.hooks.watches)]
        if kind.tenant_watched:
            caches.append(self.t.informers[kind.name])
        return all(c.synced.is_set() for c in caches)

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

    def token_due(self, super_pod: Obj) -> bool:
        meta = super_pod["metadata"]
        secret = self.super(
            pod_hooks.TOKEN_SECRETS.name, meta["namespace"], pods.token_secret_name(meta["name"])
        )
        made_just_now = self.done_just_now(pod_hooks.TOKEN, meta["uid"])
        return pod_hooks.token_due(super_pod, secret, made_just_now, datetime.datetime.now(datetime.UTC))

    def done_just_now(self, what: str, uid: str) -> bool:
        return (what, uid) in self.just_done


class ClientEffects:
    def __init__(self, t: TenantRuntime, super_client: Client, just_done: JustDone, echoes: Echoes) -> None:
        self.t = t
        self.super_client = super_client
        self.just_done = just_done
        self.echoes = echoes

    async def write(self, w: Write) -> Obj | None:
        client = self.t.client if w.side == "tenant" else self.super_client
        try:
            written = await _send(client, w)
            if w.settled and written is not None:
                self.echoes.wrote(written)
            return written
        except ApiError as e:
            if e.status == 409 and w.conflict_ok:
                return None
            if not w.best_effort:
                raise
            what = f"{w.resource.kind} {w.namespace + '/' if w.namespace else ''}{w.name}".strip()
            log.warning("%s %s not written: %s", w.verb, what, e, extra={"tenant": self.t.name})
            return None

    def update_context(self, **changes: Any) -> None:
        ctx = dataclasses.replace(self.t.ctx, **changes)
        if ctx != self.t.ctx:
            self.t.ctx = ctx
            log.info("tenant context: %s", changes, extra={"tenant": self.t.name})

    def done(self, what: str, uid: str) -> None:
        self.just_done[(what, uid)] = True


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
