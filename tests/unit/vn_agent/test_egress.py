"""vn_agent's egress proxy: tunnels to the virtual node address end at vn_agent, nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tispace.localnet import VIRTUAL_ADDRESS, egress_config
from vn_agent.egress import Egress


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(100))
    await writer.drain()
    writer.close()


async def _ask(socket: str, head: bytes, payload: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_unix_connection(socket)
    writer.write(head)
    first = await reader.readuntil(b"\r\n\r\n")
    if payload and first.startswith(b"HTTP/1.1 200"):
        writer.write(payload)
        await writer.drain()
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return first + rest


async def test_a_tunnel_to_the_virtual_node_reaches_vn_agent_and_nothing_else_does(tmp_path: Path) -> None:
    agent = await asyncio.start_server(_echo, "127.0.0.1", 0)
    agent_port = agent.sockets[0].getsockname()[1]
    port = str(tmp_path / "egress.sock")
    proxy = await asyncio.start_unix_server(Egress(agent_port).handle, port)
    try:
        ok = await _ask(port, f"CONNECT {VIRTUAL_ADDRESS}:{agent_port} HTTP/1.1\r\n\r\n".encode(), b"ping")
        assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"ping")
        other_port = await _ask(port, f"CONNECT {VIRTUAL_ADDRESS}:2379 HTTP/1.1\r\n\r\n".encode())
        assert other_port.startswith(b"HTTP/1.1 403")
        loopback = await _ask(port, f"CONNECT 127.0.0.1:{agent_port} HTTP/1.1\r\n\r\n".encode())
        assert loopback.startswith(b"HTTP/1.1 403")
        plain = await _ask(port, b"GET / HTTP/1.1\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 405")
    finally:
        proxy.close()
        agent.close()


def test_the_egress_configuration_sends_cluster_traffic_through_the_proxy() -> None:
    text = egress_config("/run/egress.sock")
    assert (
        "name: cluster" in text
        and "proxyProtocol: HTTPConnect" in text
        and "udsName: /run/egress.sock" in text
    )
