"""Composition root of vc_manager: settings in, one client, one Manager, kopf runs it."""

from __future__ import annotations

import asyncio
import logging

import kopf
from aiohttp import web

from tispace import aio, kubeconfig, leases, logs
from tispace.kube.client import Client
from vc_manager import handlers
from vc_manager.manager import Manager
from vc_manager.settings import Settings

log = logging.getLogger("vc_manager")
LEADER_LEASE = "vc-manager-leader"


class LostLeadership(RuntimeError):
    """Another replica leads now; exit, so the pod restarts as a follower."""


async def run(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    creds = kubeconfig.load(settings.super_kubeconfig)
    client = Client(creds, name="super")
    manager = Manager(settings, client)
    renewing: asyncio.Task[None] | None = None
    try:
        if settings.leader_namespace:
            identity = settings.identity or leases.default_identity()
            view = leases.LeaseView(client, settings.leader_namespace, identity, duration=15.0)
            labels = {"app.kubernetes.io/name": "vc-manager"}
            log.info("waiting to lead (Lease %s/%s) as %s", settings.leader_namespace, LEADER_LEASE, identity)
            standby = await _standby_health(settings)
            try:
                await leases.hold(view, LEADER_LEASE, labels)
            finally:
                if standby is not None:
                    await standby.cleanup()  # kopf serves the same port from now on
            log.info("leading as %s", identity)
            renewing = asyncio.create_task(leases.keep(view, LEADER_LEASE, labels), name="leader-lease")
            renewing.add_done_callback(lambda _: stop.set())
        await kopf.operator(
            registry=handlers.registry(manager, creds, settings.supervise_period),
            clusterwide=True,
            standalone=True,
            liveness_endpoint=f"http://{settings.listen_host}:{settings.health_port}/healthz"
            if settings.health_port
            else None,
            stop_flag=stop,
        )
        if renewing is not None and renewing.done():
            raise LostLeadership(f"lost the Lease {settings.leader_namespace}/{LEADER_LEASE}")
    finally:
        if renewing is not None:
            renewing.cancel()
        await client.close()


async def _standby_health(settings: Settings) -> web.AppRunner | None:
    """A follower is alive while it waits: answer the liveness probe until kopf takes the port."""
    if not settings.health_port:
        return None

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="standing by: another replica leads")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.listen_host, settings.health_port).start()
    return runner


def main(settings: Settings, verbose: bool = False) -> None:
    logs.setup(verbose)
    aio.run(run(settings))
