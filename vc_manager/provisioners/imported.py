"""`import`: adopt an existing cluster from a kubeconfig secret next to the VirtualCluster.

Nothing is started or stopped; the manager only checks the cluster answers and publishes
its kubeconfig as the tenant's `admin-kubeconfig`, so the syncer serves it like any tenant.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import yaml

from tispace import aio, kubeconfig
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispace.tenantpki import TenantPKI
from vc_manager.provisioners import ProvisionError
from vc_manager.settings import Settings
from vc_manager.tenant import Tenant

KEY = "kubeconfig"


@dataclass
class ImportProvisioner:
    settings: Settings
    client: Client

    async def _config(self, tenant: Tenant) -> dict[str, Any]:
        name = tenant.spec.get("importKubeconfigSecret", "")
        secret = await self.client.get_or_none(r.SECRETS, name, tenant.namespace)
        if secret is None or KEY not in (secret.get("data") or {}):
            raise ProvisionError(f"secret {tenant.namespace}/{name} with key {KEY!r} not found")
        config: dict[str, Any] = yaml.safe_load(base64.b64decode(secret["data"][KEY]))
        return config

    async def provision(self, tenant: Tenant, tpki: TenantPKI) -> str:
        return kubeconfig.credentials(await self._config(tenant)).server

    async def admin_kubeconfig(self, tenant: Tenant, tpki: TenantPKI, server: str) -> dict[str, Any]:
        return await self._config(tenant)

    async def _ready(self, tenant: Tenant) -> str | None:
        try:
            async with Client(kubeconfig.credentials(await self._config(tenant)), attempts=1) as c:
                await c.request("GET", "/readyz", timeout=5)
        except (TimeoutError, ApiError, OSError, ValueError) as e:
            return f"imported cluster not ready: {e}"
        return None

    async def wait_ready(self, tenant: Tenant, server: str, timeout: float) -> None:
        problem: str | None = None

        async def ready() -> bool:
            nonlocal problem
            problem = await self._ready(tenant)
            return problem is None

        try:
            await aio.poll(ready, timeout=timeout, interval=1, what="the imported cluster ready")
        except TimeoutError:
            raise ProvisionError(str(problem)) from None  # the last answer says why

    async def supervise(self, tenant: Tenant, tpki: TenantPKI) -> str | None:
        return await self._ready(tenant)

    def dns_endpoint(self, tenant: Tenant) -> str:
        """An imported cluster brings its own DNS."""
        return ""

    async def teardown(self, tenant: Tenant) -> None:
        """An imported cluster is not ours to stop."""
