"""What the one reconcile works with: the kind's table row, read-only caches (View) and writes (Effects).

A row says how one kind is synced: down (the tenant object is the source, its super copy
follows), up (a super object is the source, the tenant sees a copy) or public (a shared super
class, copied into every tenant). Kinds with side effects add a Hooks object. Every write is a
`Write` value, so reconcile can be run against in-memory fakes.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from syncer.resources.context import Refused, TenantContext
from tispace import naming
from tispace.kube import resources as r
from tispace.kube.resources import Resource

Obj = dict[str, Any]
Key = tuple[str, str]
"""(namespace, name) in a cache."""
WorkKey = tuple[str, str, str]
"""(kind, namespace, name): a tenant key for down kinds, a super key for up and public kinds."""
Side = Literal["tenant", "super"]


class Direction(enum.Enum):
    DOWN = "down"
    UP = "up"
    PUBLIC = "public"


class Later(Exception):  # noqa: N818 - a signal, not an error
    """The key is not ready (a cache half-listed, a claim not made yet): queued again after `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"again in {seconds}s")
        self.seconds = seconds


class Unsynced(Exception):  # noqa: N818 - a signal, not an error
    """A cache the key's kind reads is still listing: the key waits until `listed` is set, instead of
    being tried again every half second (at a restart, thousands of keys came round many times)."""

    def __init__(self, listed: asyncio.Event) -> None:
        super().__init__("a cache is still listing")
        self.listed = listed


class NotYet(Exception):
    """The key waits for something another component makes; retried with backoff like a failure."""


@dataclass(frozen=True)
class Write:
    """One write to a tenant or to the super cluster."""

    side: Side
    verb: Literal["create", "patch", "delete", "replace"]
    resource: Resource
    name: str
    namespace: str | None = None
    body: Obj | None = None
    subresource: str | None = None
    patch_type: str = "merge"
    uid: str | None = None
    """Delete precondition: only this object, not a newer one of the same name."""
    grace: int | None = None
    conflict_ok: bool = False
    """A 409 ends the write, which returns None: the object exists already (create), or a newer one of
    that name replaced it (delete with a uid)."""
    best_effort: bool = False
    """A refusal is logged, not raised (events, conditions)."""
    field_manager: str | None = None
    force: bool = False
    settled: bool = False
    """Its echo (the watch event of exactly the object it returned; for a status write or a binding,
    what it wrote, which may be heard before the answer) queues nothing: the reconcile that wrote it
    needs nothing more from seeing it (see caches.JustDone)."""


def tell(obj: Obj, etype: str, reason: str, message: str, at: str) -> Write:
    """An Event about a tenant object, as the tenant's `kubectl describe` shows it."""
    meta = obj["metadata"]
    ns = meta.get("namespace") or "default"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": ns},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", "Pod"),
            "name": meta["name"],
            "namespace": ns,
            "uid": meta.get("uid"),
        },
        "type": etype,
        "reason": reason,
        "message": message,
        "source": {"component": "tispace-syncer"},
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }
    return Write("tenant", "create", r.EVENTS, "", ns, event, best_effort=True)


def set_status(
    obj: Obj, status: Obj, res: Resource, *, patch_type: str = "merge", best_effort: bool = False
) -> Write:
    """Merge `status` into a tenant object's status, only if it is still the same object (uid)."""
    meta = obj["metadata"]
    return Write(
        "tenant",
        "patch",
        res,
        meta["name"],
        meta.get("namespace"),
        {"metadata": {"uid": meta["uid"]}, "status": status},
        subresource="status",
        patch_type=patch_type,
        best_effort=best_effort,
    )


class View(Protocol):
    """Read-only caches of one tenant and of the super cluster."""

    @property
    def ctx(self) -> TenantContext: ...

    def tenant(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def super(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def has_tenant(self, kind: str, namespace: str, name: str) -> bool:
        """Whether the tenant cache holds the object: `tenant` parses it, this does not."""
        ...

    def listing(self, kind: SyncedKind) -> asyncio.Event | None:
        """The `synced` event of a cache the kind reads that is not fully listed yet, or None when all
        are (never act on a half-listed cache)."""
        ...

    def namespace_taken(self, super_ns: str) -> bool:
        """A super namespace of that name exists that TiSpace did not make for this tenant."""
        ...

    def quota_in_force(self, super_ns: str) -> bool:
        """Nothing may be created in the namespace before the tenant's quota there is counted."""
        ...

    def done_just_now(self, what: str, uid: str) -> bool:
        """This process wrote `what` for object `uid` moments ago (its informer may not show it yet)."""
        ...


class Effects(Protocol):
    """Writes of one reconcile; errors raise ApiError (the worker retries, the tenant is told)."""

    async def write(self, w: Write) -> Obj | None: ...

    def update_context(self, **changes: Any) -> None:
        """Something learned from the tenant's objects (its DNS address) that shapes every translation."""
        ...

    def done(self, what: str, uid: str) -> None:
        """Remember a write the informers will show late (View.done_just_now)."""
        ...


class Routes(Protocol):
    """What a super event needs to find the tenants it concerns."""

    def super_obj(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def has_super(self, kind: str, namespace: str, name: str) -> bool:
        """Whether the super cache holds the object: `super_obj` parses it, this does not."""
        ...

    def tenant_of_root(self, root: str) -> str | None: ...

    def super_synced(self, kind: str) -> bool:
        """The super cache of kind is fully listed."""
        ...

    def views(self) -> Iterable[tuple[str, View]]:
        """(tenant name, view) of every served tenant."""
        ...


Route = Callable[[Key, Obj | None, Obj | None, Routes], Iterable[tuple[str, WorkKey]]]
"""A super object changed: the (tenant, key) pairs to reconcile."""
Kept = Callable[[Obj, Routes], Obj | None]
"""What a super cache holds of a listed or watched object: the object (trimmed in place, as client-go's
informer transforms trim), or None to hold nothing of it and treat it as absent."""


def _identity(name: str) -> str:
    return name


def _never(obj: Obj) -> bool:
    return False


def owner_route(kind: str) -> Route:
    """Down kinds: a super copy names its tenant object (ownership annotations)."""

    def route(key: Key, old: Obj | None, new: Obj | None, routes: Routes) -> Iterable[tuple[str, WorkKey]]:
        owner = naming.tenant_key(new or old or {})
        tenant = routes.tenant_of_root(owner[0]) if owner else None
        return [(tenant, (kind, owner[1], owner[2]))] if tenant and owner else []

    return route


def every_tenant(kind: str) -> Route:
    """Public kinds: every tenant gets the copy, under the same name."""

    def route(key: Key, old: Obj | None, new: Obj | None, routes: Routes) -> Iterable[tuple[str, WorkKey]]:
        return [(tenant, (kind, "", key[1])) for tenant, _ in routes.views()]

    return route


@dataclass(frozen=True)
class Watch:
    """A super cache a kind's hooks read besides its own (a namespace's quota)."""

    name: str
    resource: Resource
    selector: str
    route: Route | None = None
    kept: Kept | None = None
    """What its cache holds of each object (default: all of it but managedFields)."""


@dataclass(frozen=True)
class Hooks:
    """What a kind does beyond create, patch, delete and status."""

    observe: Callable[[Obj | None, Effects], None] | None = None
    """Sees every tenant object before reconcile (the DNS Service's address)."""
    adopting: Callable[[Obj], bool] = _never
    """A super copy made ahead of its tenant object (at admission), not yet adopted."""
    adopt_seconds: float = 0.0
    """How long such a copy waits for its tenant object before it is removed."""
    missing: Callable[[Obj, View, Effects], Awaitable[bool]] | None = None
    """(tenant obj, view, effects) -> handled: the super copy of an unfinished object is missing; True
    when it is handled here instead of made (a lost pod)."""
    wait_for: Callable[[Obj, str, View], bool] | None = None
    """(tenant obj, super namespace, view): something the super copy needs is not there yet."""
    on_refused: Callable[[Obj, Refused, Effects], Awaitable[None]] | None = None
    """(tenant obj, Refused, effects): the translation refused the object (default: an Event)."""
    on_rejected: Callable[[Obj, str, Effects], Awaitable[None]] | None = None
    """(tenant obj, message, effects): the super cluster refused it (besides the Event)."""
    prepare: Callable[[Obj, Obj, View, Effects], Awaitable[Obj]] | None = None
    """(tenant obj, desired, view, effects) -> the super object to make: what its making needs from
    elsewhere (a pod's token), added to a copy (the desired object is what later patches compare)."""
    after_apply: Callable[[Obj, Obj, Obj, View, Effects], Awaitable[None]] | None = None
    """(tenant obj, desired, super obj, view, effects): after create or patch; a kind with this hook is
    carried on to it right after its create."""
    due: Callable[[Obj, datetime.datetime], bool] | None = None
    """(super obj, now): its tenant object is due a reconcile by the clock (a pod's token to renew);
    the patrol asks it of every super object it reads."""
    watches: tuple[Watch, ...] = ()


NO_HOOKS = Hooks()


@dataclass(frozen=True)
class SyncedKind:
    """One row of the table: a kind, its direction, its pure translate functions and optional hooks."""

    name: str
    resource: Resource
    direction: Direction
    super_selector: str = naming.MANAGED_SELECTOR
    """Label selector of the super informer ("": every object)."""
    tenant_selector: str = ""
    tenant_watched: bool = True
    """False for kinds the syncer only writes in tenants (Events)."""
    route: Route | None = None
    """Which tenant keys a super change concerns (default: owner_route for down, every_tenant for public)."""
    route_reads_old: bool = False
    """The route is given the object as it was before an update, not only before a delete (a PV whose
    claim went): its super informer parses that too."""
    super_kept: Kept | None = None
    """What the super cache holds of each object its selector lists (default: all of it but managedFields)."""
    hooks: Hooks = NO_HOOKS
    # Down
    to_super: Callable[[Obj, TenantContext], Obj] | None = None
    """Pure: the desired super object for a tenant object (may raise Refused)."""
    patch_down: Callable[[Obj, Obj], Obj | None] | None = None
    """Pure: patch from the actual super object to the desired one, or None."""
    patch_type: str = "merge"
    """How patch_down's patch is sent ("strategic" where lists merge by key, as pod containers do)."""
    graceful: bool = False
    """Deletion waits for the super object to go, then finalizes the tenant object (as a kubelet does)."""
    status_up: Callable[[Obj, Obj, TenantContext], Obj | None] | None = None
    """Pure: the tenant's new status from (super object, tenant object), or None when it is current."""
    super_name: Callable[[str], str] = _identity
    """Name of the super copy inside its namespace (kept, except where the super cluster owns the name)."""
    skip: Callable[[Obj], bool] = _never
    """Tenant objects never synced (the super cluster provides its own)."""
    finished: Callable[[Obj], bool] = _never
    """Tenant objects whose super copy, once gone, is not made again (finished pods)."""
    opt_in: bool = False
    """Synced only for tenants that list the kind in VirtualCluster spec.optInKinds."""
    # Up and public
    to_tenant: Callable[[Obj, Obj | None, View], Obj | None] | None = None
    """(super source, tenant copy, view): the tenant copy wanted, or None when there should be none."""
    tenant_location: Callable[[Key, Obj | None, View], Key | None] | None = None
    """Where the copy of super key lives in the tenant (default: same key); None: not this tenant's."""
    update_up: Callable[[Obj, Obj | None, Obj, TenantContext], list[Write]] | None = None
    """(wanted, tenant copy or None when unwatched, super source, ctx): writes bringing the copy current."""
    prune: bool = False
    """The tenant copy goes when its super source is gone."""
    mine: Callable[[Obj, TenantContext], bool] | None = None
    """Tenant objects of the kind the syncer made (others are the tenant's own: never touched)."""

    def enabled(self, ctx: TenantContext) -> bool:
        return not self.opt_in or self.name in ctx.opt_in

    def super_location(self, namespace: str, name: str, ctx: TenantContext) -> tuple[str, str]:
        """(namespace, name) of the super copy of tenant object (namespace, name)."""
        if self.resource.namespaced:
            return ctx.super_ns(namespace), self.super_name(name)
        return "", ctx.super_ns(name)

    def routes(self) -> Route:
        if self.route is not None:
            return self.route
        return owner_route(self.name) if self.direction is Direction.DOWN else every_tenant(self.name)
