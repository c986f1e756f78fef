"""A small aiohttp app on a free loopback port, for client-layer tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from tispace import kubeconfig


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[kubeconfig.Credentials]:
    """Serve `app` on 127.0.0.1 and yield credentials that reach it; stopped on exit."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield kubeconfig.Credentials(server=f"http://127.0.0.1:{port}", ca_pem=b"")
    finally:
        await runner.cleanup()
