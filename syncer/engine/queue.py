"""A work queue fair across tenants, with client-go workqueue semantics per key.

Keys are deduplicated while waiting; a key being processed is never handed to a second
worker (a change during processing marks it dirty and it is queued again on `done`).
Tenants are served by weighted round robin: each turn a tenant may hand out up to its
weight in keys before the next tenant's turn, so one noisy tenant cannot starve the rest.
A tenant may also be capped to a number of keys in flight at once (its share of workers) and
to a rate of keys handed out per second (a token bucket holding one second's worth).
With `fair=False` keys go out in arrival order across tenants, weights, caps and rates ignored:
the baseline the benchmark compares fairness against (`tispace syncer --fifo`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class _TenantQueue(Generic[K]):
    weight: int
    limit: int = 0
    """Most keys of this tenant being processed at once (0: no cap but the worker count)."""
    rate: float = 0.0
    """Most keys handed out per second (0: no limit)."""
    keys: deque[K] = field(default_factory=deque)
    credit: int = 0
    in_flight: int = 0
    tokens: float = 0.0
    stamp: float = 0.0

    def wait_for_token(self, now: float) -> float:
        """0 when a key may go now (its token is spent), else seconds until the next token."""
        if not self.rate:
            return 0.0
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class FairQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic, *, fair: bool = True) -> None:
        self._clock = clock
        self._fair = fair
        self._arrivals: deque[str] = deque()
        """Tenant of each queued key in arrival order (fair=False only)."""
        self._tenants: dict[str, _TenantQueue[K]] = {}
        self._ring: deque[str] = deque()
        self._queued: set[tuple[str, K]] = set()
        self._processing: set[tuple[str, K]] = set()
        self._dirty: set[tuple[str, K]] = set()
        self._waiting: deque[asyncio.Future[None]] = deque()
        """Workers waiting for a key. Plain futures, no lock: the queue lives on one event loop, so
        `put` and `done` are plain calls (an enqueue per watch event was a task and a lock)."""
        self._timers: set[asyncio.TimerHandle] = set()
        self._parked: dict[asyncio.Event, tuple[set[tuple[str, K]], asyncio.Task[None]]] = {}
        """Keys waiting for an event (a cache to be listed), and the one task that waits for it."""
        self._parked_per_tenant: Counter[str] = Counter()
        self._closed = False

    def set_weight(self, tenant: str, weight: int, limit: int = 0, rate: float = 0.0) -> None:
        tq = self._tenants.get(tenant)
        if tq is None:
            tq = self._tenants[tenant] = _TenantQueue(weight=max(1, weight), stamp=self._clock())
            tq.tokens = max(1.0, rate)  # a full bucket to start with
            self._ring.append(tenant)
        tq.weight, tq.limit, tq.rate = max(1, weight), max(0, limit), max(0.0, rate)

    def remove_tenant(self, tenant: str) -> None:
        """Forget a tenant's waiting keys (keys in flight finish normally)."""
        tq = self._tenants.pop(tenant, None)
        if tq is None:
            return
        self._ring.remove(tenant)
        for key in tq.keys:
            self._queued.discard((tenant, key))
        self._dirty = {item for item in self._dirty if item[0] != tenant}
        del self._parked_per_tenant[tenant]
        for event, (keys, waiting) in list(self._parked.items()):
            keys.difference_update([item for item in keys if item[0] == tenant])
            if not keys:  # its cache may never list now (a stopped tenant's informer)
                waiting.cancel()
                del self._parked[event]

    def depth(self, tenant: str | None = None) -> int:
        """Keys waiting: queued, or parked until a cache has listed (a key changed while parked is both).
        Counted, not collected: /status and every scrape ask for each tenant's."""
        if tenant is not None:
            tq = self._tenants.get(tenant)
            return (len(tq.keys) if tq else 0) + self._parked_per_tenant[tenant]
        return len(self._queued) + self._parked_per_tenant.total()

    def tenants(self) -> list[str]:
        return list(self._tenants)

    def shares(self, tenant: str) -> dict[str, float]:
        """The tenant's weight, concurrency cap and rate as the queue applies them (for /status)."""
        tq = self._tenants.get(tenant)
        return {"weight": tq.weight, "concurrency": tq.limit, "rate": tq.rate} if tq else {}

    def put(self, tenant: str, key: K) -> None:
        item = (tenant, key)
        tq = self._tenants.get(tenant)
        if tq is None or item in self._queued:
            return
        if item in self._processing:
            self._dirty.add(item)
            return
        self._queued.add(item)
        tq.keys.append(key)
        if not self._fair:
            self._arrivals.append(tenant)
        self._wake()

    def _wake(self) -> None:
        """Wake one waiting worker (one still waiting: a timed-out wait leaves a finished future)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def put_after(self, tenant: str, key: K, delay: float) -> None:
        """Queue `key` again after `delay` seconds (retries with backoff)."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            if not self._closed:
                self.put(tenant, key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def put_when(self, tenant: str, key: K, ready: asyncio.Event) -> None:
        """Queue `key` again once `ready` is set: one task waits per event, however many keys wait. A
        tenant not (or no longer) in the queue parks nothing, as `put` queues nothing for it."""
        if self._closed or tenant not in self._tenants:
            return
        if ready.is_set():
            self.put(tenant, key)
            return
        if ready not in self._parked:
            self._parked[ready] = (set(), asyncio.get_running_loop().create_task(self._unpark(ready)))
        parked = self._parked[ready][0]
        if (tenant, key) not in parked:
            parked.add((tenant, key))
            self._parked_per_tenant[tenant] += 1

    async def _unpark(self, ready: asyncio.Event) -> None:
        await ready.wait()
        keys, _ = self._parked.pop(ready)
        for tenant, key in keys:
            self._parked_per_tenant[tenant] -= 1
            self.put(tenant, key)

    def _next(self) -> tuple[tuple[str, K] | None, float | None]:
        """The next key, or None and how long until a rate-limited tenant may go again."""
        if not self._fair:
            while self._arrivals:
                tq = self._tenants.get(tenant := self._arrivals.popleft())
                if tq is not None and tq.keys:  # else: removed since, or a tenant re-added afresh
                    tq.in_flight += 1
                    return (tenant, tq.keys.popleft()), None
            return None, None
        now = self._clock()
        wake: float | None = None
        for _ in range(2 * len(self._ring)):  # a full turn, plus one to refill spent credit
            tenant = self._ring[0]
            tq = self._tenants[tenant]
            if tq.keys and tq.credit < tq.weight and not (tq.limit and tq.in_flight >= tq.limit):
                wait = tq.wait_for_token(now)
                if not wait:
                    tq.credit += 1
                    tq.in_flight += 1
                    return (tenant, tq.keys.popleft()), None
                wake = wait if wake is None else min(wake, wait)
            tq.credit = 0
            self._ring.rotate(-1)
        return None, wake

    async def get(self) -> tuple[str, K]:
        """The next key, in fair order; waits while the queue is empty."""
        while True:
            if self._closed:
                raise asyncio.CancelledError
            item, wake = self._next()
            if item is not None:
                self._queued.discard(item)
                self._processing.add(item)
                return item
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await asyncio.wait_for(waiter, wake)
            except TimeoutError:  # a rate-limited tenant has a token again
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)

    def done(self, tenant: str, key: K) -> None:
        item = (tenant, key)
        self._processing.discard(item)
        tq = self._tenants.get(tenant)
        if tq is not None:
            tq.in_flight = max(0, tq.in_flight - 1)  # a tenant removed and re-added meanwhile
            if tq.limit and tq.keys:
                self._wake()  # it may have been waiting at its cap
        if item in self._dirty:
            self._dirty.discard(item)
            self.put(tenant, key)

    def close(self) -> None:
        self._closed = True
        for t in self._timers:
            t.cancel()
        for _, waiting in self._parked.values():
            waiting.cancel()
        self._parked.clear()
        self._parked_per_tenant.clear()
        while self._waiting:
            self._wake()
