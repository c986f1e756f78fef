"""Composition root of vn_agent: serving certificate, the Server, signals."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tispace import aio, logs, pki
from vn_agent.egress import Egress
from vn_agent.server import Server, kubelet_tls
from vn_agent.settings import Settings


def serving_cert(state_dir: Path) -> tuple[Path, Path]:
    """A self-issued serving certificate, made once (tenant API servers do not verify kubelets by default)."""
    d = state_dir / "vn-agent"
    cert, key = d / "tls.crt", d / "tls.key"
    if not cert.exists():
        d.mkdir(parents=True, exist_ok=True)
        ca = pki.new_ca("tispace-vn-agent-ca")
        leaf = pki.issue(ca, "vn-agent", hosts=("127.0.0.1", "localhost"), server=True)
        key.write_bytes(leaf.key_pem)
        key.chmod(0o600)
        cert.write_bytes(leaf.cert_pem + ca.cert_pem)
    return cert, key


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cert, key = serving_cert(settings.state_dir)
    direct = (
        kubelet_tls(settings.kubelet_client_cert, settings.kubelet_client_key, settings.kubelet_ca)
        if settings.direct
        else None
    )
    server = Server(
        settings.super_kubeconfig,
        port=settings.port,
        tls_cert=cert,
        tls_key=key,
        direct=direct,
        node_name=settings.node_name,
        listen_host=settings.listen_host,
    )
    egress = (
        await asyncio.start_unix_server(Egress(settings.port).handle, settings.egress_socket)
        if settings.egress_socket
        else None
    )
    try:
        await server.run(stop)
    finally:
        if egress is not None:
            egress.close()
            await egress.wait_closed()


def main(settings: Settings, verbose: bool = False) -> None:
    logs.setup(verbose)
    aio.run(run(settings))
