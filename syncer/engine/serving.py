"""Which tenants this replica serves: every Running VirtualCluster (or, with shards, those that hash
to it and whose Lease it holds). Serving starts a tenant's informers; stopping deletes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from syncer.engine.informer import Echo, Informer, Key
from syncer.engine.metrics import Metrics
from syncer.engine.model import SyncedKind, WorkKey
from syncer.engine.queue import FairQueue
from syncer.engine.shard import Shard
from syncer.engine.tenant import (
    TenantRuntime,
    concurrency_of,
    rate_of,
    rollout,
    spec_context,
    weight_of,
)
from syncer.settings import SyncerOptions
from tispace import api
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client

log = logging.getLogger("syncer")
SERVE_PERIOD = 10.0
"""How often Running VirtualClusters that are not served yet (their first connect failed) are retried."""
CONNECTING = 16
"""Most tenants connected at once (their kubeconfig read, TiSpace's objects written, informers
started). One at a time, a restarted syncer at 20 x 250 took 8.4 s from its first tenant to its
last; all at once, a super cluster of hundreds of tenants would take hundreds of reads in a burst."""
STARTED_TIMEOUT = 30.0
"""Longest a tenant's first writes (webhook, class policy) may take before it is given up and tried
again: a tenant API server that accepts connections but never answers held its connect slot, and
its lock, for minutes of retries."""


class KeyedLock:
    """One lock per key, kept while someone holds or waits for it: each tenant's VirtualCluster
    events are handled in order, and tenants do not wait for each other."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def running(vc: dict[str, Any] | None) -> bool:
    return vc is not None and (vc.get("status") or {}).get("phase") == api.Phase.RUNNING


