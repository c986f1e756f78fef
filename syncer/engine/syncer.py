"""The syncer: one process, every tenant, one fair queue, one generic reconcile.

Tenants come and go with their VirtualClusters (serving). Each tenant's informers and the super
cluster's feed keys into the fair queue (a super change finds its tenants through its kind's
route); workers reconcile a key of any kind of the table from both caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any

from syncer.engine import admission, reconcile
from syncer.engine import patrol as patroller
from syncer.engine.caches import ClientEffects, JustDone, TenantView
from syncer.engine.informer import Informer, Key, slim
from syncer.engine.metrics import InformerCollector, Metrics
from syncer.engine.model import Direction, Kept, Obj, Route, SyncedKind, View, WorkKey
from syncer.engine.queue import FairQueue
from syncer.engine.serving import Serving
from syncer.engine.shard import Shard
from syncer.engine.tenant import TenantRuntime
from syncer.engine.vnodes import node_loop
from syncer.engine.worker import Worker
from syncer.kinds import KINDS, PUBLIC_KINDS
from syncer.resources import classes
from syncer.settings import SyncerOptions
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client

log = logging.getLogger("syncer")
RESTART_DELAY = 1.0


class Syncer:
    def __init__(
        self,
        super_client: Client,
        opts: SyncerOptions,
        *,
        workers: int = 50,
        patrol_period: float = 60.0,
        shard: Shard | None = None,
        fair: bool = True,
        kinds: Mapping[str, SyncedKind] = KINDS,
    ) -> None:
        self.super = super_client
        self.opts = opts
        self.kinds = kinds
        self.workers = workers
        self.patrol_period = patrol_period
        self.queue: FairQueue[WorkKey] = FairQueue(fair=fair)
        self.metrics = Metrics(self.queue)
        self._verified: patroller.Verified = {}
        self._just_done = JustDone()
        self._tasks: list[asyncio.Task[None]] = []
        self.serving = Serving(
            super_client,
            opts,
            self.queue,
            self.metrics,
            kinds.values(),
            shard,
            enqueue=self._enqueue,
            started=self._started,
            changed=self._changed,
            stopped=lambda name: self.worker.forget(name),
            echo=self._just_done.heard,
        )
        self.tenants = self.serving.tenants
        self.worker = Worker(self.queue, self.metrics, self.tenants, self.reconcile, self.rejected)
        self.supers: dict[str, Informer] = {}
        for kind in kinds.values():
            routes, old = kind.routes(), kind.route_reads_old
            self._watch(kind.name, kind.resource, kind.super_selector, routes, kind.super_kept, old)
            for w in kind.hooks.watches:
                self._watch(w.name, w.resource, w.selector, w.route, w.kept)
        self.metrics.registry.register(InformerCollector(self.informers))
        self.webhook: tuple[str, bytes] | None = None
        """(base URL, CA) of the admission webhook every tenant calls for Service ClusterIPs."""

    def _watch(
        self,
        name: str,
        resource: r.Resource,
        selector: str,
        route: Route | None,
        kept: Kept | None,
        with_old: bool = False,
    ) -> None:
        def changed(key: Key, old: Obj | None, new: Obj | None) -> None:
            if name in classes.CONTEXT_CLASSES:
                self._refresh_public_classes()
            for tenant, work in route(key, old, new, self) if route else ():
                self._enqueue(tenant, work)

        self.supers[name] = Informer(
            self.super,
            resource,
            changed,
            label_selector=selector,
            name=f"super/{name}",
            echo=self._just_done.heard,
            keep=slim if kept is None else lambda obj: kept(slim(obj), self),
            with_old=with_old,
        )

    # --- Routes: what a super change needs to find its tenants -------------------------------
    def super_obj(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.supers[kind].get(namespace, name)

    def has_super(self, kind: str, namespace: str, name: str) -> bool:
        return self.supers[kind].has(namespace, name)

    def super_synced(self, kind: str) -> bool:
        return self.supers[kind].synced.is_set()

    def tenant_of_root(self, root: str) -> str | None:
        return self.serving.by_root.get(root)

    def views(self) -> Iterable[tuple[str, View]]:
        return [(name, self.view(t)) for name, t in list(self.tenants.items())]

    def view(self, t: TenantRuntime) -> TenantView:
        return TenantView(t, self.supers, self._just_done)

    # --- tenants served ------------------------------------------------------------------------
    def _enqueue(self, tenant: str, key: WorkKey) -> None:
        self.queue.put(tenant, key)

    async def _started(self, t: TenantRuntime) -> None:
        self._refresh_public_classes()
        await self._configure_tenant(t)
        for kind in PUBLIC_KINDS:
            for key in list(self.supers[kind.name].cache):
                self._enqueue(t.name, (kind.name, "", key[1]))
        self._enqueue_nodes(t)

    def _changed(self, t: TenantRuntime) -> None:
        for kind_name, inf in t.informers.items():
            for ns, obj_name in list(inf.cache):
                self._enqueue(t.name, (kind_name, ns, obj_name))
        self._enqueue_nodes(t)

    def _enqueue_nodes(self, t: TenantRuntime) -> None:
        """Every super node and virtual node of a tenant whose nodes are selected (spec.nodes): made
        from the start, and those no longer selected left to the node loop."""
        if t.ctx.node_selector is None:
            return
        for key in {*self.supers["Node"].cache, *t.informers["Node"].cache}:
            self._enqueue(t.name, ("Node", "", key[1]))

    def _refresh_public_classes(self) -> None:
        """Claims and ingresses may name any public class: every tenant's context learns the current sets."""
        sets: dict[str, Any] = {
            field: frozenset(k[1] for k in self.supers[kind].cache)
            for kind, field in classes.CONTEXT_CLASSES.items()
        }
        for t in self.tenants.values():
            if any(getattr(t.ctx, f) != v for f, v in sets.items()):
                t.ctx = dataclasses.replace(t.ctx, **sets)

    async def _configure_tenant(self, t: TenantRuntime) -> None:
        """TiSpace's own objects in a tenant, written whenever it is served: the Service admission
        webhook (its URL and CA change when the syncer restarts) and the read-only class policy."""
        objs: list[tuple[r.Resource, Obj]] = []
        if self.webhook is not None:
            base, ca = self.webhook
            objs.append(
                (r.MUTATINGWEBHOOKS, admission.webhook_configuration(f"{base}/services/{t.name}", ca))
            )
        policy, binding = classes.read_only_policy(k.resource for k in PUBLIC_KINDS)
        objs += [(r.VALIDATINGPOLICIES, policy), (r.VALIDATINGPOLICYBINDINGS, binding)]
        for res, obj in objs:
            try:
                await t.client.patch(res, obj["metadata"]["name"], obj, patch_type="apply", force=True)
            except ApiError as e:
                log.warning(
                    "%s %s not written: %s", obj["kind"], obj["metadata"]["name"], e, extra={"tenant": t.name}
                )

    # --- reconcile -----------------------------------------------------------------------------
    async def reconcile(self, t: TenantRuntime, key: WorkKey) -> None:
        kind_name, ns, name = key
        fx = ClientEffects(t, self.super, self._just_done)
        await reconcile.reconcile(self.kinds[kind_name], (ns, name), self.view(t), fx)

    async def rejected(self, t: TenantRuntime, key: WorkKey, err: ApiError) -> None:
        fx = ClientEffects(t, self.super, self._just_done)
        await reconcile.rejected(self.kinds[key[0]], (key[1], key[2]), self.view(t), fx, err)

    def patrol(self) -> dict[str, Any]:
        """One full drift check of every tenant, and of what is due by the clock (pod tokens to
        renew); the repairs go through the queue."""
        t0, cpu0 = time.perf_counter(), time.thread_time()
        verified: patroller.Verified = {}
        down = [k for k in self.kinds.values() if k.direction is Direction.DOWN]
        queued = patroller.patrol(
            down,
            list(self.tenants.values()),
            self.supers,
            self._enqueue,
            lambda tenant, what, n: self.metrics.drift.labels(tenant, what).inc(n),
            self._verified,
            verified,
        )
        self._verified = verified
        seconds = time.perf_counter() - t0
        self.metrics.patrol_seconds.set(seconds)
        # Wall time, and the scan's own CPU time: on a busy machine the first is mostly other processes'.
        return {
            "queued": queued,
            "seconds": round(seconds, 4),
            "cpu_seconds": round(time.thread_time() - cpu0, 4),
        }

    async def _patrol_loop(self) -> None:
        while True:
            await asyncio.sleep(self.patrol_period)
            result = self.patrol()
            if result["queued"]:
                log.info("patrol queued %d drifted keys in %.3fs", result["queued"], result["seconds"])

    def status(self) -> dict[str, Any]:
        shard = self.serving.shard
        return {
            "tenants": {
                name: {
                    "root": t.ctx.root,
                    "queue": self.queue.depth(name),
                    "synced": all(i.synced.is_set() for i in t.informers.values()),
                    "signs_tokens": t.ctx.token_signer is not None,
                    **self.queue.shares(name),
                }
                for name, t in self.tenants.items()
            },
            "queue": self.queue.depth(),
            "shard": None
            if shard is None
            else {"identity": shard.identity, "members": sorted(shard.members)},
        }

    def super_side(self) -> list[Informer]:
        return [*self.supers.values(), self.serving.vcs]

    def informers(self) -> Iterator[Informer]:
        yield from self.super_side()
        for t in list(self.tenants.values()):
            yield from t.informers.values()
            yield from t.token_admission

    async def _forever(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop that must not end: a bug or an unexpected error is logged and it starts again
        (a dead lease loop would take every virtual node NotReady, a dead worker shrinks the pool)."""
        while True:
            try:
                await loop()
            except Exception:
                log.exception("%s stopped; restarting it in %.0fs", name, RESTART_DELAY)
                self.metrics.restarts.labels(name.rstrip("0123456789-")).inc()
                await asyncio.sleep(RESTART_DELAY)

    async def run(self, stop: asyncio.Event) -> None:
        """Start every task (named), run until `stop`, then shut down in order."""
        spawn: list[tuple[str, Coroutine[Any, Any, None]]] = [
            (f"informer:{i.name}", i.run()) for i in self.super_side()
        ]
        spawn += [
            ("node-loop", self._forever("node-loop", lambda: node_loop(self.tenants, self.supers["Node"]))),
            ("patrol", self._forever("patrol", self._patrol_loop)),
        ]
        spawn += [(f"worker-{n}", self._forever(f"worker-{n}", self.worker.run)) for n in range(self.workers)]
        shard = self.serving.shard
        if shard is not None:
            spawn.append(("shard", self._forever("shard", lambda: self.serving.shard_loop(shard))))
        else:
            spawn.append(("serve", self._forever("serve", self.serving.serve_loop)))
        self._tasks = [asyncio.create_task(coro, name=name) for name, coro in spawn]
        try:
            await stop.wait()
        finally:
            self.queue.close()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for name in list(self.tenants):
                with contextlib.suppress(ApiError, OSError, TimeoutError):
                    await self.serving.stop(name)
            if shard is not None:
                await shard.leave()
