"""An HTTP CONNECT proxy for tenant API servers' egress to their nodes, for the local mode.

kube-apiserver refuses to proxy to loopback addresses (`nodes/<n>/proxy` checks that a node's
address is global unicast), and locally vn_agent listens on loopback. So virtual nodes advertise a
documentation address (`VIRTUAL_ADDRESS`, never routed) and tenant API servers send their
`cluster` egress (kubelet and node-proxy traffic) through this proxy (--egress-selector-config-file),
which ends a tunnel to that address at vn_agent on loopback: what a Konnectivity server does for
control planes that cannot reach their nodes. Any other destination is refused, so a tenant cannot
use its API server to reach other local ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tispace.localnet import VIRTUAL_ADDRESS
from vn_agent import translate
from vn_agent.server import read_head, response, splice

log = logging.getLogger("vn_agent.egress")


class Egress:
    def __init__(self, vn_agent_port: int, virtual_address: str = VIRTUAL_ADDRESS) -> None:
        self.allowed = f"{virtual_address}:{vn_agent_port}"
        self.vn_agent_port = vn_agent_port

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                req = await read_head(reader)
            except translate.BadRequest as e:
                writer.write(response(e.status, e.message.encode()))
                return
            if req.method != "CONNECT":
                writer.write(response(405, b"only CONNECT is served here"))
                return
            if req.target != self.allowed:
                log.warning("refused a tunnel to %s (only %s is a virtual node)", req.target, self.allowed)
                writer.write(response(403, f"no tunnel to {req.target}: only {self.allowed}".encode()))
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.vn_agent_port)
            except OSError as e:
                writer.write(response(502, f"vn_agent: {e}".encode()))
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await splice(reader, writer, up_reader, up_writer)
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            log.debug("tunnel ended: %s", e)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
