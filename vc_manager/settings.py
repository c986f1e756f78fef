"""Settings of the manager, loaded once by its composition root and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    super_kubeconfig: Path
    """Credentials of the super cluster the manager watches and writes to."""
    state_dir: Path
    """Where the process provisioner keeps tenant PKI files, logs and pid registries."""
    etcd_servers: str = ""
    """Shared super etcd for tenants (`--etcd-prefix` per tenant); empty: each tenant runs its own etcd."""
    service_cidr: str = "10.96.0.0/16"
    """Default tenant service CIDR: the super cluster's, so a ClusterIP means the same on both sides."""
    ready_timeout: float = 120.0
    """How long a new control plane may take to answer /readyz before the tenant goes to Error."""
    health_port: int = 0
    """Port of the liveness endpoint (0: none)."""
    listen_host: str = "127.0.0.1"
    """Address of the liveness endpoint (0.0.0.0 in a pod, for the kubelet's probes)."""
    leader_namespace: str = ""
    """Namespace of the leader Lease when several replicas run (empty: this one always leads)."""
    identity: str = ""
    """This replica's name for leader election (default: host name and pid)."""
    egress_socket: str = ""
    """Unix socket of the HTTP CONNECT proxy tenant API servers reach their nodes through (process
    provisioner, local mode: vn_agent's egress socket); empty: they dial nodes directly."""
    supervise_period: float = 2.0
    """How often the process provisioner checks its processes."""
