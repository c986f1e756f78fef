"""What the portal is told at start: its provider, its limits, where it creates things."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Quota:
    """Per-owner limits, enforced by the server whatever a form says."""

    clusters: int = 2
    instance_cpu: float = 16
    """Cores summed over the owner's dev instances in all their clusters."""
    instance_memory_gib: int = 64
    instance_disk_gib: int = 500


@dataclass(frozen=True)
class Settings:
    super_kubeconfig: Path
    issuer: str
    """OIDC issuer URL; its /.well-known/openid-configuration names every endpoint."""
    client_id: str
    client_secret: str
    public_url: str
    """Where browsers reach the portal; the provider redirects to `<public_url>/auth/callback`."""
    session_secret: bytes
    """A Fernet key: sessions survive restarts and replicas only when it is shared."""
    port: int = 8080
    listen_host: str = "127.0.0.1"
    namespace: str = "tispace-portal"
    """Namespace of the VirtualClusters the portal creates."""
    owner_claim: str = "email"
    groups_claim: str = "groups"
    admin_group: str = "tispace-admins"
    allowed_groups: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    """Who may log in at all (any of these groups or email domains); both empty: anyone the provider
    authenticates."""
    session_hours: float = 12
    quota: Quota = Quota()
    instance_image: str = "tispace-devbox:latest"
    instance_runtime_class: str = "kata"
    instance_storage_class: str = "rook-ceph-block"
    ca_file: Path | None = None
    """Extra CA bundle to trust for the provider (a company CA)."""

    @property
    def secure_cookies(self) -> bool:
        """Cookies only over TLS when browsers reach the portal over TLS."""
        return self.public_url.startswith("https://")
