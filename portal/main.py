"""Composition root of the portal: settings in, one super-cluster client, the web app served."""

from __future__ import annotations

import logging

from aiohttp import web

from portal import web as pages
from portal.settings import Settings
from tispace import logs
from tispace.kube import resources as r
from tispace.kube.client import Client

log = logging.getLogger("tispace.portal")


async def make_app(settings: Settings) -> web.Application:
    client = Client.from_kubeconfig(settings.super_kubeconfig, name="super")
    if await client.get_or_none(r.NAMESPACES, settings.namespace) is None:
        await client.close()
        raise SystemExit(
            f"namespace {settings.namespace!r} does not exist in the super cluster: "
            "create it (`tispace install` and `tispace up` do) or pass --namespace"
        )
    application = pages.app(settings, client)

    async def close(_: web.Application) -> None:
        await client.close()

    application.on_cleanup.append(close)
    log.info("portal at %s, identity provider %s", settings.public_url, settings.issuer)
    return application


def main(settings: Settings, *, verbose: bool = False) -> None:
    logs.setup(verbose)
    web.run_app(make_app(settings), host=settings.listen_host, port=settings.port, print=None)
