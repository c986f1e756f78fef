"""The embedded default: tenant control planes as supervised local processes.

kube-apiserver, kube-controller-manager and CoreDNS per tenant (plus an etcd when no shared etcd is
configured or the ClusterVersion asks for a dedicated one). Processes are detached and
recorded in a per-tenant registry, so a restarted manager adopts them instead of starting
duplicates; a process that dies is restarted with exponential backoff.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tispace import binaries, kubeconfig, procs, tenantpki
from tispace.kube.client import Client
from tispace.localnet import VIRTUAL_ADDRESS, egress_config
from tispace.tenantpki import TenantPKI
from vc_manager.provisioners import ProvisionError, tuning
from vc_manager.settings import Settings
from vc_manager.tenant import Tenant

BACKOFF_MAX = 60.0
CRASHLOOP_AFTER = 3


@dataclass
class _Backoff:
    failures: int = 0
    next_try: float = 0.0
    last_error: str = ""


@dataclass
class ProcessProvisioner:
    settings: Settings
    client: Client
    _backoff: dict[tuple[str, str], _Backoff] = field(default_factory=dict)
    # Roots being torn down: supervision must not respawn what teardown has just stopped.
    _stopping: set[str] = field(default_factory=set)

    # --- layout ----------------------------------------------------------------------------
    def dir(self, tenant: Tenant) -> Path:
        return self.settings.state_dir / "tenants" / tenant.root

    def _registry(self, tenant: Tenant) -> procs.Registry:
        return procs.Registry(self.dir(tenant) / "procs.json")

    def etcd_prefix(self, tenant: Tenant) -> str:
        return f"/tenants/{tenant.root}/registry"

    def _write_pki(self, tenant: Tenant, tpki: TenantPKI) -> Path:
        d = self.dir(tenant) / "pki"
        d.mkdir(parents=True, exist_ok=True)
        files = {
            "ca.crt": tpki.root_ca.cert_pem,
            "ca.key": tpki.root_ca.key_pem,
            "apiserver.crt": tpki.apiserver.cert_pem,
            "apiserver.key": tpki.apiserver.key_pem,
            "front-proxy-ca.crt": tpki.front_proxy_ca.cert_pem,
            "front-proxy-client.crt": tpki.front_proxy_client.cert_pem,
            "front-proxy-client.key": tpki.front_proxy_client.key_pem,
            "sa.key": tpki.sa_private,
            "sa.pub": tpki.sa_public,
            "kubelet-client.crt": tpki.kubelet_client.cert_pem,
            "kubelet-client.key": tpki.kubelet_client.key_pem,
        }
        for name, data in files.items():
            path = d / name
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
                path.chmod(0o600)
        return d

    # --- component specs ----------------------------------------------------------------------
    def _argv(self, tenant: Tenant, name: str, ports: dict[str, int], pki_dir: Path) -> tuple[list[str], str]:
        """Command line and health URL of one component."""
        d = self.dir(tenant)
        if name == "etcd":
            ep, pp = ports["etcd"], ports["etcd-peer"]
            return [
                binaries.path("etcd"),
                f"--name={tenant.root}",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ep}",
                f"--advertise-client-urls=http://127.0.0.1:{ep}",
                f"--listen-peer-urls=http://127.0.0.1:{pp}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{pp}",
                f"--initial-cluster={tenant.root}=http://127.0.0.1:{pp}",
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--log-level=warn",
                f"--listen-metrics-urls=http://127.0.0.1:{ports['etcd-metrics']}",
            ], f"http://127.0.0.1:{ep}/health"
        if name == "kube-apiserver":
            ap = ports["kube-apiserver"]
            etcd = f"http://127.0.0.1:{ports['etcd']}" if "etcd" in ports else self.settings.etcd_servers
            return [
                binaries.path("kube-apiserver"),
                f"--etcd-servers={etcd}",
                f"--etcd-prefix={self.etcd_prefix(tenant)}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ap}",
                # Its `default/kubernetes` Endpoints and EndpointSlice, as every API server keeps them
                # (upstream conformance reads them): a loopback address is invalid there, so the
                # virtual nodes' documentation address, routed nowhere, with the real port.
                f"--advertise-address={VIRTUAL_ADDRESS}",
                f"--cert-dir={d / 'apiserver-certs'}",
                f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
                f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                f"--client-ca-file={pki_dir / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--service-account-issuer=https://kubernetes.default.svc.{tenant.cluster_domain}",
                f"--service-account-key-file={pki_dir / 'sa.pub'}",
                f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
                f"--service-cluster-ip-range={tenant.spec.get('serviceCidr') or self.settings.service_cidr}",
                "--enable-aggregator-routing=true",
                f"--requestheader-client-ca-file={pki_dir / 'front-proxy-ca.crt'}",
                f"--requestheader-allowed-names={tenantpki.FRONT_PROXY_CLIENT}",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={pki_dir / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki_dir / 'front-proxy-client.key'}",
                f"--kubelet-client-certificate={pki_dir / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki_dir / 'kubelet-client.key'}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--profiling=false",
                *_egress_flags(d, self.settings.egress_socket),
                *tuning.FLAGS.get(name, ()),
                *tenant.extra_args("apiServer"),
            ], f"https://127.0.0.1:{ap}/readyz"
        if name == "kube-controller-manager":
            cp = ports["kube-controller-manager"]
            return [
                binaries.path("kube-controller-manager"),
                f"--kubeconfig={d / 'admin.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={cp}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki_dir / 'sa.key'}",
                f"--root-ca-file={pki_dir / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
                f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
                f"--cert-dir={d / 'kcm-certs'}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                *tuning.FLAGS.get(name, ()),
                *tenant.extra_args("controllerManager"),
            ], f"https://127.0.0.1:{cp}/healthz"
        if name == "coredns":
            corefile = d / "Corefile"
            corefile.write_text(
                corefile_text(
                    port=ports["coredns"],
                    ready_port=ports["coredns-ready"],
                    domain=tenant.cluster_domain,
                    kubeconfig=d / "admin.kubeconfig",
                )
            )
            return [binaries.path("coredns"), "-conf", str(corefile)], (
                f"http://127.0.0.1:{ports['coredns-ready']}/ready"
            )
        raise AssertionError(f"unknown component {name}")

    def _components(self, tenant: Tenant) -> list[str]:
        dedicated = not tenant.shared_etcd or not self.settings.etcd_servers
        return (["etcd"] if dedicated else []) + ["kube-apiserver", "kube-controller-manager", "coredns"]

    def _ports(self, tenant: Tenant) -> dict[str, int]:
        """Ports are chosen once per tenant and kept, so kubeconfigs stay valid across restarts."""
        path = self.dir(tenant) / "ports.json"
        ports: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
        names = [*self._components(tenant), "etcd-peer", "etcd-metrics", "coredns-ready"]
        if missing := [n for n in names if n not in ports]:  # new tenants, or a component added since
            ports.update({n: procs.free_port() for n in missing})
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(ports))
        return ports

    def server(self, tenant: Tenant) -> str:
        return f"https://127.0.0.1:{self._ports(tenant)['kube-apiserver']}"

    def dns_endpoint(self, tenant: Tenant) -> str:
        return f"127.0.0.1:{self._ports(tenant)['coredns']}"

    # --- Provisioner ---------------------------------------------------------------------------
    async def provision(self, tenant: Tenant, tpki: TenantPKI) -> str:
        pki_dir = self._write_pki(tenant, tpki)
        server = self.server(tenant)
        kubeconfig.write(
            self.dir(tenant) / "admin.kubeconfig",
            tenantpki.admin_kubeconfig(tpki, server=server, days=tenant.pki_days, cluster=tenant.name),
        )
        registry = self._registry(tenant)
        running = {c.name: c for c in registry.load() if procs.alive(c.proc)}
        ports = self._ports(tenant)
        started: list[procs.Component] = list(running.values())
        for name in self._components(tenant):
            if name in running:
                continue  # adopted: a restarted manager never starts a duplicate
            argv, health = self._argv(tenant, name, ports, pki_dir)
            log = self.dir(tenant) / "logs" / f"{name}.log"
            comp = procs.Component(procs.spawn(name, argv, log, tuning.GO_ENV.get(name)), ports[name], health)
            started = [c for c in started if c.name != name] + [comp]
            registry.save(started)
            if name == "etcd":
                await asyncio.to_thread(procs.wait_healthy, comp)
        return server

    async def admin_kubeconfig(self, tenant: Tenant, tpki: TenantPKI, server: str) -> dict[str, Any]:
        return tenantpki.admin_kubeconfig(tpki, server=server, days=tenant.pki_days, cluster=tenant.name)

    async def wait_ready(self, tenant: Tenant, server: str, timeout: float) -> None:
        comps = self._registry(tenant).load()
        try:
            for comp in comps:
                await asyncio.to_thread(procs.wait_healthy, comp, timeout)
        except procs.StartError as e:
            raise ProvisionError(str(e)) from e

    async def supervise(self, tenant: Tenant, tpki: TenantPKI) -> str | None:
        if tenant.root in self._stopping:
            return None
        registry = self._registry(tenant)
        comps = registry.load()
        problems = []
        for comp in comps:
            if procs.alive(comp.proc):
                continue
            key = (tenant.root, comp.name)
            b = self._backoff.setdefault(key, _Backoff())
            if time.monotonic() < b.next_try:
                problems.append(f"{comp.name} is down ({b.failures} restarts; {b.last_error})")
                continue
            b.failures += 1
            b.next_try = time.monotonic() + min(BACKOFF_MAX, 2.0**b.failures)
            b.last_error = procs.tail(comp.proc.log, 1)
            new = procs.respawn(comp)
            comps = [new if c.name == comp.name else c for c in comps]
            registry.save(comps)
            if b.failures >= CRASHLOOP_AFTER:
                problems.append(f"{comp.name} is crash-looping ({b.failures} restarts; last: {b.last_error})")
            else:
                problems.append(f"{comp.name} exited and was restarted (last log: {b.last_error})")
        for comp in comps:
            key = (tenant.root, comp.name)
            if key not in self._backoff:
                continue
            if procs.alive(comp.proc) and procs.healthy(comp.health):
                del self._backoff[key]
            elif procs.alive(comp.proc) and not problems:
                problems.append(f"{comp.name} is restarting")
        return "; ".join(problems) or None

    async def teardown(self, tenant: Tenant) -> None:
        self._stopping.add(tenant.root)
        try:
            for comp in reversed(self._registry(tenant).load()):
                await asyncio.to_thread(procs.stop, comp.proc)
            if "etcd" not in self._components(tenant):
                await delete_etcd_prefix(self.settings.etcd_servers, f"/tenants/{tenant.root}/")
            shutil.rmtree(self.dir(tenant), ignore_errors=True)  # no registry left to supervise
        finally:
            self._stopping.discard(tenant.root)
        for key in [k for k in self._backoff if k[0] == tenant.root]:
            del self._backoff[key]


def _egress_flags(d: Path, socket: str) -> list[str]:
    """Node traffic of the tenant API server through vn_agent's egress proxy (vn_agent/egress.py)."""
    if not socket:
        return []
    path = d / "egress-selector.yaml"
    path.write_text(egress_config(socket))
    return [f"--egress-selector-config-file={path}"]


