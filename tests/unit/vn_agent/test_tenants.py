"""vn_agent's tenant CAs: learnt from a watch on VirtualClusters, not a poll."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tispace import naming, pki, tenantpki
from tispace.kube import resources as r
from vn_agent.server import Tenants


class FakeSuper:
    """VirtualClusters, their root-ca Secrets, and a watch fed by the test."""

    def __init__(self) -> None:
        self.vcs: dict[str, dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.lists = 0

    async def list(self, res: Any) -> dict[str, Any]:
        assert res is r.VIRTUALCLUSTERS
        self.lists += 1
        return {"metadata": {"resourceVersion": str(self.lists)}, "items": list(self.vcs.values())}

    async def get_or_none(self, res: Any, name: str, namespace: str) -> dict[str, Any] | None:
        return self.secrets.get((namespace, name))

    async def watch(self, res: Any, *, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.events.get()


def running_tenant(fake: FakeSuper, name: str) -> pki.CertKey:
    """A Running VirtualCluster with its root CA; returns the CA."""
    vc = {"metadata": {"name": name, "namespace": "team", "uid": f"uid-{name}", "resourceVersion": "9"}}
    vc["status"] = {"phase": "Running"}
    ca = pki.new_ca(f"{name}-ca", days=1)
    data = {k: base64.b64encode(v).decode() for k, v in (("tls.crt", ca.cert_pem), ("tls.key", ca.key_pem))}
    fake.secrets[(naming.vc_root(vc), tenantpki.ROOT_CA)] = {"data": data}
    fake.vcs[name] = vc
    fake.events.put_nowait({"type": "MODIFIED", "object": vc})
    return ca


def der(ck: pki.CertKey) -> bytes:
    return x509.load_pem_x509_certificate(ck.cert_pem).public_bytes(serialization.Encoding.DER)


async def test_a_tenant_turning_running_is_trusted_on_its_event() -> None:
    fake = FakeSuper()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tenants = Tenants(fake, tls)  # type: ignore[arg-type]
    follow = asyncio.create_task(tenants.follow())
    try:
        while fake.lists == 0:
            await asyncio.sleep(0)
        assert tls.get_ca_certs() == []
        ca = running_tenant(fake, "alice")
        apiserver = pki.issue(ca, "kube-apiserver-kubelet-client", client=True)
        async with asyncio.timeout(10):  # a bound for a stuck test, not a measurement
            while tenants.identify(der(apiserver)) is None:
                await asyncio.sleep(0)
        assert [c["subject"] for c in tls.get_ca_certs()] == [((("commonName", "alice-ca"),),)]
        assert fake.lists == 2  # one list for the event: nothing waited for a poll
        other = pki.issue(pki.new_ca("nobody"), "kube-apiserver-kubelet-client", client=True)
        assert tenants.identify(der(other)) is None
    finally:
        follow.cancel()
