"""The vn_agent server: TLS with tenant client certificates, kubelet routes, spliced streams.

A tenant API server reaches a virtual node's kubelet here with the kubelet-client
certificate its tenant CA issued; the CA that signed it names the tenant. Logs, exec,
attach and port-forward are forwarded to the super API server's pod subresources by
rewriting the request head and splicing bytes both ways, so SPDY and WebSocket upgrades
and chunked log streams pass unchanged and nothing is buffered whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tispace import kubeconfig, naming, pki, tenantpki
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client, ssl_context
from vn_agent import metrics, translate

log = logging.getLogger("vn_agent")
MAX_HEAD = 64 * 1024
CA_RETRY = 5.0


@dataclass(frozen=True)
class TenantCA:
    name: str
    root: naming.RootNamespace
    ca_pem: bytes


class Tenants:
    """Which CA belongs to which tenant, refreshed from Running VirtualClusters and their root-ca secrets."""

    def __init__(self, client: Client, tls: ssl.SSLContext) -> None:
        self.client = client
        self.tls = tls
        self.by_root: dict[str, TenantCA] = {}
        self._loaded: set[bytes] = set()

    async def refresh(self) -> str:
        """Read the CAs of Running tenants; returns the list's resourceVersion (to watch from)."""
        found: dict[str, TenantCA] = {}
        listing = await self.client.list(r.VIRTUALCLUSTERS)
        for vc in listing["items"]:
            meta = vc["metadata"]
            if (vc.get("status") or {}).get("phase") != "Running":
                continue
            root = naming.vc_root(vc)
            if root in self.by_root:  # a tenant's CA lives as long as its uid: read it once
                found[root] = self.by_root[root]
                continue
            secret = await self.client.get_or_none(r.SECRETS, tenantpki.ROOT_CA, root)
            if secret is None:
                continue
            ca = tenantpki.ca_from_secret(secret).cert_pem
            found[root] = TenantCA(f"{meta['namespace']}/{meta['name']}", root, ca)
            if ca not in self._loaded:  # the TLS layer must trust it to see the client certificate at all
                self.tls.load_verify_locations(cadata=ca.decode())
                self._loaded.add(ca)
        self.by_root = found
        return str(listing["metadata"]["resourceVersion"])

    def identify(self, cert_der: bytes) -> TenantCA | None:
        """The tenant whose CA issued this (unexpired) certificate."""
        cert = x509.load_der_x509_certificate(cert_der)
        now = datetime.datetime.now(datetime.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return None
        pem = cert.public_bytes(serialization.Encoding.PEM)
        return next((t for t in self.by_root.values() if pki.signed_by(pem, t.ca_pem)), None)

    async def follow(self) -> None:
        """Trust a tenant's CA the moment its VirtualCluster turns Running: until the TLS layer holds
        it, the handshake refuses the tenant API server's certificate before any request is seen
        (`kubectl logs` on a new tenant said EOF for up to one poll). A watch, relisted on errors;
        each event relists too (VirtualCluster events are few, and a known tenant's CA is not read
        again), so a deleted or no longer Running tenant drops out the same way it does at start."""
        rv = ""
        while True:
            try:
                rv = rv or await self.refresh()
                async for event in self.client.watch(r.VIRTUALCLUSTERS, resource_version=rv):
                    if event.get("type") == "ERROR":
                        rv = ""  # expired: list again
                        break
                    rv = event["object"]["metadata"].get("resourceVersion", rv)
                    if event.get("type") != "BOOKMARK":
                        await self.refresh()
            except (ApiError, OSError, aiohttp.ClientError) as e:
                log.warning("watching tenants for their CAs: %s; again in %.0fs", e, CA_RETRY)
                rv = ""
                await asyncio.sleep(CA_RETRY)


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


async def read_head(reader: asyncio.StreamReader) -> Request:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as e:
        raise translate.BadRequest(431, "request head too large") from e
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise translate.BadRequest(400, "malformed request line")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise translate.BadRequest(400, "malformed header")
        headers.append((k.strip(), v.strip()))
    return Request(parts[0], parts[1], parts[2], headers)


PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
"""Node annotation metrics-server honours when a node's kubelet serves resource metrics elsewhere (KWOK)."""


def response(status: int, body: bytes, content_type: str = "text/plain") -> bytes:
    reason = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        500: "Internal Server Error",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
    }.get(status, "")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


