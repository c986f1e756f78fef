"""What the manager does for one VirtualCluster, apart from how kopf calls it.

Reconcile: root namespace, PKI secrets, control plane (through a provisioner), admin
kubeconfig, readiness, status. Supervise: keep the control plane alive and the conditions
true. Delete: remove everything made for the tenant and nothing else.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from cachetools import TTLCache

from tispace import aio, api, kubeconfig, naming, pki, tenantpki
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispace.tenantpki import TenantPKI
from vc_manager import provisioners
from vc_manager.settings import Settings
from vc_manager.tenant import Tenant, now, set_condition

log = logging.getLogger("vc_manager")
PKI_RECHECK_SECONDS = 15.0
"""How stale the supervisor's view of a tenant's secrets and ClusterVersion may be."""


class TenantError(Exception):
    """Bad input or state the admin must fix; `retry` says whether waiting may help."""

    def __init__(self, reason: str, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry = retry


async def _controllers_working(config: dict[str, Any], timeout: float) -> None:
    """Running means usable: the tenant's controller-manager has made the `default` ServiceAccount
    (a pod created before it exists is refused, and a ReplicaSet refused backs off for minutes);
    kind waits for the same."""
    async with Client(kubeconfig.credentials(config), attempts=2) as tenant:

        async def made() -> bool:
            try:
                return await tenant.get_or_none(r.SERVICEACCOUNTS, "default", "default") is not None
            except (ApiError, OSError, TimeoutError):
                return False  # not answering yet: the same wait

        try:
            await aio.poll(
                made,
                timeout=timeout,
                what="the default ServiceAccount made by the tenant's controller-manager",
            )
        except TimeoutError as e:
            raise provisioners.NotReadyYet(str(e)) from None


class Manager:
    def __init__(self, settings: Settings, client: Client) -> None:
        self.settings = settings
        self.client = client
        self._provisioners: dict[str, provisioners.Provisioner] = {}
        # Supervision runs every few seconds per tenant; the secrets (one LIST) and the
        # ClusterVersion are re-read less often, so a thousand tenants do not hammer the API.
        self._pki_checked: TTLCache[str, tuple[dict[str, dict[str, Any]], TenantPKI]] = TTLCache(
            maxsize=100_000, ttl=PKI_RECHECK_SECONDS
        )
        self._versions: TTLCache[str, dict[str, Any] | None] = TTLCache(maxsize=1000, ttl=PKI_RECHECK_SECONDS)
        # Uids whose delete has begun. kopf only signals the supervise daemon to stop: a pass already
        # under way (working from its copy of the object) must not write Running over Terminating.
        self._deleting: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=600)

    def provisioner(self, tenant: Tenant) -> provisioners.Provisioner:
        name = tenant.provisioner
        if name not in self._provisioners:
            self._provisioners[name] = provisioners.make(name, settings=self.settings, client=self.client)
        return self._provisioners[name]

    # --- reading ----------------------------------------------------------------------------
    async def tenant(self, body: dict[str, Any], *, fresh: bool = True) -> Tenant:
        """The tenant a VirtualCluster describes; `fresh=False` may use a ClusterVersion read moments ago."""
        meta, spec = body["metadata"], body.get("spec", {})
        version_name = spec.get("clusterVersionName", "")
        cv = None if fresh else self._versions.get(version_name)
        if cv is None:
            cv = await self.client.get_or_none(r.CLUSTERVERSIONS, version_name)
            if cv is not None:
                self._versions[version_name] = cv
        tenant = Tenant(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            spec=spec,
            version=(cv or {}).get("spec", {}),
        )
        try:
            tenant.root  # noqa: B018 - validates the name length
        except naming.InvalidName as e:
            raise TenantError("InvalidName", str(e), retry=False) from e
        if cv is None:
            raise TenantError(
                "ClusterVersionNotFound",
                f"ClusterVersion {version_name!r} does not exist: create it or fix clusterVersionName",
                retry=True,
            )
        return tenant

    async def _secrets(self, tenant: Tenant) -> dict[str, dict[str, Any]]:
        """The tenant's PKI and kubeconfig secrets, in one LIST of its root namespace."""
        items = (await self.client.list(r.SECRETS, tenant.root))["items"]
        return {o["metadata"]["name"]: o for o in items if o["metadata"]["name"] in tenantpki.SECRET_NAMES}

    # --- status -----------------------------------------------------------------------------
    async def set_status(self, body: dict[str, Any], **fields: Any) -> None:
        meta = body["metadata"]
        await self.client.patch(
            r.VIRTUALCLUSTERS, meta["name"], {"status": fields}, meta["namespace"], subresource="status"
        )

    async def set_phase(
        self,
        body: dict[str, Any],
        phase: api.Phase,
        *,
        reason: str = "",
        message: str = "",
        ready: bool | None = None,
        cp_ready: bool | None = None,
        **extra: Any,
    ) -> None:
        conditions = list((body.get("status") or {}).get("conditions") or [])
        at = now()
        if cp_ready is not None:
            conditions = set_condition(
                conditions,
                "ControlPlaneReady",
                cp_ready,
                reason or phase.value,
                message or f"control plane {phase.value.lower()}",
                at,
            )
        if ready is not None:
            conditions = set_condition(
                conditions,
                "Ready",
                ready,
                reason or phase.value,
                message or f"tenant {phase.value.lower()}",
                at,
            )
        await self.set_status(
            body, phase=phase.value, reason=reason, message=message, conditions=conditions, **extra
        )
        body.setdefault("status", {})["conditions"] = conditions

    async def set_running(self, body: dict[str, Any], **extra: Any) -> None:
        await self.set_phase(
            body,
            api.Phase.RUNNING,
            reason="Running",
            message="control plane ready",
            ready=True,
            cp_ready=True,
            **extra,
        )

    # --- reconcile --------------------------------------------------------------------------
    async def ensure_root_namespace(self, tenant: Tenant) -> None:
        ns = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": tenant.root,
                "labels": {
                    tenantpki.LABEL_VC: tenant.name,
                    "tenancy.x-k8s.io/vcnamespace": tenant.namespace,
                    "tenancy.x-k8s.io/root": "true",
                },
                "annotations": {naming.ANN_UID: tenant.uid},
            },
        }
        if not await self.client.ensure(r.NAMESPACES, ns):
            existing = await self.client.get(r.NAMESPACES, tenant.root)
            if existing["metadata"].get("annotations", {}).get(naming.ANN_UID) != tenant.uid:
                raise TenantError(
                    "RootNamespaceTaken",
                    f"namespace {tenant.root} exists but was not made for this VirtualCluster",
                    retry=False,
                )
            if existing["metadata"].get("deletionTimestamp"):
                raise TenantError(
                    "RootNamespaceTerminating", f"namespace {tenant.root} is still terminating", retry=True
                )

    async def ensure_pki(self, tenant: Tenant, *, served: bool) -> TenantPKI:
        """The tenant's PKI from its secrets, made the first time (`served`: the tenant ever served)."""
        found = await self._secrets(tenant)
        if left := cut_short(found, served):
            log.info(
                "PKI secrets %s left by a write cut short: made anew",
                ", ".join(left),
                extra={
                    "tenant": f"{tenant.namespace}/{tenant.name}",
                    "kind": "Secret",
                    "object": tenant.root,
                },
            )
        for name in left:
            await self.client.delete(r.SECRETS, name, tenant.root)
            del found[name]
        if not any(n in found for n in PKI_NAMES):
            cidr = tenant.spec.get("serviceCidr") or self.settings.service_cidr
            hosts = apiserver_hosts(tenant, str(ipaddress.ip_network(cidr)[1]))
            tpki = await asyncio.to_thread(
                tenantpki.generate, tenant=tenant.root, hosts=hosts, days=tenant.pki_days
            )
            for name, data in tenantpki.secret_data(tpki).items():
                await self.client.create(
                    r.SECRETS, tenantpki.secret(name, tenant.root, data, tenant.name), tenant.root
                )
            return tpki
        return check_pki(tenant, found, datetime.datetime.now(datetime.UTC))

    async def ensure_admin_kubeconfig(self, tenant: Tenant, config: dict[str, Any]) -> None:
        data = tenantpki.admin_secret_data(config)
        existing = await self.client.get_or_none(r.SECRETS, tenantpki.ADMIN_KUBECONFIG, tenant.root)
        if existing is None:
            await self.client.create(
                r.SECRETS,
                tenantpki.secret(tenantpki.ADMIN_KUBECONFIG, tenant.root, data, tenant.name),
                tenant.root,
            )
            return
        server = config["clusters"][0]["cluster"]["server"]
        current = tenantpki.read_admin_kubeconfig(existing)["clusters"][0]["cluster"]["server"]
        if current != server:
            await self.client.patch(r.SECRETS, tenantpki.ADMIN_KUBECONFIG, {"data": data}, tenant.root)

    async def reconcile(self, body: dict[str, Any], post: Any) -> None:
        """Drive the tenant to Running. `post(type, reason, message)` records an Event."""
        try:
            tenant = await self.tenant(body)
        except TenantError as e:
            await self.set_phase(body, api.Phase.ERROR, reason=e.reason, message=e.message, ready=False)
            post("Warning", e.reason, e.message)
            raise
        phase = (body.get("status") or {}).get("phase")
        if phase != api.Phase.RUNNING:
            await self.set_phase(
                body,
                api.Phase.PROVISIONING,
                reason="Provisioning",
                message=f"provisioning with {tenant.provisioner}",
                ready=False,
                cp_ready=False,
                clusterNamespace=tenant.root,
            )
            post("Normal", "Provisioning", f"root namespace {tenant.root}, provisioner {tenant.provisioner}")
        prov = self.provisioner(tenant)
        try:
            await self.ensure_root_namespace(tenant)
            tpki = await self.ensure_pki(
                tenant, served=bool((body.get("status") or {}).get("apiServerEndpoint"))
            )
            post("Normal", "PKIReady", f"certificates valid until {tpki.expires():%Y-%m-%d}")
            server = await prov.provision(tenant, tpki)
            config = await prov.admin_kubeconfig(tenant, tpki, server)
            await self.ensure_admin_kubeconfig(tenant, config)
            post("Normal", "ControlPlaneStarted", f"API server at {server}; waiting for /readyz")
            await prov.wait_ready(tenant, server, self.settings.ready_timeout)
            await _controllers_working(config, self.settings.ready_timeout)
        except TenantError as e:
            await self.set_phase(body, api.Phase.ERROR, reason=e.reason, message=e.message, ready=False)
            post("Warning", e.reason, e.message)
            raise
        except provisioners.NotReadyYet as e:
            await self.set_phase(
                body,
                api.Phase.PROVISIONING,
                reason="ControlPlaneNotReady",
                message=str(e),
                ready=False,
                cp_ready=False,
            )
            raise TenantError("ControlPlaneNotReady", str(e), retry=True) from e
        except (provisioners.ProvisionError, ApiError) as e:
            await self.set_phase(
                body, api.Phase.ERROR, reason="ProvisionFailed", message=str(e), ready=False, cp_ready=False
            )
            post("Warning", "ProvisionFailed", str(e))
            raise TenantError("ProvisionFailed", str(e), retry=True) from e
        await self.set_running(
            body,
            clusterNamespace=tenant.root,
            apiServerEndpoint=server,
            dnsEndpoint=prov.dns_endpoint(tenant),
            observedGeneration=body["metadata"].get("generation"),
        )
        post("Normal", "Running", f"tenant ready; admin kubeconfig in secret {tenant.root}/admin-kubeconfig")

    async def supervise(self, body: dict[str, Any], post: Any) -> None:
        """One pass of the supervision loop for a Running tenant: secrets, then processes."""
        status = body.get("status") or {}
        if status.get("phase") != api.Phase.RUNNING or body["metadata"].get("deletionTimestamp"):
            return
        tenant = await self.tenant(body, fresh=False)
        cached = self._pki_checked.get(tenant.uid)
        found = cached[0] if cached else await self._secrets(tenant)
        if tenant.uid in self._deleting:
            return
        try:
            if cached:
                tpki = cached[1]
            else:  # re-read after the TTL: writing the entry only here lets it expire
                tpki = check_pki(tenant, found, datetime.datetime.now(datetime.UTC))
                self._pki_checked[tenant.uid] = (found, tpki)
        except TenantError as e:
            problem: str | None = e.message
            reason = e.reason
        else:
            prov = self.provisioner(tenant)
            if tenantpki.ADMIN_KUBECONFIG not in found and status.get("apiServerEndpoint"):
                config = await prov.admin_kubeconfig(tenant, tpki, status["apiServerEndpoint"])
                await self.ensure_admin_kubeconfig(tenant, config)
                self._pki_checked.pop(tenant.uid, None)
                post("Normal", "AdminKubeconfigRestored", f"recreated secret {tenant.root}/admin-kubeconfig")
            problem, reason = await prov.supervise(tenant, tpki), "ControlPlaneDegraded"
        cp: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c["type"] == "ControlPlaneReady"), {}
        )
        if tenant.uid in self._deleting:
            return
        if problem is None:
            if cp.get("status") != "True":
                await self.set_running(body)
                post("Normal", "Recovered", "control plane is healthy again")
        elif cp.get("status") != "False" or cp.get("reason") != reason or cp.get("message") != problem:
            await self.set_phase(
                body, api.Phase.RUNNING, reason=reason, message=problem, ready=False, cp_ready=False
            )
            post("Warning", reason, problem)

    async def delete(self, body: dict[str, Any], post: Any) -> None:
        meta = body["metadata"]
        self._deleting[meta["uid"]] = True
        with_tenant = True
        try:
            tenant = await self.tenant(body)
        except TenantError as e:
            if e.reason == "InvalidName":
                return  # nothing was ever made for it
            with_tenant = False
            tenant = Tenant(
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
                spec=body.get("spec", {}),
                version={},
            )
        await self.set_phase(
            body, api.Phase.TERMINATING, reason="Terminating", message="removing the tenant", ready=False
        )
        post("Normal", "Terminating", f"stopping the control plane and removing {tenant.root}")
        if with_tenant or tenant.provisioner == "process":
            await self.provisioner(tenant).teardown(tenant)
        # The control plane is gone, so nothing recreates them: the super namespaces the syncer
        # made for the tenant's namespaces go (with every pod, claim and service in them), then the root.
        synced = f"{naming.LABEL_TENANT}={tenant.root}"

        async def gone() -> bool:
            left = (await self.client.list(r.NAMESPACES, label_selector=synced))["items"]
            for ns in left:
                if not ns["metadata"].get("deletionTimestamp"):
                    await self.client.delete(r.NAMESPACES, ns["metadata"]["name"])
            root = await self.client.get_or_none(r.NAMESPACES, tenant.root)
            if root is not None and root["metadata"].get("annotations", {}).get(naming.ANN_UID) != tenant.uid:
                root = None  # a namespace of that name made for another object since
            if root is not None and not root["metadata"].get("deletionTimestamp"):
                await self.client.delete(r.NAMESPACES, tenant.root)
            return not left and root is None

        try:
            await aio.poll(gone, timeout=120, what=f"the namespaces of {tenant.root} gone")
        except TimeoutError as e:
            raise TenantError("NamespacesStuck", str(e), retry=True) from None


