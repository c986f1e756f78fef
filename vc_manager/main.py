"""Composition root of vc_manager: settings in, one client, one Manager, kopf runs it."""

from __future__ import annotations

import asyncio

import kopf

from tispace import kubeconfig, logs
from tispace.kube.client import Client
from vc_manager import handlers
from vc_manager.manager import Manager
from vc_manager.settings import Settings


async def run(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    creds = kubeconfig.load(settings.super_kubeconfig)
    client = Client(creds, name="super")
    manager = Manager(settings, client)
    try:
        await kopf.operator(
            registry=handlers.registry(manager, creds, settings.supervise_period),
            clusterwide=True,
            standalone=True,
            liveness_endpoint=f"http://127.0.0.1:{settings.health_port}/healthz"
            if settings.health_port
            else None,
            stop_flag=stop,
        )
    finally:
        await client.close()


def main(settings: Settings, verbose: bool = False) -> None:
    logs.setup(verbose)
    asyncio.run(run(settings))
