"""Settings of vn_agent, loaded once by its composition root (main) and passed explicitly.

Each default is written here once; the CLI's `tispace vn-agent` options read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    super_kubeconfig: Path
    """Credentials used to reach pod subresources in the super cluster."""
    state_dir: Path
    """Where the agent keeps its serving certificate."""
    port: int = 10250
    """Port every virtual node advertises as its kubelet endpoint."""
    listen_host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 as a DaemonSet on super nodes)."""
    egress_socket: str = ""
    """Local mode: Unix socket of the CONNECT proxy tenant API servers reach virtual nodes through
    (vn_agent/egress.py); empty: none."""
    direct: bool = False
    """Reach super kubelets directly instead of through the super API server's pod subresources."""
    kubelet_client_cert: Path | None = None
    kubelet_client_key: Path | None = None
    kubelet_ca: Path | None = None
    node_name: str = ""
    """The one super node this agent serves (run as a DaemonSet); empty: every node."""