PKI_NAMES = tuple(n for n in tenantpki.SECRET_NAMES if n != tenantpki.ADMIN_KUBECONFIG)
"""The secrets that hold the tenant's PKI (the admin kubeconfig is derived from it)."""


def cut_short(found: Mapping[str, Any], served: bool) -> list[str]:
    """PKI secrets left by a first write cut short: they are written one by one, so a manager killed
    meanwhile leaves part of the set. Of a tenant that never served nothing used them: they go and
    the PKI is made anew. Part of the set of a tenant that served is a loss to restore (check_pki)."""
    have = [n for n in PKI_NAMES if n in found]
    return have if not served and 0 < len(have) < len(PKI_NAMES) else []


def check_pki(tenant: Tenant, found: dict[str, dict[str, Any]], at: datetime.datetime) -> TenantPKI:
    """The tenant PKI from its secrets, or a TenantError saying which are missing or that they expired."""
    missing = [n for n in PKI_NAMES if n not in found]
    if missing:
        raise TenantError(
            "PKIIncomplete",
            f"secrets {', '.join(missing)} are missing from {tenant.root}; the tenant CA cannot "
            "be rebuilt from what is left: restore them from a backup or recreate the VirtualCluster",
            retry=True,
        )
    try:
        tpki = tenantpki.from_secrets(found)
        expires = tpki.expires()
    except (KeyError, ValueError) as e:
        raise TenantError(
            "PKIInvalid",
            f"tenant secrets in {tenant.root} cannot be read ({type(e).__name__}: {e}); "
            "restore them from a backup or recreate the VirtualCluster",
            retry=True,
        ) from e
    if expires <= at:
        raise TenantError(
            "PKIExpired",
            f"tenant certificates expired at {expires:%Y-%m-%d %H:%M}Z; "
            "recreate the VirtualCluster (or raise pkiExpireDays)",
            retry=True,
        )
    return tpki


def apiserver_hosts(tenant: Tenant, service_ip: str) -> tuple[str, ...]:
    """Names a tenant API server answers to: local, in-cluster, and its service in the root namespace."""
    return pki.apiserver_hosts(
        service_ip=service_ip,
        cluster_domain=tenant.cluster_domain,
        extra=(f"apiserver.{tenant.root}", f"apiserver.{tenant.root}.svc"),
    )