# Headers a tenant must not pass to the super API server (identity is ours there).
_DROP = {
    "host",
    "authorization",
    "connection",
    "impersonate-user",
    "impersonate-group",
    "x-remote-user",
    "x-remote-group",
    "proxy-connection",
    "keep-alive",
}


def kubelet_tls(client_cert: Path | None, client_key: Path | None, ca: Path | None) -> ssl.SSLContext:
    """TLS towards super kubelets in direct mode. Like kube-apiserver without
    --kubelet-certificate-authority, serving certificates are not verified unless a CA is given."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert and client_key:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


def kubelet_address(node: dict[str, Any]) -> tuple[str, int]:
    """Where a super node's kubelet listens (InternalIP preferred, as kube-apiserver's default)."""
    addresses = {a["type"]: a["address"] for a in node["status"].get("addresses", [])}
    host = addresses.get("InternalIP") or addresses.get("Hostname", "")
    return host, int(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])


class Server:
    def __init__(
        self,
        super_kubeconfig: Path,
        *,
        port: int,
        tls_cert: Path,
        tls_key: Path,
        direct: ssl.SSLContext | None,
        node_name: str,
        listen_host: str,
    ) -> None:
        """`direct`: reach super kubelets straight (this TLS context) instead of the super API server.
        `node_name`: the one super node this agent speaks for (a DaemonSet pod); empty: every node."""
        self.node_name = node_name
        self.listen_host = listen_host
        self.creds = kubeconfig.load(super_kubeconfig)
        self.port = port
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(tls_cert, tls_key)
        self.tls.verify_mode = ssl.CERT_OPTIONAL
        self.super = Client(self.creds, name="super")
        self.tenants = Tenants(self.super, self.tls)
        self._upstream_tls = ssl_context(self.creds)
        self.direct = direct
        self._conns: set[asyncio.Task[Any]] = set()

    # --- connection handling -------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._conns.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            log.debug("connection ended: %s", e)
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task:
                self._conns.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await read_head(reader)
        except translate.BadRequest as e:
            writer.write(response(e.status, e.message.encode()))
            return
        if req.target == "/healthz":
            writer.write(response(200, b"ok"))
            return
        cert = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        if not cert:
            log.warning("refused %s %s: no client certificate", req.method, req.target)
            writer.write(response(401, b"a client certificate is required"))
            return
        tenant = self.tenants.identify(cert)
        if tenant is None:
            await self.tenants.refresh()
            tenant = self.tenants.identify(cert)
        if tenant is None:
            log.warning("refused %s %s: certificate of no served tenant (or expired)", req.method, req.target)
            writer.write(response(403, b"certificate not issued by a tenant CA this agent serves"))
            return
        path = req.target.split("?", 1)[0]
        if path in ("/pods", "/pods/"):
            writer.write(response(200, json.dumps(await self.pods(tenant)).encode(), "application/json"))
            return
        if path == "/stats/summary":
            writer.write(response(200, json.dumps(await self.summary(tenant)).encode(), "application/json"))
            return
        if path == "/metrics/resource":
            try:
                writer.write(response(200, await self.resource_metrics(tenant), PROMETHEUS_TEXT))
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
                writer.write(response(502, f"resource metrics of the super nodes: {e}".encode()))
            return
        try:
            target = translate.translate(req.target, tenant.root)
            super_pod = await self._check_owner(target, tenant)
        except translate.BadRequest as e:
            log.info(
                "refused %s %s for %s: %s",
                req.method,
                req.target,
                tenant.name,
                e.message,
                extra={"tenant": tenant.name},
            )
            writer.write(response(e.status, e.message.encode()))
            return
        log.info(
            "%s %s/%s/%s",
            target.route.name,
            target.tenant_namespace,
            target.pod,
            target.container,
            extra={"tenant": tenant.name, "object": f"{target.tenant_namespace}/{target.pod}"},
        )
        if self.direct is not None:
            await self._proxy_to_kubelet(req, target, super_pod, reader, writer)
            return
        if target.route.name == "run":
            writer.write(await self.run_command(target))
            return
        await self._proxy(req, target, reader, writer)

    async def run_command(self, target: translate.Target) -> bytes:
        """Kubelet /run: the command's output in one response (500 with the output when it fails)."""
        query = dict(parse_qsl(target.path.partition("?")[2]))
        argv = query.get("command", "").split()
        if not argv:
            return response(400, b"missing cmd")
        try:
            status, output = await self.super.exec_collect(
                target.super_namespace, target.pod, target.container, argv
            )
        except (aiohttp.ClientError, TimeoutError) as e:
            return response(502, f"exec in the super cluster failed: {e}".encode())
        if status.get("status", "Success") != "Success":
            return response(500, output + f"\n{status.get('message', '')}".encode())
        return response(200, output)

    async def _check_owner(self, target: translate.Target, tenant: TenantCA) -> dict[str, Any]:
        """The super pod, when it is this tenant's; 404 otherwise (other tenants' pods do not exist)."""
        try:
            pod = await self.super.get_or_none(r.PODS, target.pod, target.super_namespace)
        except ApiError as e:
            raise translate.BadRequest(502, f"super API server: {e}") from e
        owner = naming.tenant_key(pod) if pod else None
        if pod is None or owner is None or owner[0] != tenant.root:
            raise translate.BadRequest(404, f"pod {target.tenant_namespace}/{target.pod} not found")
        return pod

    async def _proxy_to_kubelet(
        self,
        req: Request,
        target: translate.Target,
        super_pod: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Direct mode: the same kubelet request, super namespace, to the kubelet of the pod's node."""
        node_name = super_pod["spec"].get("nodeName")
        node = await self.super.get_or_none(r.NODES, node_name) if node_name else None
        if node is None:
            writer.write(response(502, f"pod {target.pod} has no node to reach yet".encode()))
            return
        host, port = kubelet_address(node)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port, ssl=self.direct)
        except OSError as e:
            writer.write(response(502, f"kubelet of {node_name} at {host}:{port}: {e}".encode()))
            return
        await _forward(req, target.kubelet_path, f"{host}:{port}", reader, writer, up_reader, up_writer)

    async def _proxy(
        self,
        req: Request,
        target: translate.Target,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        url = urlsplit(self.creds.server)
        up_reader, up_writer = await asyncio.open_connection(
            url.hostname, url.port or 443, ssl=self._upstream_tls, server_hostname=url.hostname
        )
        await _forward(
            req, target.path, url.netloc, reader, writer, up_reader, up_writer, self.super.auth_headers()
        )

    # --- locally served routes -----------------------------------------------------------------
    async def _super_pods(self, tenant: TenantCA) -> list[tuple[dict[str, Any], tuple[str, str]]]:
        """The tenant's super pods (on this agent's node, if it has one), each with its tenant key."""
        selector = f"{naming.LABEL_TENANT}={tenant.root}"
        items = (await self.super.list(r.PODS, label_selector=selector))["items"]
        out = []
        for p in items:
            owner = naming.tenant_key(p)
            if owner is None or owner[0] != tenant.root:
                continue
            if self.node_name and p["spec"].get("nodeName") != self.node_name:
                continue
            out.append((p, (owner[1], owner[2])))
        return out

    async def _tenant_pods(self, tenant: TenantCA) -> list[dict[str, Any]]:
        out = []
        for p, owner in await self._super_pods(tenant):
            meta = {k: v for k, v in p["metadata"].items() if k in ("name", "labels", "creationTimestamp")}
            meta["namespace"] = owner[0]
            meta["uid"] = p["metadata"]["annotations"][naming.ANN_UID]
            meta["labels"] = {
                k: v for k, v in (meta.get("labels") or {}).items() if not k.startswith(naming.GROUP)
            }
            out.append(
                {
                    "metadata": meta,
                    "spec": {
                        "nodeName": p["spec"].get("nodeName"),
                        "containers": p["spec"].get("containers", []),
                    },
                    "status": {
                        k: v for k, v in (p.get("status") or {}).items() if k not in ("hostIP", "hostIPs")
                    },
                }
            )
        return out

    async def pods(self, tenant: TenantCA) -> dict[str, Any]:
        return {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": await self._tenant_pods(tenant),
        }

    async def resource_metrics(self, tenant: TenantCA) -> bytes:
        """Kubelet resource metrics (what metrics-server scrapes for `kubectl top`), of this tenant's pods."""
        pods = await self._super_pods(tenant)
        keys = {(p["metadata"]["namespace"], p["metadata"]["name"]): owner for p, owner in pods}
        nodes = {self.node_name} if self.node_name else {p["spec"].get("nodeName") for p, _ in pods}
        texts = [await self._node_metrics(n) for n in sorted(n for n in nodes if n)]
        return metrics.for_tenant(texts, keys, node_level=bool(self.node_name))

    async def _node_metrics(self, node_name: str) -> str:
        """One super node's /metrics/resource: from its kubelet (direct) or through the node proxy."""
        node = await self.super.get(r.NODES, node_name)
        path = (node["metadata"].get("annotations") or {}).get(METRICS_PATH_ANNOTATION, "/metrics/resource")
        if self.direct is None:
            return await self.super.get_text(r.NODES.path(None, node_name, "proxy") + path)
        host, port = kubelet_address(node)
        connector = aiohttp.TCPConnector(ssl=self.direct)
        async with (
            aiohttp.ClientSession(connector=connector) as s,
            s.get(f"https://{host}:{port}{path}", timeout=aiohttp.ClientTimeout(total=30)) as resp,
        ):
            resp.raise_for_status()
            return await resp.text()

    async def summary(self, tenant: TenantCA) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pods = await self._tenant_pods(tenant)
        return {
            "node": {"nodeName": "virtual", "startTime": now},
            "pods": [
                {
                    "podRef": {
                        "name": p["metadata"]["name"],
                        "namespace": p["metadata"]["namespace"],
                        "uid": p["metadata"]["uid"],
                    },
                    "startTime": p["status"].get("startTime", now),
                    "containers": [{"name": c["name"], "startTime": now} for c in p["spec"]["containers"]],
                }
                for p in pods
            ],
        }

    # --- lifecycle -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self.tenants.refresh()
        server = await asyncio.start_server(
            self.handle, self.listen_host, self.port, ssl=self.tls, limit=MAX_HEAD
        )
        refresher = asyncio.create_task(self.tenants.follow(), name="vn-agent:tenant-cas")
        try:
            await stop.wait()
        finally:
            refresher.cancel()
            server.close()
            for task in list(self._conns):
                task.cancel()
            await server.wait_closed()
            await self.super.close()


async def _forward(
    req: Request,
    path: str,
    host: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    auth: dict[str, str] | None = None,
) -> None:
    """Send the request head, rewritten to `path` with our identity only, upstream; then splice.
    `auth`: our bearer token for the super API server (a client certificate needs none)."""
    try:
        upgrade = "upgrade" in req.header("connection").lower()
        head = [
            f"{req.method} {path} HTTP/1.1",
            f"Host: {host}",
            "Connection: Upgrade" if upgrade else "Connection: close",
            *(f"{k}: {v}" for k, v in req.headers if k.lower() not in _DROP),
            *(f"{k}: {v}" for k, v in (auth or {}).items()),
        ]
        up_writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await up_writer.drain()
        await splice(reader, writer, up_reader, up_writer)
    finally:
        up_writer.close()
        with contextlib.suppress(Exception):
            await up_writer.wait_closed()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    finally:
        if dst.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                dst.write_eof()


async def splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until the upstream is done (or either side fails); then both are closed."""
    down = asyncio.create_task(_pipe(b_reader, a_writer))
    up = asyncio.create_task(_pipe(a_reader, b_writer))
    try:
        done, _ = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and not up.cancelled() and up.exception() is None:
            await asyncio.wait({down})  # the client finished sending; the answer may still be streaming
    finally:
        for t in (down, up):
            t.cancel()
        for t in (down, up):
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError, ssl.SSLError):
                await t