def corefile_text(*, port: int, ready_port: int, domain: str, kubeconfig: Path) -> str:
    """The tenant's CoreDNS: its own API objects only (no forwarding), on loopback."""
    return f"""\
.:{port} {{
    bind 127.0.0.1
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
}}
"""


def _prefix_end(prefix: bytes) -> bytes:
    """etcd range end covering every key that starts with `prefix`."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


async def _etcd_range(etcd_servers: str, op: str, prefix: str, **extra: object) -> dict[str, Any]:
    """One call of etcd's JSON gateway (`/v3/kv/<op>`) over every key under `prefix`."""
    key = prefix.encode()
    body = {
        "key": base64.b64encode(key).decode(),
        "range_end": base64.b64encode(_prefix_end(key)).decode(),
        **extra,
    }
    url = etcd_servers.split(",")[0].rstrip("/") + f"/v3/kv/{op}"
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, json=body, timeout=aiohttp.ClientTimeout(total=30)) as r,
    ):
        if r.status != 200:
            raise ProvisionError(f"etcd {op} under {prefix} failed: {r.status} {await r.text()}")
        result: dict[str, Any] = await r.json()
        return result


async def delete_etcd_prefix(etcd_servers: str, prefix: str) -> int:
    """Delete every key under `prefix`; returns how many went."""
    return int((await _etcd_range(etcd_servers, "deleterange", prefix)).get("deleted", 0))


async def count_etcd_prefix(etcd_servers: str, prefix: str) -> int:
    return int((await _etcd_range(etcd_servers, "range", prefix, count_only=True)).get("count", 0))
