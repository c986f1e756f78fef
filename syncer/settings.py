"""Settings of the syncer, loaded once by its composition root (main) and passed explicitly.

Each default is written here once; the CLI's `tispace syncer` options and every tenant's
TenantContext read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNTIME_CLASS = "kata"
"""RuntimeClass of every tenant pod in the super cluster."""
DNS_IP = "10.96.0.10"
"""Tenant pods' nameserver until the tenant's kube-dns Service is seen."""
VN_AGENT_PORT = 10250
"""Port virtual nodes advertise as their kubelet (vn_agent's own default; the programs share no code)."""
STORAGE_CLASS = "rook-ceph-block"
"""Super StorageClass of tenant claims that name none."""


@dataclass(frozen=True)
class SyncerOptions:
    """Per-deployment knobs that shape every tenant's context."""

    runtime_class: str = RUNTIME_CLASS
    dns_ip: str = DNS_IP
    vn_agent_host: str = "127.0.0.1"
    """Where virtual nodes' kubelet (vn_agent) is; empty: each super node's own InternalIP (DaemonSet)."""
    vn_agent_port: int = VN_AGENT_PORT
    scheduler_policy: dict[str, str] = field(default_factory=dict)
    node_label_prefixes: tuple[str, ...] = ()
    """Super node label prefixes copied to virtual nodes besides topology (e.g. a rack label)."""
    node_selector: dict[str, Any] | None = None
    """Nodes of tenants whose VirtualCluster does not say (spec.nodes): None on demand, {} all."""
    default_storage_class: str = STORAGE_CLASS
    """Super class for tenant claims without one."""
    sign_tokens: bool = True
    """Sign tenant pods' tokens with each tenant's key (syncer/resources/tokens.py) instead of a
    TokenRequest each. False: every tenant's API server signs them, and its audit log records each."""
    tenant_concurrency: int = 8
    """Default cap on one tenant's keys in flight (0: none); spec.syncConcurrency overrides it.
    Measured on 2 cores: a noisy tenant's quiet neighbours' p99 halves and total throughput rises."""


@dataclass(frozen=True)
class Settings:
    super_kubeconfig: Path
    """Credentials of the super cluster."""
    port: int = 0
    """Port of /healthz, /metrics and /status (0: none)."""
    listen_host: str = "127.0.0.1"
    """Their address (0.0.0.0 in a pod, for probes and Prometheus)."""
    workers: int = 50
    """Concurrent reconciles across all tenants."""
    patrol_period: float = 60.0
    """Seconds between full drift checks (POST /patrol runs one now)."""
    webhook_host: str = "127.0.0.1"
    """Address tenant API servers use to reach the admission webhook (host-first ClusterIPs)."""
    webhook_port: int = 0
    """Its TLS port (0: any free port)."""
    shard_namespace: str = ""
    """Namespace of the replicas' Leases; set it to run several replicas that split the tenants."""
    identity: str = ""
    """This replica's name among them (default: host name and pid)."""
    lease_seconds: float = 15.0
    """How long a dead replica's tenants wait before another replica takes them."""
    fair: bool = True
    """Fair queuing across tenants; False serves keys in arrival order (the benchmark's baseline)."""
    options: SyncerOptions = field(default_factory=SyncerOptions)
