"""kopf glue: which VirtualCluster events call which Manager method. No logic lives here."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from tispace import kubeconfig
from tispace.naming import GROUP
from vc_manager.manager import Manager, TenantError

VC = (GROUP, "v1alpha1", "virtualclusters")


def _poster(body: kopf.Body) -> Any:
    def post(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    return post


def _kopf_error(e: TenantError) -> Exception:
    return kopf.TemporaryError(e.message, delay=10) if e.retry else kopf.PermanentError(e.message)


def registry(
    manager: Manager, creds: kubeconfig.Credentials, supervise_period: float
) -> kopf.OperatorRegistry:
    """A registry bound to one Manager (no module-level state, no import-time registration)."""
    reg = kopf.OperatorRegistry()

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=f"progress.{GROUP}")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=f"progress.{GROUP}", key="last-handled-configuration"
        )
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60

    @kopf.on.login(registry=reg)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=creds.server,
            ca_data=creds.ca_pem,
            certificate_data=creds.cert_pem,
            private_key_data=creds.key_pem,
            token=creds.token or None,
        )

    @kopf.on.resume(*VC, registry=reg)
    @kopf.on.create(*VC, registry=reg)
    @kopf.on.update(*VC, field="spec", registry=reg)
    async def reconcile(body: kopf.Body, **_: Any) -> None:
        try:
            await manager.reconcile(dict(body), _poster(body))
        except TenantError as e:
            raise _kopf_error(e) from e

    @kopf.on.delete(*VC, registry=reg)
    async def delete(body: kopf.Body, **_: Any) -> None:
        try:
            await manager.delete(dict(body), _poster(body))
        except TenantError as e:
            raise _kopf_error(e) from e

    @kopf.daemon(*VC, registry=reg, cancellation_timeout=10)
    async def supervise(
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **_: Any,
    ) -> None:
        while not stopped:
            try:
                await manager.supervise(dict(body), _poster(body))
            except TenantError as e:
                logger.debug("supervision skipped: %s", e.message)
            await stopped.wait(supervise_period)

    return reg
