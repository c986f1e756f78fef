"""A worker: takes keys from the fair queue, reconciles them, retries failures with backoff.

A key the super cluster refused (invalid, forbidden, over quota) is told to the tenant once per
failure streak, so `kubectl describe` says why, and is retried like any other failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from syncer.engine.metrics import Metrics
from syncer.engine.model import Later, Unsynced, WorkKey
from syncer.engine.queue import FairQueue
from syncer.engine.tenant import TenantRuntime
from tispace.kube.client import ApiError

log = logging.getLogger("syncer")
RETRY_STATUSES = frozenset({403, 404, 409, 429, 500, 502, 503, 504})
# The super cluster said no (invalid, forbidden, over quota): the tenant hears about it.
REJECTED_STATUSES = frozenset({400, 403, 422})
MAX_DELAY = 60.0

Reconcile = Callable[[TenantRuntime, WorkKey], Awaitable[None]]
Tell = Callable[[TenantRuntime, WorkKey, ApiError], Awaitable[None]]


class Worker:
    def __init__(
        self,
        queue: FairQueue[WorkKey],
        metrics: Metrics,
        tenants: Mapping[str, TenantRuntime],
        reconcile: Reconcile,
        tell: Tell,
    ) -> None:
        self.queue = queue
        self.metrics = metrics
        self.tenants = tenants
        self.reconcile = reconcile
        self.tell = tell
        self._failures: dict[tuple[str, WorkKey], int] = {}
        self._told: set[tuple[str, WorkKey]] = set()
        """Keys whose refusal the tenant has been told (once, until the key syncs or goes)."""

    async def run(self) -> None:
        while True:
            tenant, key = await self.queue.get()
            t = self.tenants.get(tenant)
            t0 = time.perf_counter()
            try:
                if t is not None:
                    await self.reconcile(t, key)
                self._failures.pop((tenant, key), None)
                self._told.discard((tenant, key))
            except Later as later:
                self.queue.put_after(tenant, key, later.seconds)
            except Unsynced as unsynced:
                self.queue.put_when(tenant, key, unsynced.listed)
            except ApiError as e:
                if t is not None and e.status in REJECTED_STATUSES and (tenant, key) not in self._told:
                    try:
                        await self.tell(t, key, e)
                        self._told.add((tenant, key))
                    except Exception as told:  # noqa: BLE001 - telling is best effort; the retry matters
                        log.warning(
                            "could not tell the tenant: %s", told, extra={"tenant": tenant, "kind": key[0]}
                        )
                self._fail(tenant, key, str(e.status), e, retry=e.status in RETRY_STATUSES)
            except Exception as e:  # noqa: BLE001 - a bug or transport error must not kill the worker
                self._fail(tenant, key, type(e).__name__, e, retry=True)
            finally:
                self.metrics.latency.labels(tenant, key[0]).observe(time.perf_counter() - t0)
                self.queue.done(tenant, key)

    def _fail(self, tenant: str, key: WorkKey, reason: str, err: Exception, *, retry: bool) -> None:
        self.metrics.errors.labels(tenant, key[0], reason).inc()
        n = self._failures.get((tenant, key), 0) + 1
        self._failures[(tenant, key)] = n
        delay = min(MAX_DELAY, 0.05 * 2**n)
        level = logging.DEBUG if n < 4 else logging.WARNING
        log.log(
            level,
            "sync %s %s/%s failed (%s)%s",
            key[0],
            key[1],
            key[2],
            err,
            f"; retry in {delay:.2f}s" if retry else "",
            extra={"tenant": tenant, "kind": key[0], "object": f"{key[1]}/{key[2]}" if key[1] else key[2]},
        )
        if retry and tenant in self.tenants:
            self.queue.put_after(tenant, key, delay)

    def forget(self, tenant: str) -> None:
        """A tenant no longer served here: its failure streaks go with it."""
        for key in [k for k in self._failures if k[0] == tenant]:
            del self._failures[key]
        self._told = {k for k in self._told if k[0] != tenant}
