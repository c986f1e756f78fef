"""Composition root of the syncer: one super client, the Syncer, and its HTTP endpoints."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from syncer.engine import admission
from syncer.engine.shard import Shard
from syncer.engine.syncer import Syncer
from syncer.settings import Settings
from tispace import aio, leases, logs
from tispace.kube.client import Client


def app(syncer: Syncer) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(syncer.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(_: web.Request) -> web.Response:
        return web.json_response(syncer.status())

    async def patrol(_: web.Request) -> web.Response:
        return web.json_response(syncer.patrol())

    a = web.Application()
    a.router.add_post("/patrol", patrol)
    a.router.add_get("/healthz", healthz)
    a.router.add_get("/metrics", metrics)
    a.router.add_get("/status", status)
    return a


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = Client.from_kubeconfig(settings.super_kubeconfig, name="super")
    shard = (
        Shard(
            client,
            settings.shard_namespace,
            settings.identity or leases.default_identity(),
            settings.lease_seconds,
        )
        if settings.shard_namespace
        else None
    )
    syncer = Syncer(
        client,
        settings.options,
        workers=settings.workers,
        patrol_period=settings.patrol_period,
        shard=shard,
        fair=settings.fair,
    )
    runner = web.AppRunner(app(syncer), access_log=None)
    await runner.setup()
    if settings.port:
        await web.TCPSite(runner, settings.listen_host, settings.port).start()
    tls = admission.TLS(settings.webhook_host)
    hooks = web.Application()
    hooks.router.add_post("/services/{namespace}/{name}", admission.Admission(syncer.tenants, client).handle)
    hook_runner = web.AppRunner(hooks, access_log=None)
    await hook_runner.setup()
    site = web.TCPSite(hook_runner, settings.webhook_host, settings.webhook_port, ssl_context=tls.context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the port 0 chose
    syncer.webhook = (f"https://{settings.webhook_host}:{port}", tls.ca.cert_pem)
    try:
        await syncer.run(stop)
    finally:
        await hook_runner.cleanup()
        await runner.cleanup()
        await client.close()


def main(settings: Settings, verbose: bool = False) -> None:
    """Run until SIGTERM/SIGINT (profile it from outside: `tispace bench --profile`, py-spy)."""
    logs.setup(verbose)
    aio.run(run(settings))
