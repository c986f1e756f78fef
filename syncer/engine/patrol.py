"""The patroller: compare every tenant's cache with the super cache and queue what drifted.

It only reads caches and queues keys; the normal reconcile repairs, with all its guards
(synced caches, ownership marks, uid preconditions). So a patrol can never delete anything
the event path would not, and an unreachable tenant (stale but kept cache) loses nothing.
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from collections.abc import Callable

import orjson

from syncer.engine.informer import Informer
from syncer.engine.model import SyncedKind, WorkKey
from syncer.engine.tenant import TenantRuntime
from syncer.resources.context import Refused
from tispace import naming

Verified = dict[tuple[str, str, str, str], tuple[int, int, int]]
"""(tenant, kind, namespace, name) -> (hash of the tenant object's cached JSON, of the super
object's, context id) of pairs found in sync: unchanged since, they are not even parsed on the next
patrol. (A bytes object keeps its hash once computed; two versions of an object colliding in 64 bits
is not a practical concern, and would only delay a repair to the next change.)"""


Owned = dict[str, dict[str, list[tuple[str, str]]]]
"""kind -> tenant root -> (tenant namespace, name) of each super object marked as that tenant's."""
Due = dict[str, list[WorkKey]]
"""tenant root -> keys whose super object says they are due a reconcile by the clock (Hooks.due)."""


def owned(
    kinds: list[SyncedKind], super_informers: dict[str, Informer], now: datetime.datetime
) -> tuple[Owned, Due]:
    """The owner of every super object, read once per patrol rather than once per tenant (each read
    of a cached object parses it), and the tenant keys due by the clock, from the same read."""
    out: Owned = {}
    due: defaultdict[str, list[WorkKey]] = defaultdict(list)
    for kind in kinds:
        by_root: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
        is_due = kind.hooks.due
        for sobj in super_informers[kind.name].cache.values():
            if (owner := naming.tenant_key(sobj)) is not None:
                by_root[owner[0]].append((owner[1], owner[2]))
                if is_due is not None and is_due(sobj, now):
                    due[owner[0]].append((kind.name, owner[1], owner[2]))
        out[kind.name] = by_root
    return out, due


def drift(
    kinds: list[SyncedKind],
    t: TenantRuntime,
    super_informers: dict[str, Informer],
    super_owned: Owned,
    previous: Verified | None = None,
    current: Verified | None = None,
) -> tuple[list[WorkKey], Counter[str]]:
    """Keys to reconcile for one tenant, and counts per kind of drift (missing, orphan, changed).

    Pairs in `previous` whose cached JSON is unchanged on both sides are skipped unparsed; pairs
    found in sync are recorded in `current` (a new dict per patrol, so deleted objects drop out).
    """
    keys: list[WorkKey] = []
    counts: Counter[str] = Counter()
    for kind in kinds:
        assert kind.to_super is not None and kind.patch_down is not None
        if not kind.enabled(t.ctx):
            continue
        tenant_cache = t.informers[kind.name].cache
        super_raw = super_informers[kind.name].cache.raw
        for (ns, name), raw in tenant_cache.raw.items():
            sraw = super_raw.get(kind.super_location(ns, name, t.ctx))
            memo_key = (t.name, kind.name, ns, name)
            seen = (hash(raw), hash(sraw), id(t.ctx))
            if sraw is not None and previous is not None and previous.get(memo_key) == seen:
                if current is not None:
                    current[memo_key] = seen
                continue
            obj = orjson.loads(raw)
            if kind.skip(obj) or kind.finished(obj) or obj["metadata"].get("deletionTimestamp"):
                continue
            if sraw is None:
                counts["missing"] += 1
                keys.append((kind.name, ns, name))
                continue
            sobj = orjson.loads(sraw)
            try:
                desired = kind.to_super(obj, t.ctx)
            except Refused:
                continue
            if kind.patch_down(desired, sobj) is not None:
                counts["changed"] += 1
                keys.append((kind.name, ns, name))
            elif current is not None:
                current[memo_key] = seen
        for ns, name in super_owned[kind.name].get(t.ctx.root, ()):
            if (ns, name) not in tenant_cache:
                counts["orphan"] += 1
                keys.append((kind.name, ns, name))
    return keys, counts


def patrol(
    kinds: list[SyncedKind],
    tenants: list[TenantRuntime],
    super_informers: dict[str, Informer],
    enqueue: Callable[[str, WorkKey], None],
    record: Callable[[str, str, int], None],
    previous: Verified | None = None,
    current: Verified | None = None,
    now: datetime.datetime | None = None,
) -> int:
    """One pass over every synced tenant (what drifted, and what is due by the clock, `now` or the
    current time); returns how many keys were queued."""
    if not all(i.synced.is_set() for i in super_informers.values()):
        return 0
    queued = 0
    super_owned, due = owned(kinds, super_informers, now or datetime.datetime.now(datetime.UTC))
    for t in tenants:
        if not all(i.synced.is_set() for i in t.informers.values()):
            continue
        keys, counts = drift(kinds, t, super_informers, super_owned, previous, current)
        keys += due.get(t.ctx.root, [])
        for key in keys:
            enqueue(t.name, key)
        for what, n in counts.items():
            record(t.name, what, n)
        queued += len(keys)
    return queued
