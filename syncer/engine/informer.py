"""List + watch one resource into a dict cache, telling a callback which keys changed.

Watches resume from the last resourceVersion (bookmarks keep it fresh), after a normal end
and after a failure alike, as client-go's reflector does: an API server restart costs a
re-watch, not a full list. Only a 410 Gone (the resourceVersion is older than the server still
remembers) means a relist, after which keys that vanished meanwhile are reported as deleted.
Failures back off with jitter and never end the informer: an unreachable cluster only delays
its own informers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

import orjson

from tispace.kube.client import ApiError, Client
from tispace.kube.resources import Resource

Key = tuple[str, str]
"""(namespace, name); namespace is '' for cluster-scoped objects."""
OnChange = Callable[[Key, dict[str, Any] | None, dict[str, Any] | None], None]
"""Called with (key, old, new); new is None when the object was deleted. Old is the object before a
delete or a relist, and before an update only for an informer made `with_old`."""
Keep = Callable[[dict[str, Any]], dict[str, Any] | None]
"""What the cache holds of an object: the object, trimmed in place, or None for nothing (then it is
treated as absent: never reported, and dropped if it was cached)."""
Index = Callable[[dict[str, Any]], str | None]
"""What an object is counted under in its cache (a pod: its node), or None for nothing."""
Echo = Callable[[dict[str, Any], str | None], bool]
"""True for an object this process wrote itself and needs not hear of again (caches.JustDone.heard),
given what the cache's index says of the copy it replaces (a pod: the node it was bound to)."""

log = logging.getLogger("syncer.informer")

UNSERVED_RETRY = 60.0
"""Seconds before an informer with `unserved` lists again a resource its server did not serve."""
Unserved = Callable[[], Awaitable[bool]]
"""Asked when the server does not serve an informer's resource (404 before any list): True when it
serves it in no other form either, so nothing of it exists."""


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop managedFields before caching: a quarter of a pod's memory, never read."""
    obj["metadata"].pop("managedFields", None)
    return obj


class Packed(MutableMapping[Key, dict[str, Any]]):
    """The cache's objects held as compact JSON, parsed again on each read.

    A parsed pod is ~12 KiB of dicts and strings, its JSON ~3.5 KiB; parsing it again costs ~7 us
    and writing it ~3 us. The syncer holds every synced object twice (tenant and super): this cut
    its memory per synced pod to a third (docs/benchmarks.md, sixth round). A read returns a new
    dict: changing it leaves the cache alone.

    With an `index`, it counts its objects by what the index says of each (`counts`), as they come
    and go: a count read without parsing the cache.
    """

    def __init__(self, index: Index | None = None) -> None:
        self._raw: dict[Key, bytes] = {}
        self._index = index
        self._indexed: dict[Key, str] = {}
        self.counts: Counter[str] = Counter()
        """Cached objects per index value."""

    def __getitem__(self, key: Key) -> dict[str, Any]:
        obj: dict[str, Any] = orjson.loads(self._raw[key])
        return obj

    def __setitem__(self, key: Key, obj: dict[str, Any]) -> None:
        counted = self._index(obj) if self._index is not None else None  # an index that fails stores nothing
        # copied to its exact size: orjson's result keeps its whole write buffer (8 KiB for a pod)
        self._raw[key] = bytes(memoryview(orjson.dumps(obj)))
        if self._index is not None:
            self._count(key, counted)

    def __delitem__(self, key: Key) -> None:
        del self._raw[key]
        if self._index is not None:
            self._count(key, None)

    def _count(self, key: Key, value: str | None) -> None:
        if (old := self._indexed.pop(key, None)) is not None:
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]
        if value is not None:
            self._indexed[key] = value = sys.intern(value)  # a node's name, held once for all its pods
            self.counts[value] += 1

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def indexed(self, key: Key) -> str | None:
        """What the index said of the cached object."""
        return self._indexed.get(key)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def raw(self) -> Mapping[Key, bytes]:
        """The stored JSON, unparsed: for a reader that only asks whether an object changed."""
        return MappingProxyType(self._raw)


