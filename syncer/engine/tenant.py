"""One tenant as the syncer holds it: its client, context, informers and virtual nodes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from syncer.engine.informer import Echo, Informer, Key, slim
from syncer.engine.model import SyncedKind, WorkKey
from syncer.resources import nodes, tokens
from syncer.resources.context import TenantContext
from syncer.settings import SyncerOptions
from tispace import kubeconfig, naming, tenantpki, tenants
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispace.kube.resources import Resource

log = logging.getLogger("syncer.tenant")


def context_for(vc: dict[str, Any], admin: dict[str, Any], opts: SyncerOptions) -> TenantContext:
    meta = vc["metadata"]
    server = urlsplit(kubeconfig.credentials(admin).server)
    base = TenantContext(
        root=naming.vc_root(vc),
        vc_name=meta["name"],
        vc_namespace=meta["namespace"],
        runtime_class=opts.runtime_class,
        dns_ip=opts.dns_ip,
        api_host=server.hostname or "kubernetes.default.svc",
        api_port=server.port or 443,
        vn_agent_host=opts.vn_agent_host,
        vn_agent_port=opts.vn_agent_port,
        default_storage_class=opts.default_storage_class,
        node_label_prefixes=opts.node_label_prefixes,
        scheduler_policy=opts.scheduler_policy,
    )
    return spec_context(base, vc, opts.node_selector)


def spec_context(
    ctx: TenantContext, vc: dict[str, Any], default_nodes: dict[str, Any] | None = None
) -> TenantContext:
    """The parts of a tenant's context its VirtualCluster spec sets, followed while it is served
    (`default_nodes`: the syncer's node selector where the spec sets none)."""
    spec = vc.get("spec") or {}
    return dataclasses.replace(
        ctx,
        cluster_domain=spec.get("clusterDomain") or "cluster.local",
        opaque_prefixes=tuple(spec.get("opaqueMetaPrefixes") or ()),
        transparent_prefixes=tuple(spec.get("transparentMetaPrefixes") or ()),
        opt_in=frozenset(spec.get("optInKinds") or ()),
        quota=quota_of(vc),
        node_selector=nodes.selector_of(spec.get("nodes"), default_nodes),
    )


def quota_of(vc: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """VirtualCluster spec.resourceQuota.hard, as sorted pairs (a context is frozen and compared)."""
    hard = ((vc.get("spec") or {}).get("resourceQuota") or {}).get("hard") or {}
    return tuple(sorted((k, str(v)) for k, v in hard.items()))


def weight_of(vc: dict[str, Any]) -> int:
    """The tenant's share of the workers under contention (VirtualCluster spec.syncWeight)."""
    return int((vc.get("spec") or {}).get("syncWeight") or 1)


def concurrency_of(vc: dict[str, Any], default: int = 0) -> int:
    """Most of the tenant's keys reconciled at once (VirtualCluster spec.syncConcurrency; 0: the default)."""
    return int((vc.get("spec") or {}).get("syncConcurrency") or default)


def rate_of(vc: dict[str, Any]) -> float:
    """Most of the tenant's keys reconciled per second (VirtualCluster spec.syncRate; 0: no limit)."""
    return float((vc.get("spec") or {}).get("syncRate") or 0)


PROBE_SECONDS = 86400
"""What the probe asks for: tokens up to a day (the kube-api-access token's) are signed by the syncer,
and an API server that signs less (--service-account-max-token-expiration) shows its cap. The probe's
token is dropped at once."""
PROBE_TIMEOUT = 10.0
"""Longest the probe may take: the tenant signs its pods' tokens when it does not answer in time."""
PROBE_ACCOUNT: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ServiceAccount",
    "metadata": {"name": "tispace-syncer", "namespace": "kube-system"},
    "automountServiceAccountToken": False,
}
"""The service account the probe's token is for: the syncer's own, so it exists however new the tenant."""


async def token_signer(super_client: Client, client: Client, root: str, name: str) -> tokens.Signer | None:
    """The tenant's service-account key from its PKI secret, when its API server signs with it (a
    control plane TiSpace made, not an imported cluster): the syncer then signs the pods' tokens itself
    and saves the tenant a TokenRequest per pod and per renewal. The probe is a TokenRequest for the
    syncer's own service account: the key must have signed it, and it gives the issuer, the default
    audiences and the longest lifetime the syncer's tokens may carry. None (the tenant signs) when any
    of it is missing, refused or late."""
    meta = PROBE_ACCOUNT["metadata"]
    probe = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": PROBE_SECONDS},
    }
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            secret = await super_client.get_or_none(r.SECRETS, tenantpki.SERVICE_ACCOUNT, root)
            pem = ((secret or {}).get("data") or {}).get("tls.key")
            if pem is None:
                log.info("tenant %s: no service-account key in %s, the tenant signs pod tokens", name, root)
                return None
            await client.ensure(r.SERVICEACCOUNTS, PROBE_ACCOUNT, meta["namespace"])
            path = r.SERVICEACCOUNTS.path(meta["namespace"], meta["name"], "token")
            answer = await client.request("POST", path, body=probe)
        signer = tokens.Signer.from_probe(base64.b64decode(pem), answer["status"]["token"], PROBE_SECONDS)
    except (ApiError, OSError, TimeoutError) as e:
        log.info("tenant %s: the token probe failed (%s), the tenant signs pod tokens", name, e)
        return None
    except (ValueError, KeyError, TypeError) as e:
        log.info("tenant %s: %s; the tenant signs pod tokens", name, e)
        return None
    log.info("tenant %s: its API server signs with the key in its PKI (issuer %s)", name, signer.issuer)
    return signer


