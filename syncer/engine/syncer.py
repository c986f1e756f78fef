"""The syncer: one process, every tenant, one fair queue, one generic reconcile.

Tenants come and go with their VirtualClusters. Each tenant's informers and the super
cluster's (filtered by the managed-by label) feed keys into the fair queue; workers
reconcile a key from both caches, idempotently, in both directions. Nothing is deleted from
the super cluster because a tenant is unreachable: only an observed tenant delete, or a
super object whose tenant object is gone from a synced cache, leads to a super delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from cachetools import TTLCache
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from syncer.engine import admission, podsync, upsync
from syncer.engine import patrol as patroller
from syncer.engine.informer import Informer, Key
from syncer.engine.queue import FairQueue
from syncer.engine.shard import Shard
from syncer.engine.tenant import (
    SyncerOptions,
    TenantRuntime,
    WorkKey,
    concurrency_of,
    rate_of,
    spec_context,
    weight_of,
)
from syncer.resources import classes, events, nodes, pods, services, simple, volumes
from syncer.resources.context import Refused
from syncer.resources.table import KINDS, Kind
from tispace import api, leases, naming
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client

log = logging.getLogger("syncer")
RETRY_STATUSES = frozenset({403, 404, 409, 429, 500, 502, 503, 504})
# The super cluster said no (invalid, forbidden, over quota): the tenant hears about it.
REJECTED_STATUSES = frozenset({400, 403, 422})
NODE_PERIOD = 10.0
SERVE_PERIOD = 10.0
"""How often Running VirtualClusters that are not served yet (their first connect failed) are retried."""
RESTART_DELAY = 1.0
VNODE_GRACE = 30.0


class NotYet(Exception):
    """The key waits for something another component makes; retried with backoff like a failure."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.depth = Gauge(
            "tispace_syncer_queue_depth", "Keys waiting, per tenant", ["tenant"], registry=self.registry
        )
        self.latency = Histogram(
            "tispace_syncer_sync_seconds",
            "Reconcile time per key",
            ["tenant", "kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tispace_syncer_errors_total",
            "Failed reconciles",
            ["tenant", "kind", "reason"],
            registry=self.registry,
        )
        self.tenants = Gauge("tispace_syncer_tenants", "Tenants served", registry=self.registry)
        self.drift = Counter(
            "tispace_syncer_drift_total",
            "Drift found by the patroller",
            ["tenant", "drift"],
            registry=self.registry,
        )
        self.patrol_seconds = Gauge(
            "tispace_syncer_patrol_seconds", "Duration of the last full patrol", registry=self.registry
        )
        self.restarts = Counter(
            "tispace_syncer_loop_restarts_total",
            "Background loops restarted after an unexpected error (a bug: see the log)",
            ["loop"],
            registry=self.registry,
        )


class InformerCollector(Collector):
    """Relists and expired watches of every informer, read when scraped."""

    def __init__(self, informers: Callable[[], Iterable[Informer]]) -> None:
        self.informers = informers

    def collect(self) -> Iterator[CounterMetricFamily]:
        relists = CounterMetricFamily(
            "tispace_syncer_informer_relists",
            "Full lists (the first, then one per expired watch)",
            labels=["informer"],
        )
        expired = CounterMetricFamily(
            "tispace_syncer_watch_expired", "Watches the server expired (410 Gone)", labels=["informer"]
        )
        for inf in self.informers():
            relists.add_metric([inf.name], inf.relists)
            expired.add_metric([inf.name], inf.expired)
        yield relists
        yield expired


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
    ) -> None:
        self.super = super_client
        self.shard = shard
        """With several replicas: which tenants are this one's (None: every tenant)."""
        self.opts = opts
        self.workers = workers
        self.patrol_period = patrol_period
        self.queue: FairQueue[WorkKey] = FairQueue(fair=fair)
        self.metrics = Metrics()
        self.tenants: dict[str, TenantRuntime] = {}
        self._by_root: dict[str, str] = {}
        self._failures: dict[tuple[str, WorkKey], int] = {}
        self._told: set[tuple[str, WorkKey]] = set()
        """Keys whose refusal the tenant has been told (once, until the key syncs or goes)."""
        self._verified: patroller.Verified = {}
        self._tokens_made: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=60)
        """Super pod uids whose token secret this process just made, until the informer shows it (saves a
        second TokenRequest)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._vc_tasks: set[asyncio.Task[None]] = set()
        """VirtualCluster events being handled (referenced, so they are not collected mid-way)."""
        self._vc_lock = asyncio.Lock()
        self.super_informers = {
            kind.name: Informer(
                super_client,
                kind.resource,
                self._on_super(kind),
                label_selector=naming.MANAGED_SELECTOR,
                name=f"super/{kind.name}",
            )
            for kind in KINDS.values()
        }
        self.super_nodes = Informer(super_client, r.NODES, self._on_super_node, name="super/Node")
        self.super_events = Informer(super_client, r.EVENTS, self._on_super_event, name="super/Event")
        self.token_secrets = Informer(
            super_client,
            r.SECRETS,
            self._on_token_secret,
            label_selector=f"{naming.MANAGED_BY}={podsync.TOKEN_MANAGED_BY}",
            name="super/TokenSecret",
        )
        self.vcs = Informer(super_client, r.VIRTUALCLUSTERS, self._on_vc, name="super/VirtualCluster")
        self.super_quotas = Informer(
            super_client,
            r.RESOURCEQUOTAS,
            self._on_super_quota,
            label_selector=naming.MANAGED_SELECTOR,
            name="super/ResourceQuota",
        )
        self.super_pvs = Informer(super_client, r.PVS, self._on_super_pv, name="super/PersistentVolume")
        self.super_public = {
            k.name: Informer(
                super_client,
                k.resource,
                self._on_super_public(k),
                label_selector=naming.PUBLIC_SELECTOR,
                name=f"super/{k.name}",
            )
            for k in classes.PUBLIC_KINDS.values()
        }
        self.metrics.registry.register(InformerCollector(self.informers))
        self.webhook: tuple[str, bytes] | None = None
        """(base URL, CA) of the admission webhook every tenant calls for Service ClusterIPs."""

    # --- event routing -----------------------------------------------------------------------
    def _enqueue(self, tenant: str, key: WorkKey) -> None:
        asyncio.get_running_loop().create_task(self.queue.put(tenant, key))

    def _on_super(self, kind: Kind) -> Any:
        def changed(key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
            owner = naming.tenant_key(new or old or {})
            if owner is None:
                return
            tenant = self._by_root.get(owner[0])
            if tenant:
                self._enqueue(tenant, (kind.name, owner[1], owner[2]))

        return changed

    def _on_super_event(self, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Events about synced pods go up to the tenant that owns the pod."""
        if new is None or (new.get("involvedObject") or {}).get("kind") not in events.UP_KINDS:
            return
        tenant = self._tenant_of_super_ns(key[0])
        if tenant:
            self._enqueue(tenant, ("Event", key[0], key[1]))

    def _on_token_secret(self, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for owner in (new or {}).get("metadata", {}).get("ownerReferences") or []:
            self._tokens_made.pop(owner.get("uid"), None)  # the informer is the truth again

    def _on_super_quota(self, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """A tenant quota changed or deleted in the super cluster: its namespace is reconciled (drift)."""
        ns = self.super_informers["Namespace"].get("", key[0])
        tenant_ns = ((ns or {}).get("metadata", {}).get("labels") or {}).get(naming.LABEL_TENANT_NAMESPACE)
        tenant = self._tenant_of_super_ns(key[0])
        if tenant and tenant_ns:
            self._enqueue(tenant, ("Namespace", "", tenant_ns))

    def _tenant_of_super_ns(self, super_ns: str) -> str | None:
        ns = self.super_informers["Namespace"].get("", super_ns)
        root = ((ns or {}).get("metadata", {}).get("labels") or {}).get(naming.LABEL_TENANT)
        return self._by_root.get(root or "")

    def _on_super_pv(self, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """A super PV goes to the tenant whose claim it is (or was) bound to."""
        for obj in (new, old):
            ref = volumes.bound_claim(obj) if obj else None
            tenant = self._tenant_of_super_ns(ref[0]) if ref else None
            if tenant:
                self._enqueue(tenant, ("PersistentVolume", "", key[1]))
                return

    def _on_super_public(self, kind: classes.PublicKind) -> Any:
        def changed(key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
            if kind.name in ("StorageClass", "IngressClass", "VolumeAttributesClass"):
                self._refresh_public_classes()
            for t in self.tenants.values():
                self._enqueue(t.name, (kind.name, "", key[1]))

        return changed

    def _refresh_public_classes(self) -> None:
        """Claims and ingresses may name any public class: every tenant's context learns the current sets."""

        def names(kind: str) -> frozenset[str]:
            return frozenset(k[1] for k in self.super_public[kind].cache)

        storage, ingress, attributes = (
            names("StorageClass"),
            names("IngressClass"),
            names("VolumeAttributesClass"),
        )
        for t in self.tenants.values():
            c = t.ctx
            if (c.public_storage_classes, c.public_ingress_classes, c.public_volume_attributes_classes) != (
                storage,
                ingress,
                attributes,
            ):
                t.ctx = dataclasses.replace(
                    c,
                    public_storage_classes=storage,
                    public_ingress_classes=ingress,
                    public_volume_attributes_classes=attributes,
                )

    def _on_super_node(self, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for t in self.tenants.values():
            if t.nodes.get("", key[1]) is not None or (new and nodes.selects(t.ctx.node_selector, new)):
                self._enqueue(t.name, ("Node", "", key[1]))

    def _enqueue_nodes(self, tenant: str) -> None:
        """Every super node and virtual node of a tenant whose nodes are selected (spec.nodes): made
        from the start, and those no longer selected left to the node loop."""
        t = self.tenants[tenant]
        if t.ctx.node_selector is None:
            return
        for key in {*self.super_nodes.cache, *t.nodes.cache}:
            self._enqueue(tenant, ("Node", "", key[1]))

    def _on_vc(self, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        task = asyncio.get_running_loop().create_task(self._reconcile_vc(f"{key[0]}/{key[1]}"))
        self._vc_tasks.add(task)
        task.add_done_callback(self._vc_tasks.discard)

    def _unserved(self) -> list[str]:
        """Running VirtualClusters this replica does not serve (yet)."""
        return [
            f"{ns}/{name}"
            for (ns, name), vc in list(self.vcs.cache.items())
            if f"{ns}/{name}" not in self.tenants and _running(vc)
        ]

    async def _reconcile_vc(self, name: str) -> None:
        """Serve a tenant while its VirtualCluster is Running; stop serving (never delete) otherwise.
        The VirtualCluster is read under the lock: an event handled late must not act on an old copy."""
        async with self._vc_lock:
            vc = self.vcs.get(*name.split("/", 1))
            running = _running(vc)
            current = self.tenants.get(name)
            if running and current is None and await self._claim(name):
                assert vc is not None
                try:
                    t = await TenantRuntime.connect(vc, self.super, self.opts, self._enqueue)
                except (ApiError, OSError, TimeoutError) as e:
                    log.warning("tenant %s not served yet (retried in %.0fs): %s", name, SERVE_PERIOD, e)
                    return
                self.tenants[name] = t
                self._by_root[t.ctx.root] = name
                self.queue.set_weight(
                    name, t.weight, concurrency_of(vc, self.opts.tenant_concurrency), rate_of(vc)
                )
                self._refresh_public_classes()
                t.start()
                try:
                    await self._configure_tenant(t)
                except (OSError, TimeoutError) as e:  # its API server went away: try again later
                    log.warning("tenant %s not served yet (retried in %.0fs): %s", name, SERVE_PERIOD, e)
                    await self._stop_serving(name)
                    return
                for kind in classes.PUBLIC_KINDS.values():
                    for key in list(self.super_public[kind.name].cache):
                        self._enqueue(name, (kind.name, "", key[1]))
                self._enqueue_nodes(name)
                log.info("serving tenant %s (root %s)", name, t.ctx.root)
                self.metrics.tenants.set(len(self.tenants))
            elif running and current is not None and vc is not None:
                current.weight = weight_of(vc)
                ctx = spec_context(current.ctx, vc, self.opts.node_selector)
                if ctx != current.ctx:  # new rules for every object
                    current.ctx = ctx
                    for kind_name, inf in current.informers.items():
                        for ns, obj_name in list(inf.cache):
                            self._enqueue(name, (kind_name, ns, obj_name))
                    self._enqueue_nodes(name)
                self.queue.set_weight(
                    name, current.weight, concurrency_of(vc, self.opts.tenant_concurrency), rate_of(vc)
                )
            elif not running and current is not None:
                await self._stop_serving(name)

    async def _configure_tenant(self, t: TenantRuntime) -> None:
        """TiSpace's own objects in a tenant, written whenever it is served: the Service admission
        webhook (its URL and CA change when the syncer restarts) and the read-only class policy."""
        if self.webhook is not None:
            base, ca = self.webhook
            hook = admission.webhook_configuration(f"{base}/services/{t.name}", ca)
            await self._apply_to_tenant(t, [(r.MUTATINGWEBHOOKS, hook)])
        policy, binding = classes.read_only_policy()
        await self._apply_to_tenant(
            t, [(r.VALIDATINGPOLICIES, policy), (r.VALIDATINGPOLICYBINDINGS, binding)]
        )

    async def _claim(self, name: str) -> bool:
        """Whether this replica may serve the tenant now (its hash owner, holding its Lease)."""
        return self.shard is None or (self.shard.mine(name) and await self.shard.acquire(name))

    async def _stop_serving(self, name: str) -> None:
        """Stop the tenant's informers and hand its Lease back; nothing in either cluster is deleted."""
        current = self.tenants.pop(name, None)
        if current is None:
            return
        self._by_root.pop(current.ctx.root, None)
        self.queue.remove_tenant(name)
        for key in [k for k in self._failures if k[0] == name]:
            del self._failures[key]
        self._told = {k for k in self._told if k[0] != name}
        with contextlib.suppress(KeyError):  # a tenant served elsewhere now has no depth here
            self.metrics.depth.remove(name)
        await current.stop()
        if self.shard is not None:
            try:
                await self.shard.release(name)
            except (ApiError, OSError, TimeoutError) as e:  # its Lease then expires instead
                log.warning("tenant %s: Lease not handed back: %s", name, e)
        self.metrics.tenants.set(len(self.tenants))
        log.info("stopped serving tenant %s", name)

    async def _apply_to_tenant(self, t: TenantRuntime, objs: list[tuple[r.Resource, dict[str, Any]]]) -> None:
        """Server-side apply TiSpace's own configuration into a tenant (re-applied whenever it is served)."""
        for res, obj in objs:
            try:
                await t.client.patch(res, obj["metadata"]["name"], obj, patch_type="apply", force=True)
            except ApiError as e:
                log.warning(
                    "%s %s not written: %s", obj["kind"], obj["metadata"]["name"], e, extra={"tenant": t.name}
                )

    # --- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, t: TenantRuntime, key: WorkKey) -> None:
        kind_name, ns, name = key
        if kind_name == "Node":
            await self._reconcile_node(t, name)
            return
        if kind_name == "Event":
            await self._reconcile_event(t, ns, name)
            return
        if kind_name == "PersistentVolume":
            if t.pvs.synced.is_set() and self.super_pvs.synced.is_set():
                await upsync.reconcile_pv(
                    t, name, self.super, self.super_pvs, self.super_informers["PersistentVolumeClaim"]
                )
            else:
                self.queue.put_after(t.name, key, 0.5)
            return
        if kind_name in classes.PUBLIC_KINDS:
            await upsync.reconcile_public(
                t, classes.PUBLIC_KINDS[kind_name], name, self.super_public[kind_name]
            )
            return
        kind = KINDS[kind_name]
        tenant_inf = t.informers[kind.name]
        supers = [self.super_informers[kind.name], *([self.super_quotas] if kind.name == "Namespace" else [])]
        if not tenant_inf.synced.is_set() or not all(i.synced.is_set() for i in supers):
            self.queue.put_after(t.name, key, 0.5)  # never act on a half-listed cache
            return
        tobj = tenant_inf.get(ns, name)
        if kind.name == "Service" and (dns := services.tenant_dns_ip(tobj)) and dns != t.ctx.dns_ip:
            t.ctx = dataclasses.replace(t.ctx, dns_ip=dns)
            log.info("tenant DNS at %s", dns, extra={"tenant": t.name})
        sns, sname = kind.super_location(ns, name, t.ctx)
        sobj = self.super_informers[kind.name].get(sns, sname)
        if sobj is not None and (naming.tenant_key(sobj) or ("",))[0] != t.ctx.root:
            return  # not ours: never modified, never deleted
        s_uid = (sobj or {}).get("metadata", {}).get("annotations", {}).get(naming.ANN_UID)
        pending = sobj is not None and services.is_pending(sobj)  # made at admission, not yet adopted

        if tobj is None or not kind.enabled(t.ctx):  # gone, or its kind no longer synced for this tenant
            if sobj is not None:
                if pending and _age(sobj) < services.PENDING_SECONDS:
                    self.queue.put_after(
                        t.name, key, services.PENDING_SECONDS
                    )  # admission may still be running
                    return
                await self.super.delete(kind.resource, sname, sns or None, uid=sobj["metadata"]["uid"])
            return
        if kind.skip(tobj):
            return
        tmeta = tobj["metadata"]
        if tmeta.get("deletionTimestamp"):
            await self._delete_down(t, kind, tobj, sobj, sns, sname)
            return
        if sobj is not None and not pending and s_uid != tmeta["uid"]:
            # A recreated tenant object of the same name: the old super copy goes first (its DELETED
            # event queues this key again; the timer is a backstop). A namespace takes a while.
            if sobj["metadata"].get("deletionTimestamp"):
                self.queue.put_after(t.name, key, 2.0)
                return
            await self.super.delete(
                kind.resource, sname, sns or None, uid=sobj["metadata"]["uid"], grace_period=0
            )
            self.queue.put_after(t.name, key, 0.2)
            return
        if kind.name == "Pod" and sobj is None:
            if (tobj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return  # finished or refused pods are not re-created
            # A host IP came up from the super pod: it existed and is gone, as after an eviction. (A
            # nodeName alone may be the tenant's own choice for a pod that never went down.)
            if (tobj.get("status") or {}).get("hostIP"):
                await podsync.remove_lost(t, tobj)
                return
        try:
            desired = kind.to_super(tobj, t.ctx)
        except Refused as why:
            if kind.name == "Pod":
                await podsync.refuse(t, tobj, why)
            else:
                await podsync.tenant_event(t, tobj, "Warning", why.reason, why.message)
            return
        if sobj is None and sns and kind.resource.namespaced and self._namespace_taken(sns, t):
            await podsync.tenant_event(
                t,
                tobj,
                "Warning",
                "NamespaceTaken",
                f"the super cluster namespace {sns} was not made for this tenant; nothing is synced into it "
                "(ask the admin: the namespace must be removed or this namespace renamed)",
            )
            return
        if kind.name == "Pod" and sobj is None and self._claims_missing(tobj, sns):
            self.queue.put_after(t.name, key, 1.0)  # a scheduler that sees no claim backs off for minutes
            return
        if sobj is None and sns and kind.resource.namespaced and not self._quota_counted(t, sns):
            raise NotYet(f"the tenant's quota in {sns} is not counted yet")  # a broken one backs off
        if sobj is None:
            sobj = await self.super.create(kind.resource, desired, sns or None)
            if kind.name not in ("Pod", "Namespace"):
                return
        if kind.name == "Pod" and pods.needs_token(tobj) and self._token_due(sobj):
            await podsync.create_token(t, self.super, tobj, sobj)
            self._tokens_made[sobj["metadata"]["uid"]] = True
        patch = kind.patch_down(desired, sobj)
        if patch:
            await self.super.patch(kind.resource, sname, patch, sns or None, patch_type=kind.patch_type)
        if kind.name == "Namespace":
            await self._apply_quota(t, sname)
        if kind.name == "Pod" and (debug := pods.ephemeral_patch(desired, sobj)):
            await self.super.patch(
                r.PODS, sname, debug, sns, subresource="ephemeralcontainers", patch_type="strategic"
            )
        if kind.name == "Pod":
            node = sobj["spec"].get("nodeName")
            await podsync.bind(t, tobj, sobj, self.super_nodes.get("", node) if node else None)
        status = kind.status_up(sobj, tobj, t.ctx) if kind.status_up else None
        if status is not None:
            await podsync.set_status(t, tobj, status, kind.resource)

    async def _apply_quota(self, t: TenantRuntime, sns: str) -> None:
        """The tenant's limits on one super namespace (VirtualCluster spec.resourceQuota), as the
        super informer shows them: set, changed, removed by hand, or lifted."""
        current = self.super_quotas.get(sns, simple.QUOTA)
        want = simple.namespace_quota(t.ctx, sns) if t.ctx.quota else None
        if want is not None and (current or {}).get("spec", {}).get("hard") != want["spec"]["hard"]:
            await self.super.patch(
                r.RESOURCEQUOTAS,
                simple.QUOTA,
                want,
                sns,
                patch_type="apply",
                field_manager="tispace-syncer",
                force=True,
            )
        elif want is None and current is not None:
            await self.super.delete(r.RESOURCEQUOTAS, simple.QUOTA, sns, uid=current["metadata"]["uid"])

    def _namespace_taken(self, sns: str, t: TenantRuntime) -> bool:
        """A super namespace of that name that TiSpace made for another tenant (the names of two tenants
        can only meet if their roots share a 6-hex hash and a prefix: rare, but never shared)."""
        ns = self.super_informers["Namespace"].get("", sns)
        owner = naming.tenant_key(ns) if ns else None
        return ns is not None and (owner is None or owner[0] != t.ctx.root)

    def _quota_counted(self, t: TenantRuntime, sns: str) -> bool:
        """With limits, nothing is created in a super namespace before its quota is in force:
        admission ignores a ResourceQuota until the controller-manager has filled its status.hard."""
        if not t.ctx.quota:
            return True
        q = self.super_quotas.get(sns, simple.QUOTA)
        return q is not None and (q.get("status") or {}).get("hard") == q["spec"].get("hard")

    def _claims_missing(self, tenant_pod: dict[str, Any], sns: str) -> bool:
        claims = self.super_informers["PersistentVolumeClaim"]
        return any(claims.get(sns, name) is None for name in pods.claim_names(tenant_pod))

    def _token_due(self, super_pod: dict[str, Any]) -> bool:
        """The pod's token secret is missing, left from an earlier pod of that name, or due for renewal."""
        meta = super_pod["metadata"]
        if meta["uid"] in self._tokens_made:  # made moments ago; the informer may not show it yet
            return False
        secret = self.token_secrets.get(meta["namespace"], pods.token_secret_name(meta["name"]))
        if secret is None:
            return True
        owners = secret["metadata"].get("ownerReferences") or [{}]
        return owners[0].get("uid") != meta["uid"] or pods.token_due(
            secret, datetime.datetime.now(datetime.UTC)
        )

    def _tokens_due(self) -> int:
        """Queue the pods whose token is due for renewal (their reconcile asks the tenant for a new one);
        returns how many."""
        now = datetime.datetime.now(datetime.UTC)
        queued = 0
        for (sns, _), secret in list(self.token_secrets.cache.items()):
            if not pods.token_due(secret, now):
                continue
            owner = (secret["metadata"].get("ownerReferences") or [{}])[0].get("name", "")
            super_pod = self.super_informers["Pod"].get(sns, owner)
            key = naming.tenant_key(super_pod) if super_pod else None
            tenant = self._by_root.get(key[0]) if key else None
            if key and tenant:
                self._enqueue(tenant, ("Pod", key[1], key[2]))
                queued += 1
        return queued

    async def _delete_down(
        self,
        t: TenantRuntime,
        kind: Kind,
        tobj: dict[str, Any],
        sobj: dict[str, Any] | None,
        sns: str,
        sname: str,
    ) -> None:
        tmeta = tobj["metadata"]
        if sobj is not None:
            if not sobj["metadata"].get("deletionTimestamp"):
                await self.super.delete(
                    kind.resource,
                    sname,
                    sns or None,
                    uid=sobj["metadata"]["uid"],
                    grace_period=tmeta.get("deletionGracePeriodSeconds"),
                )
            return
        if kind.graceful:  # the super pod is gone: finish the tenant delete as a kubelet would
            await t.client.delete(
                kind.resource, tmeta["name"], tmeta.get("namespace"), grace_period=0, uid=tmeta["uid"]
            )

    async def _reconcile_event(self, t: TenantRuntime, super_ns: str, name: str) -> None:
        event = self.super_events.get(super_ns, name)
        if event is None:
            return
        involved = event["involvedObject"]
        kind = involved.get("kind", "")
        super_obj = self.super_informers[kind].get(super_ns, involved.get("name", ""))
        owner = naming.tenant_key(super_obj) if super_obj else None
        if owner is None or owner[0] != t.ctx.root:
            return
        tenant_obj = t.informers[kind].get(owner[1], owner[2])
        if tenant_obj is None:
            return
        up = events.to_tenant(event, tenant_obj)
        try:
            await t.client.create(r.EVENTS, up, owner[1])
        except ApiError as e:
            if e.status != 409:
                raise
            await t.client.patch(
                r.EVENTS, up["metadata"]["name"], {k: up[k] for k in events.MUTABLE if k in up}, owner[1]
            )

    def _selected(self, t: TenantRuntime, name: str) -> bool:
        super_node = self.super_nodes.get("", name)
        return super_node is not None and nodes.selects(t.ctx.node_selector, super_node)

    async def _reconcile_node(self, t: TenantRuntime, name: str) -> None:
        if not t.nodes.synced.is_set() or not self.super_nodes.synced.is_set():
            self.queue.put_after(t.name, ("Node", "", name), 0.5)  # never act on a half-listed cache
            return
        vnode = t.nodes.get("", name)
        super_node = self.super_nodes.get("", name)
        if vnode is None and super_node is not None and self._selected(t, name):
            await podsync.ensure_vnode(t, super_node, name)  # a node of the tenant from the start
            return
        if vnode is None or super_node is None:
            return
        want = nodes.status(super_node, t.ctx)
        if nodes.status_differs(want, vnode):
            await t.client.patch(r.NODES, name, {"status": want}, subresource="status")
        if patch := nodes.label_patch(super_node, vnode, t.ctx):
            await t.client.patch(r.NODES, name, patch)

    # --- workers and loops -------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            tenant, key = await self.queue.get()
            t = self.tenants.get(tenant)
            t0 = time.perf_counter()
            try:
                if t is not None:
                    await self.reconcile(t, key)
                self._failures.pop((tenant, key), None)
                self._told.discard((tenant, key))
            except ApiError as e:
                if t is not None and e.status in REJECTED_STATUSES and (tenant, key) not in self._told:
                    try:
                        await self._rejected(t, key, e)
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
                await self.queue.done(tenant, key)

    async def _rejected(self, t: TenantRuntime, key: WorkKey, err: ApiError) -> None:
        """Tell the tenant, once per failure streak, that the super cluster refused its object."""
        kind_name, ns, name = key
        inf = t.informers.get(kind_name)
        tobj = inf.get(ns, name) if inf else None
        if tobj is None:
            return
        message = f"the super cluster refused {kind_name} {ns + '/' if ns else ''}{name}: {err.message}"
        await podsync.tenant_event(t, tobj, "Warning", "SyncRejected", message)
        if kind_name == "Pod":
            await podsync.set_condition(
                t, tobj, pods.synced_condition(False, "SyncRejected", message, nodes.seconds_now())
            )

    def _fail(self, tenant: str, key: WorkKey, reason: str, err: Exception, *, retry: bool) -> None:
        self.metrics.errors.labels(tenant, key[0], reason).inc()
        n = self._failures.get((tenant, key), 0) + 1
        self._failures[(tenant, key)] = n
        delay = min(60.0, 0.05 * 2**n)
        level = logging.DEBUG if n < 4 else logging.WARNING
        log.log(
            level,
            "sync %s %s/%s failed (%s)%s",
            key[0],
            key[1],
            key[2],
            err,
            f"; retry in {delay:.2f}s" if retry else "",
            extra={"tenant": tenant, "kind": key[0]},
        )
        if retry and tenant in self.tenants:
            self.queue.put_after(tenant, key, delay)

    async def _node_loop(self) -> None:
        """Renew every virtual node's Lease; remove nodes no tenant pod uses any more."""
        while True:
            for t in list(self.tenants.values()):
                if not t.nodes.synced.is_set():
                    continue
                now = leases.micro_now()
                for key in list(t.nodes.cache):
                    name = key[1]
                    if self.tenants.get(t.name) is not t:
                        break  # no longer served (its client is closed)
                    try:
                        if t.pods_on(name) == 0 and not self._selected(t, name):
                            idle = t.vnode_idle_since.setdefault(name, time.monotonic())
                            if time.monotonic() - idle > VNODE_GRACE:
                                await t.client.delete(r.NODES, name)
                                t.vnode_idle_since.pop(name, None)
                                continue
                        else:
                            t.vnode_idle_since.pop(name, None)
                        await self._renew_lease(t, name, now)
                    except Exception as e:  # noqa: BLE001 - one tenant's trouble must not stop the others' leases
                        log.warning("virtual node %s: %s", name, e, extra={"tenant": t.name})
            for tenant in self.queue.tenants():
                self.metrics.depth.labels(tenant).set(self.queue.depth(tenant))
            await asyncio.sleep(NODE_PERIOD)

    async def _renew_lease(self, t: TenantRuntime, name: str, now: str) -> None:
        try:
            await t.client.patch(
                r.LEASES,
                name,
                {
                    "spec": {
                        "renewTime": now,
                        "holderIdentity": name,
                        "leaseDurationSeconds": nodes.LEASE_SECONDS,
                    }
                },
                "kube-node-lease",
            )
        except ApiError as e:
            if e.status != 404:
                raise
            await t.client.create(r.LEASES, nodes.lease(name, now), "kube-node-lease")

    def patrol(self) -> dict[str, Any]:
        """One full drift check of every tenant, and of pod tokens due for renewal; the repairs go
        through the queue."""
        t0 = time.perf_counter()
        verified: patroller.Verified = {}
        queued = patroller.patrol(
            list(self.tenants.values()),
            self.super_informers,
            self._enqueue,
            lambda tenant, what, n: self.metrics.drift.labels(tenant, what).inc(n),
            self._verified,
            verified,
        )
        self._verified = verified
        queued += self._tokens_due()
        seconds = time.perf_counter() - t0
        self.metrics.patrol_seconds.set(seconds)
        return {"queued": queued, "seconds": round(seconds, 4)}

    async def _shard_loop(self, shard: Shard) -> None:
        """Heartbeat; serve the tenants that hash to this replica, hand back the others.

        A replica that cannot renew a tenant's Lease in time stops serving it, as a leader that
        cannot renew stops leading: by then another replica may own it.
        """
        renewed: dict[str, float] = {}
        while True:
            try:
                await shard.heartbeat()
                for name in list(self.tenants):
                    if shard.mine(name) and await shard.acquire(name):
                        renewed[name] = time.monotonic()
                    else:
                        async with self._vc_lock:
                            await self._stop_serving(name)
                for name in self._unserved():
                    if shard.mine(name):
                        await self._reconcile_vc(name)
            except (ApiError, OSError, TimeoutError) as e:
                log.warning("shard heartbeat failed: %s", e)
            for name in list(self.tenants):
                since = time.monotonic() - renewed.setdefault(name, time.monotonic())
                if since > shard.duration * 2 / 3:
                    async with self._vc_lock:
                        await self._stop_serving(name)
            for name in [n for n in renewed if n not in self.tenants]:
                del renewed[name]
            await asyncio.sleep(shard.renew_period)

    async def _serve_loop(self) -> None:
        """Without shards: serve Running VirtualClusters whose first connect failed."""
        while True:
            await asyncio.sleep(SERVE_PERIOD)
            for name in self._unserved():
                await self._reconcile_vc(name)

    async def _patrol_loop(self) -> None:
        while True:
            await asyncio.sleep(self.patrol_period)
            result = self.patrol()
            if result["queued"]:
                log.info("patrol queued %d drifted keys in %.3fs", result["queued"], result["seconds"])

    def status(self) -> dict[str, Any]:
        return {
            "tenants": {
                name: {
                    "root": t.ctx.root,
                    "queue": self.queue.depth(name),
                    "synced": all(i.synced.is_set() for i in t.informers.values()),
                    **self.queue.shares(name),
                }
                for name, t in self.tenants.items()
            },
            "queue": self.queue.depth(),
            "shard": None
            if self.shard is None
            else {"identity": self.shard.identity, "members": sorted(self.shard.members)},
        }

    def super_side(self) -> list[Informer]:
        return [
            *self.super_informers.values(),
            *self.super_public.values(),
            self.super_nodes,
            self.super_events,
            self.token_secrets,
            self.super_pvs,
            self.vcs,
            self.super_quotas,
        ]

    def informers(self) -> Iterator[Informer]:
        yield from self.super_side()
        for t in list(self.tenants.values()):
            yield from t.all_informers()

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
        spawn = [(f"informer:{i.name}", i.run()) for i in self.super_side()]
        spawn += [
            ("node-loop", self._forever("node-loop", self._node_loop)),
            ("patrol", self._forever("patrol", self._patrol_loop)),
        ]
        spawn += [(f"worker-{n}", self._forever(f"worker-{n}", self._worker)) for n in range(self.workers)]
        if self.shard is not None:
            shard = self.shard
            spawn.append(("shard", self._forever("shard", lambda: self._shard_loop(shard))))
        else:
            spawn.append(("serve", self._forever("serve", self._serve_loop)))
        self._tasks = [asyncio.create_task(coro, name=name) for name, coro in spawn]
        try:
            await stop.wait()
        finally:
            await self.queue.close()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for name in list(self.tenants):
                with contextlib.suppress(ApiError, OSError, TimeoutError):
                    await self._stop_serving(name)
            if self.shard is not None:
                await self.shard.leave()


def _running(vc: dict[str, Any] | None) -> bool:
    return vc is not None and (vc.get("status") or {}).get("phase") == api.Phase.RUNNING


def _age(obj: dict[str, Any]) -> float:
    """Seconds since the object was created."""
    created = datetime.datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.UTC) - created).total_seconds()