class Informer:
    def __init__(
        self,
        client: Client,
        resource: Resource,
        on_change: OnChange,
        *,
        label_selector: str = "",
        name: str = "",
        echo: Echo | None = None,
        keep: Keep = slim,
        with_old: bool = False,
        index: Index | None = None,
        unserved: Unserved | None = None,
        on_listed: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.on_change = on_change
        self.echo = echo
        self.keep = keep
        self.with_old = with_old
        """Whether on_change hears the previous object of an update. Reading it from the cache parses
        it (6,300 reads per 1,000 pods synced); most callbacks only need the key."""
        self.label_selector = label_selector
        self.name = name or f"{client.name}/{resource.plural}"
        self.index = index
        self.unserved = unserved
        """For a resource an older API server may not serve: asked on a 404 before the first list;
        when it says nothing of the resource exists, the cache counts as listed and empty. Either way
        the list is tried again after UNSERVED_RETRY or `relist`, not every few seconds with a warning."""
        self.absent = False
        """The server did not serve the resource, in any form: listed empty."""
        self.on_listed = on_listed
        """Told after each list and each answer of `unserved`: for a reader of `synced` and `absent`."""
        self._wake = asyncio.Event()
        self._told: bool | None = None
        """`absent` as last logged since the last list."""
        self.cache = Packed(index)
        self.synced = asyncio.Event()
        self.relists = 0
        self.expired = 0
        """Watches the server expired (410 Gone), each followed by a relist."""
        self.echoes = 0
        """Events of this process's own settled writes: cached, not reported."""
        self._rv = ""

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cache.get((namespace, name))

    def has(self, namespace: str, name: str) -> bool:
        """Whether the object is cached, without parsing it (as `get` does)."""
        return (namespace, name) in self.cache

    async def _relist(self) -> None:
        # Packed page by page: a whole list parsed at once (a restart over 3,000 pods) left the
        # process that much bigger for good, as Python keeps the freed memory.
        fresh = Packed(self.index)
        async for page in self.client.pages(self.resource, label_selector=self.label_selector):
            for obj in page.get("items") or []:
                if (kept := self.keep(obj)) is not None:
                    fresh[key_of(kept)] = kept
            rv = page["metadata"]["resourceVersion"]
        old, self.cache = self.cache, fresh
        self._rv = rv
        self.relists += 1
        self.absent, self._told = False, None
        for key, raw in fresh.raw.items():
            if old.raw.get(key) == raw:
                continue  # the same JSON: the same resourceVersion, nothing to parse or report
            obj, prev = fresh[key], old.get(key)
            if prev is None or prev["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self.on_change(key, prev, obj)
        for key in old.keys() - fresh.keys():
            self.on_change(key, old[key], None)
        self.synced.set()
        if self.on_listed is not None:
            self.on_listed()

    def relist(self) -> None:
        """List again now, not after UNSERVED_RETRY (the server may have been upgraded). A resource
        taken for absent is not known to be until then."""
        if self.absent:
            self.absent = False
            self.synced.clear()
        self._wake.set()

    async def _not_served(self, unserved: Unserved) -> None:
        """Wait for the next list of a resource the server does not serve, counted as listed and
        empty meanwhile if it serves it in no other form. Never raises but to be cancelled: it runs
        where `run`'s handlers cannot catch what it raises."""
        self._wake.clear()
        try:
            self.absent = await unserved()
        except Exception as e:  # noqa: BLE001 - not known: as if served in another form
            log.warning("informer %s: not served, and the server's other versions unknown: %s", self.name, e)
            self.absent = False
        if self.absent:
            self.synced.set()
        else:  # served in another form (an older version turned on), or not known: not known empty
            self.synced.clear()
        if self.absent is not self._told:  # once, and when it changes: not every minute
            log.info("informer %s: not served%s", self.name, ", none exists" if self.absent else "")
            self._told = self.absent
        if self.on_listed is not None:
            self.on_listed()
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that comes as
        # the event is set (a relist), and the informer would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(UNSERVED_RETRY):
                await self._wake.wait()

    async def _watch(self) -> None:
        async for event in self.client.watch(
            self.resource, resource_version=self._rv, label_selector=self.label_selector
        ):
            etype, obj = event.get("type"), event.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    raise ApiError(410, obj, "WATCH", self.resource.plural)
                raise ApiError(int(obj.get("code") or 500), obj, "WATCH", self.resource.plural)
            self._rv = obj.get("metadata", {}).get("resourceVersion", self._rv)
            if etype == "BOOKMARK":
                continue
            key = key_of(obj)
            kept = None if etype == "DELETED" else self.keep(obj)
            if kept is None:
                prev = self.cache.pop(key, None)
                if prev is not None or etype == "DELETED":
                    self.on_change(key, prev, None)
            elif self.echo is not None and self.echo(kept, self.cache.indexed(key)):
                self.cache[key] = kept  # the previous version is not parsed: nobody is told
                self.echoes += 1
            else:
                prev = self.cache.get(key) if self.with_old else None
                self.cache[key] = kept
                self.on_change(key, prev, kept)

    async def run(self) -> None:
        """List, then watch forever: resume after failures (with backoff), relist on 410."""
        delay = 0.0
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
                delay = 0.0  # a watch that ended normally (server timeout): resume from _rv
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status == 404 and need_list and self.unserved is not None and not self.relists:
                    await self._not_served(self.unserved)
                    continue
                if e.status == 410:
                    need_list = True
                    self.expired += 1
                    log.info("watch expired, relisting", extra={"informer": self.name})
                    continue
                delay = min(10.0, max(0.5, delay * 2))
                log.warning("informer %s: %s; retry in %.1fs", self.name, e, delay)
            except Exception as e:  # noqa: BLE001 - any transport failure: back off, resume, go on
                delay = min(10.0, max(0.5, delay * 2))
                log.warning("informer %s: %s: %s; retry in %.1fs", self.name, type(e).__name__, e, delay)
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