class Serving:
    def __init__(
        self,
        super_client: Client,
        opts: SyncerOptions,
        queue: FairQueue[WorkKey],
        metrics: Metrics,
        kinds: Iterable[SyncedKind],
        shard: Shard | None,
        *,
        enqueue: Callable[[str, WorkKey], None],
        started: Callable[[TenantRuntime], Awaitable[None]],
        changed: Callable[[TenantRuntime], None],
        stopped: Callable[[str], None],
        echo: Echo | None = None,
    ) -> None:
        self.super = super_client
        self.opts = opts
        self.queue = queue
        self.metrics = metrics
        self.kinds = list(kinds)
        self.shard = shard
        """With several replicas: which tenants are this one's (None: every tenant)."""
        self._enqueue = enqueue
        self._started = started
        """Called before a tenant's informers start; an OSError or TimeoutError there stops serving it."""
        self._changed = changed
        """Called when a served tenant's context changed (new rules for every object)."""
        self._stopped = stopped
        self._echo = echo
        self.tenants: dict[str, TenantRuntime] = {}
        self.by_root: dict[str, str] = {}
        self.vcs = Informer(super_client, r.VIRTUALCLUSTERS, self._on_vc, name="super/VirtualCluster")
        self._locks = KeyedLock()
        self._connecting = asyncio.Semaphore(CONNECTING)
        self._vc_tasks: set[asyncio.Task[None]] = set()
        """VirtualCluster events being handled (referenced, so they are not collected mid-way)."""
        self._connecting_now: dict[str, asyncio.Task[Any]] = {}
        """The task connecting each tenant now, holding its lock: a VirtualCluster that stops Running
        cancels it, or its stop would wait up to STARTED_TIMEOUT while the connect went on writing."""
        self._given_up: set[str] = set()
        """Tenants whose connect was cancelled because their VirtualCluster stopped Running."""

    def _on_vc(self, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        name = f"{key[0]}/{key[1]}"
        connecting = self._connecting_now.get(name)
        if connecting is not None and not running(new) and name not in self._given_up:
            self._given_up.add(name)  # once: a second cancel would outlive the give-up
            connecting.cancel()
        task = asyncio.get_running_loop().create_task(self._reconcile_logged(name))
        self._vc_tasks.add(task)
        task.add_done_callback(self._vc_tasks.discard)

    def unserved(self) -> list[str]:
        """Running VirtualClusters this replica does not serve (yet)."""
        return [
            f"{ns}/{name}"
            for (ns, name), vc in list(self.vcs.cache.items())
            if f"{ns}/{name}" not in self.tenants and running(vc)
        ]

    async def reconcile_vc(self, name: str) -> None:
        """Serve a tenant while its VirtualCluster is Running; stop serving (never delete) otherwise.
        The VirtualCluster is read under the tenant's lock: an event handled late must not act on an
        old copy."""
        async with self._locks.hold(name):
            vc = self.vcs.get(*name.split("/", 1))
            current = self.tenants.get(name)
            if running(vc) and current is None:
                assert vc is not None
                await self._serve(name, vc)
            elif running(vc) and current is not None and vc is not None:
                current.weight = weight_of(vc)
                if rollout(vc) != current.signed_for:
                    await current.sign_tokens(self.super, vc, self.opts.sign_tokens)
                ctx = spec_context(current.ctx, vc, self.opts.node_selector)
                if ctx != current.ctx:
                    current.ctx = ctx
                    self._changed(current)
                self.queue.set_weight(
                    name, current.weight, concurrency_of(vc, self.opts.tenant_concurrency), rate_of(vc)
                )
            elif not running(vc) and current is not None:
                await self._stop(name)

    async def _serve(self, name: str, vc: dict[str, Any]) -> None:
        """Claim the tenant (with shards, its Lease) and connect it, CONNECTING at once: the Lease is
        taken right before the tenant is served, and hundreds of them are not written in one burst.
        A VirtualCluster that stops Running meanwhile gives the connect up (`_on_vc`)."""
        task = asyncio.current_task()
        assert task is not None
        self._connecting_now[name] = task
        try:
            async with self._connecting:
                if await self._claim(name):
                    await self._connect(name, vc)
        except asyncio.CancelledError:
            if name not in self._given_up or task.uncancel() > 0:
                raise  # the syncer is stopping
            log.info("tenant %s: connect given up, its VirtualCluster is no longer Running", name)
        finally:
            self._connecting_now.pop(name, None)
            self._given_up.discard(name)

    async def _connect(self, name: str, vc: dict[str, Any]) -> None:
        try:
            t = await TenantRuntime.connect(vc, self.super, self.opts, self._enqueue, self.kinds, self._echo)
        except (ApiError, OSError, TimeoutError) as e:
            log.warning("tenant %s not served yet (retried in %.0fs): %s", name, SERVE_PERIOD, e)
            return
        self.tenants[name] = t
        self.by_root[t.ctx.root] = name
        self.queue.set_weight(name, t.weight, concurrency_of(vc, self.opts.tenant_concurrency), rate_of(vc))
        try:
            async with asyncio.timeout(STARTED_TIMEOUT):
                await t.sign_tokens(self.super, vc, self.opts.sign_tokens)
                await self._started(t)
        except asyncio.CancelledError:  # given up, or the syncer is stopping
            await self._unserve(name)
            raise
        except (OSError, TimeoutError) as e:  # its API server went away or hangs: try again later
            log.warning("tenant %s not served yet (retried in %.0fs): %s", name, SERVE_PERIOD, e)
            await self._unserve(name)
            return
        except Exception:  # a bug: a tenant served but never started would hold its keys for good
            log.exception("tenant %s not served yet (retried in %.0fs)", name, SERVE_PERIOD)
            await self._unserve(name)
            return
        t.start()
        log.info("serving tenant %s (root %s)", name, t.ctx.root)
        self.metrics.tenants.set(len(self.tenants))

    async def _unserve(self, name: str) -> None:
        """Stop a tenant whose connect failed; no longer given up meanwhile, so the stop runs whole."""
        self._connecting_now.pop(name, None)
        await self._stop(name)

    async def _claim(self, name: str) -> bool:
        """Whether this replica may serve the tenant now (its hash owner, holding its Lease)."""
        return self.shard is None or (self.shard.mine(name) and await self.shard.acquire(name))

    async def stop(self, name: str) -> None:
        async with self._locks.hold(name):
            await self._stop(name)

    async def _stop(self, name: str) -> None:
        """Stop the tenant's informers and hand its Lease back; nothing in either cluster is deleted."""
        current = self.tenants.pop(name, None)
        if current is None:
            return
        self.by_root.pop(current.ctx.root, None)
        self.queue.remove_tenant(name)
        self._stopped(name)
        await current.stop()
        if self.shard is not None:
            try:
                await self.shard.release(name)
            except (ApiError, OSError, TimeoutError) as e:  # its Lease then expires instead
                log.warning("tenant %s: Lease not handed back: %s", name, e)
        self.metrics.tenants.set(len(self.tenants))
        log.info("stopped serving tenant %s", name)

    async def shard_loop(self, shard: Shard) -> None:
        """Heartbeat; serve the tenants that hash to this replica, hand back the others.

        A replica that cannot renew a tenant's Lease in time stops serving it, as a leader that
        cannot renew stops leading: by then another replica may own it.
        """
        renewed: dict[str, float] = {}
        serving: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    await shard.heartbeat()
                    for name in list(self.tenants):
                        if shard.mine(name) and await shard.acquire(name):
                            renewed[name] = time.monotonic()
                        else:
                            await self.stop(name)
                    if serving is None or serving.done():
                        # beside the heartbeat: a tenant slow to connect must not stop it, or the
                        # other replicas would take this one's tenants while it still serves them
                        serving = asyncio.create_task(
                            self.serve_all([n for n in self.unserved() if shard.mine(n)])
                        )
                except (ApiError, OSError, TimeoutError) as e:
                    log.warning("shard heartbeat failed: %s", e)
                for name in list(self.tenants):
                    since = time.monotonic() - renewed.setdefault(name, time.monotonic())
                    if since > shard.duration * 2 / 3:
                        await self.stop(name)
                for name in [n for n in renewed if n not in self.tenants]:
                    del renewed[name]
                await asyncio.sleep(shard.renew_period)
        finally:
            if serving is not None:  # awaited: a tenant it was connecting is stopped before the syncer
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)

    async def serve_loop(self) -> None:
        """Without shards: serve Running VirtualClusters whose first connect failed."""
        while True:
            await asyncio.sleep(SERVE_PERIOD)
            await self.serve_all(self.unserved())

    async def serve_all(self, names: list[str]) -> None:
        """Serve these tenants side by side; one that fails (its Lease not taken, its VirtualCluster's
        kubeconfig unreadable) is logged and tried next round, and the others are served."""
        await asyncio.gather(*(self._reconcile_logged(n) for n in names))

    async def _reconcile_logged(self, name: str) -> None:
        """`reconcile_vc` for an event or a round, whose failure nobody awaits: logged here (with
        its traceback if unexpected), and the next round tries again."""
        try:
            await self.reconcile_vc(name)
        except (ApiError, OSError, TimeoutError) as e:
            log.warning("tenant %s not served yet: %s", name, e)
        except Exception:
            log.exception("tenant %s not served yet", name)
