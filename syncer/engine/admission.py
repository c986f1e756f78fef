"""The syncer's mutating webhook: tenant Services get their ClusterIP from the super cluster.

Each served tenant gets a MutatingWebhookConfiguration pointing here. On a Service CREATE
the super Service is made first (marked pending, since the tenant object has no uid yet)
and the tenant object is admitted with the super IPs, so no tenant Service is ever
recreated and no two tenants' Services share an IP. The reconcile loop adopts the pending
super Service once the tenant object exists, or deletes it if admission failed later on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from syncer.engine.tenant import TenantRuntime
from syncer.resources import services, simple
from tispace import naming, pki
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client

log = logging.getLogger("syncer.admission")
WEBHOOK_NAME = "tispace-host-first-clusterip"
ORPHAN_ATTEMPTS, ORPHAN_WAIT = 20, 0.25
"""Waiting for a deleted Service's super copy to go: 5 s, well inside the webhook's 10 s timeout."""


class TLS:
    """A serving certificate made at start-up; its CA goes into every tenant's webhook configuration."""

    def __init__(self, host: str) -> None:
        self.ca = pki.new_ca("tispace-syncer-webhook-ca", verified_per_request=False)
        leaf = pki.issue(self.ca, "tispace-syncer", hosts=(host, "localhost"), server=True)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        pki.load_into(self.context, leaf.cert_pem + self.ca.cert_pem, leaf.key_pem)


def webhook_configuration(url: str, ca_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_NAME, "labels": {naming.MANAGED_BY: naming.MANAGED_BY_VALUE}},
        "webhooks": [
            {
                "name": "clusterip.tenancy.x-k8s.io",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["services"],
                        "scope": "Namespaced",
                    }
                ],
                "admissionReviewVersions": ["v1"],
                "sideEffects": "NoneOnDryRun",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
            }
        ],
    }


def review(uid: str, *, patch: list[dict[str, Any]] | None = None, denied: ApiError | None = None) -> bytes:
    response: dict[str, Any] = {"uid": uid, "allowed": denied is None}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    if denied is not None:
        response["status"] = {"code": denied.status, "message": denied.message}
    return orjson.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    )


class Admission:
    def __init__(self, tenants: Mapping[str, TenantRuntime], super_client: Client) -> None:
        self.tenants = tenants
        """The tenants served (a request for another is refused: retry)."""
        self.super = super_client

    async def handle(self, request: web.Request) -> web.Response:
        req = (await request.json(loads=orjson.loads))["request"]
        tenant = f"{request.match_info['namespace']}/{request.match_info['name']}"
        t = self.tenants.get(tenant)
        obj = req.get("object") or {}
        obj.setdefault("metadata", {}).setdefault("namespace", req.get("namespace"))
        if t is None:
            err = ApiError(503, {"message": f"the TiSpace syncer does not serve {tenant} yet; retry"}, "", "")
            return _json(review(req["uid"], denied=err))
        if req.get("dryRun") or req.get("operation") != "CREATE" or not obj["metadata"].get("name"):
            return _json(review(req["uid"]))
        if services.is_tenant_apiserver_service(obj) or not services.needs_host_ip(obj):
            return _json(review(req["uid"]))
        try:
            super_svc = await self.allocate(t, obj, req["uid"])
        except ApiError as e:
            log.info(
                "service %s/%s refused: %s",
                obj["metadata"]["namespace"],
                obj["metadata"]["name"],
                e.message,
                extra={"tenant": t.name, "kind": "Service"},
            )
            why = ApiError(
                e.status, {"message": f"the super cluster refused this Service: {e.message}"}, "", ""
            )
            return _json(review(req["uid"], denied=why))
        return _json(review(req["uid"], patch=services.admission_patch(obj, super_svc)))

    async def allocate(self, t: TenantRuntime, obj: dict[str, Any], request_uid: str) -> dict[str, Any]:
        """The super Service for a tenant Service being admitted (made now, or by a retried request).

        A delete and create in quick succession (`kubectl replace --force`, helm `--force`) may find
        the deleted Service's super copy still there when the syncer is busy: it is removed here."""
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        await self._ensure_namespace(t, ns)
        desired = services.service_to_super(services.admission_object(obj, request_uid), t.ctx)
        sns = desired["metadata"]["namespace"]
        for _ in range(ORPHAN_ATTEMPTS):
            try:
                return await self.super.create(r.SERVICES, desired, sns)
            except ApiError as e:
                if e.status != 409:
                    raise
                existing = await self.super.get_or_none(r.SERVICES, name, sns)
                if existing is None:
                    continue  # gone in between
                owner = naming.tenant_key(existing)
                if owner is None or owner[0] != t.ctx.root:
                    raise
                if services.is_pending(existing):
                    return existing  # an earlier admission of the same create that did not finish
                if not await self._orphaned(t, existing, ns, name):
                    raise
                if not existing["metadata"].get("deletionTimestamp"):
                    await self.super.delete(r.SERVICES, name, sns, uid=existing["metadata"]["uid"])
                await asyncio.sleep(ORPHAN_WAIT)
        raise ApiError(
            409, {"message": f"the super copy of a deleted Service {ns}/{name} is still going; retry"}, "", ""
        )

    async def _orphaned(self, t: TenantRuntime, super_svc: dict[str, Any], ns: str, name: str) -> bool:
        """Whether a super Service belongs to a tenant Service that no longer exists (read live: the
        informer may not have seen the delete yet)."""
        tenant_svc = await t.client.get_or_none(r.SERVICES, name, ns)
        mirrored = (super_svc["metadata"].get("annotations") or {}).get(naming.ANN_UID)
        return tenant_svc is None or tenant_svc["metadata"]["uid"] != mirrored

    async def _ensure_namespace(self, t: TenantRuntime, ns: str) -> None:
        """The super namespace may not exist yet when a namespace and its Services come in one apply."""
        tenant_ns = t.informers["Namespace"].get("", ns) or await t.client.get(r.NAMESPACES, ns)
        await self.super.ensure(r.NAMESPACES, simple.namespace_to_super(tenant_ns, t.ctx))


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
