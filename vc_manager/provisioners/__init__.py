"""How a tenant control plane runs: one Protocol, implementations picked from a name table."""

from __future__ import annotations

from typing import Any, Protocol

from tispace.kube.client import Client
from tispace.tenantpki import TenantPKI
from vc_manager.settings import Settings
from vc_manager.tenant import Tenant


class ProvisionError(RuntimeError):
    """The control plane cannot be made to run; the message is shown on the VirtualCluster."""


class NotReadyYet(ProvisionError):
    """Started but not ready: the tenant stays Provisioning and the manager checks again later."""


class Provisioner(Protocol):
    async def provision(self, tenant: Tenant, tpki: TenantPKI) -> str:
        """Start (or adopt) the control plane; return its API server URL. Idempotent."""

    async def admin_kubeconfig(self, tenant: Tenant, tpki: TenantPKI, server: str) -> dict[str, Any]:
        """The kubeconfig published as the tenant's `admin-kubeconfig` secret."""

    def dns_endpoint(self, tenant: Tenant) -> str:
        """host:port of the tenant's DNS server as seen from the manager's host ('' when unknown)."""

    async def wait_ready(self, tenant: Tenant, server: str, timeout: float) -> None:
        """Return when the API server answers /readyz; ProvisionError otherwise."""

    async def supervise(self, tenant: Tenant, tpki: TenantPKI) -> str | None:
        """One supervision pass: restart what died. Returns a problem to report, or None."""

    async def teardown(self, tenant: Tenant) -> None:
        """Remove everything this provisioner made for the tenant. Idempotent."""


def make(name: str, *, settings: Settings, client: Client) -> Provisioner:
    from vc_manager.provisioners import imported, native, process

    table: dict[str, type[Provisioner]] = {
        "process": process.ProcessProvisioner,
        "native": native.NativeProvisioner,
        "import": imported.ImportProvisioner,
    }
    if name not in table:
        raise ProvisionError(f"unknown provisioner {name!r}; use one of {', '.join(table)}")
    return table[name](settings=settings, client=client)  # type: ignore[call-arg]