TOKEN_ADMISSION = (r.MUTATINGWEBHOOKS, r.VALIDATINGWEBHOOKS, r.MUTATINGPOLICIES, r.VALIDATINGPOLICIES)
"""What in a tenant may act on a TokenRequest (tokens.intercepts). While any of it does, the tenant's API
server signs the pods' tokens, so its webhooks and policies see each TokenRequest as upstream's would."""


NEWER_ADMISSION = (r.MUTATINGPOLICIES, r.VALIDATINGPOLICIES)
"""Those an older tenant API server may not serve as v1: MutatingAdmissionPolicy is v1 since Kubernetes
v1.36 (v1beta1 in v1.34 and v1.35, off unless turned on), ValidatingAdmissionPolicy since v1.30."""


async def admission_kind_absent(client: Client, res: Resource) -> bool:
    """Whether the API server serves `res` (not served as v1) in no version of its group either, so
    that none can exist. False when it does, or when it cannot tell: the tenant signs meanwhile."""
    try:
        try:
            group = await client.request("GET", f"/apis/{res.group}")
        except ApiError as e:
            if e.status == 404:
                return True  # the group itself is not served
            raise
        for version in group.get("versions") or ():
            if version.get("version") == res.version:
                continue
            listed = await client.request("GET", f"/apis/{version['groupVersion']}")
            if any(found.get("name") == res.plural for found in listed.get("resources") or ()):
                return False
    except (ApiError, OSError, TimeoutError, KeyError) as e:
        log.info("the versions serving %s are not known (%s): the tenant signs pod tokens", res.plural, e)
        return False
    return True


def _interceptor(obj: dict[str, Any]) -> dict[str, Any] | None:
    """What an admission cache keeps: only what acts on TokenRequests, which is seldom anything."""
    return slim(obj) if tokens.intercepts(obj) else None


def rollout(vc: dict[str, Any]) -> tuple[Any, Any]:
    """The VirtualCluster's (generation, observedGeneration): the manager applies a spec change (a
    cluster domain is the issuer's) to the control plane, then reports the generation observed."""
    return vc["metadata"].get("generation"), (vc.get("status") or {}).get("observedGeneration")


def bound_node(pod: dict[str, Any]) -> str | None:
    return (pod.get("spec") or {}).get("nodeName") or None


