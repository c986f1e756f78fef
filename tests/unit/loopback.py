"""A small aiohttp app on a free loopback port, for client-layer tests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from tispace import kubeconfig, pki


@asynccontextmanager
async def serving(app: web.Application, *, tls: bool = False) -> AsyncIterator[kubeconfig.Credentials]:
    """Serve `app` on 127.0.0.1 (over TLS with a fresh CA if asked) and yield credentials that
    reach it; stopped on exit."""
    context, ca_pem = None, b""
    if tls:
        ca = pki.new_ca("loopback-ca", days=1)
        server = pki.issue(ca, "loopback", hosts=("127.0.0.1",), server=True)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        pki.load_into(context, server.cert_pem, server.key_pem)
        ca_pem = ca.cert_pem
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield kubeconfig.Credentials(server=f"http{'s' if tls else ''}://127.0.0.1:{port}", ca_pem=ca_pem)
    finally:
        await runner.cleanup()