class TenantRuntime:
    """Informers of one tenant feeding the shared queue; stopping it touches nothing in the super cluster."""

    def __init__(
        self,
        name: str,
        ctx: TenantContext,
        client: Client,
        weight: int,
        enqueue: Callable[[str, WorkKey], None],
        kinds: Iterable[SyncedKind],
        echo: Echo | None = None,
        token_admission: Iterable[Resource] = (),
    ) -> None:
        self.name = name
        self.ctx = ctx
        self.client = client
        self.weight = weight
        self._enqueue = enqueue
        self.informers: dict[str, Informer] = {
            kind.name: Informer(
                client,
                kind.resource,
                self._on_change(kind.name),
                label_selector=kind.tenant_selector,
                name=f"{name}/{kind.name}",
                echo=echo,
                index=bound_node if kind.name == "Pod" else None,
            )
            for kind in kinds
            if kind.tenant_watched
        }
        self.token_admission = [
            Informer(
                client,
                res,
                self._token_admission_changed,
                name=f"{name}/{res.kind}",
                keep=_interceptor,
                unserved=functools.partial(admission_kind_absent, client, res)
                if res in NEWER_ADMISSION
                else None,
                on_listed=self._apply_signer,
            )
            for res in token_admission
        ]
        """Caches of what acts on TokenRequests (TOKEN_ADMISSION), each empty in most tenants."""
        self.probed: tokens.Signer | None = None
        """The probe's signer (sign_tokens): ctx.token_signer while nothing acts on TokenRequests."""
        self.said = ""
        """Who signs pod tokens and why, as last logged."""
        self.vnode_idle_since: dict[str, float] = {}
        self.lease_renewed: dict[str, float] = {}
        """When each virtual node's Lease was last renewed (time.monotonic): by this process, or
        as read from the Lease (vnodes.read_renewals)."""
        self.renewals_read = False
        """Whether the Leases' renewal times were read (once, in the first node round)."""
        self.signed_for: tuple[Any, Any] = (None, None)
        """The VirtualCluster's rollout (generation, observedGeneration) the token signer was probed for."""
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def connect(
        cls,
        vc: dict[str, Any],
        super_client: Client,
        opts: SyncerOptions,
        enqueue: Callable[[str, WorkKey], None],
        kinds: Iterable[SyncedKind],
        echo: Echo | None = None,
    ) -> TenantRuntime:
        meta = vc["metadata"]
        admin = await tenants.admin_kubeconfig_of(super_client, vc)
        name = f"{meta['namespace']}/{meta['name']}"
        client = Client(kubeconfig.credentials(admin), name=name)
        admission = TOKEN_ADMISSION if opts.sign_tokens else ()
        return cls(name, context_for(vc, admin, opts), client, weight_of(vc), enqueue, kinds, echo, admission)

    async def sign_tokens(self, super_client: Client, vc: dict[str, Any], enabled: bool) -> None:
        """Sign the pods' tokens here when `enabled` and the tenant's key allows it (token_signer):
        probed before `start`, and again whenever the manager has rolled out a spec change; while it
        rolls one out, the tenant signs."""
        self.signed_for = rollout(vc)
        generation, observed = self.signed_for
        self.probed, self.said = None, ""
        if enabled and generation == observed:
            self.probed = await token_signer(super_client, self.client, self.ctx.root, self.name)
            for inf in self.token_admission:
                inf.relist()  # what a rollout's new API server version serves, asked again now
        self._apply_signer()

    def _token_admission_changed(
        self, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        self._apply_signer()

    def _apply_signer(self) -> None:
        """ctx.token_signer: the probe's, once the admission caches have listed and while they hold
        nothing that acts on TokenRequests; else None (the tenant signs)."""
        acting = [f"{i.resource.kind} {name}" for i in self.token_admission for _, name in i.cache]
        listed = all(i.synced.is_set() for i in self.token_admission)
        signer = self.probed if listed and not acting else None
        if self.probed is not None and (acting or listed):
            said = f"{', '.join(acting)} act on TokenRequests: the tenant" if acting else "the syncer"
            if said != self.said:
                log.info("tenant %s: %s signs pod tokens", self.name, said, extra={"tenant": self.name})
                self.said = said
        if signer is not self.ctx.token_signer:
            self.ctx = dataclasses.replace(self.ctx, token_signer=signer)

    def _on_change(self, kind: str) -> Callable[[Key, dict[str, Any] | None, dict[str, Any] | None], None]:
        def changed(key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
            self.enqueue((kind, key[0], key[1]))

        return changed

    def enqueue(self, key: WorkKey) -> None:
        """Queue one of the tenant's keys for a reconcile."""
        self._enqueue(self.name, key)

    def start(self) -> None:
        for inf in [*self.informers.values(), *self.token_admission]:
            self._tasks.append(asyncio.create_task(inf.run(), name=f"informer:{inf.name}"))

    async def synced(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in self.informers.values()))

    def pods_per_node(self) -> Mapping[str, int]:
        """Pods bound to each virtual node, counted by the pod cache as pods come and go: parsing every
        cached pod for it in each node round was 12% of an idle syncer at 20 x 250."""
        return self.informers["Pod"].cache.counts

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.client.close()
