"""What `tispace up` runs: a super cluster (local or given), TiSpace's programs, a sample tenant."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tispace import aio, api, binaries, kubeconfig, localnet, private, procs, rbac, tenants
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import localcluster, localidp

SAMPLE_TENANT = "dev"
PORTAL_CLIENT = "tispace-portal"


class StackError(RuntimeError):
    pass


def install_api(super_kubeconfig: Path) -> None:
    """Apply the CRDs and the programs' service accounts and RBAC; wait until the CRDs are served."""
    localcluster.apply(super_kubeconfig, [*api.crds().values(), *rbac.all_objects()])
    localcluster.kubectl(
        super_kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[f"crd/{c['metadata']['name']}" for c in api.crds().values()],
    )


def start_program(
    log_dir: Path,
    name: str,
    args: Callable[[int], list[str]],
    *,
    scheme: str = "http",
    started: Callable[[procs.Component], None] = lambda _: None,
    port: int = 0,
) -> procs.Component:
    """Start `tispace <args(port)>` detached on `port` (default: a free one) and wait for its /healthz.

    `started` records the component before the wait, so a failed start is still stoppable.
    """
    port = port or procs.free_port()
    argv = [sys.executable, "-m", "tispacectl", *args(port)]
    comp = procs.Component(
        procs.spawn(name, argv, log_dir / f"{name}.log"), port, f"{scheme}://127.0.0.1:{port}/healthz"
    )
    started(comp)
    procs.wait_healthy(comp, timeout=60)
    return comp


class Stack:
    """Everything started from one state dir."""

    def __init__(
        self,
        state_dir: Path,
        *,
        super_kubeconfig: Path | None = None,
        nodes: localcluster.NodeSpec | None = None,
    ) -> None:
        self.dir = state_dir.resolve()
        self._config = self.dir / "stack.json"
        saved = json.loads(self._config.read_text()) if self._config.exists() else {}
        external = super_kubeconfig or (
            Path(saved["super_kubeconfig"]) if saved.get("super_kubeconfig") else None
        )
        self.external = external.resolve() if external else None
        self.nodes = nodes or localcluster.NodeSpec(count=saved.get("nodes", localcluster.NodeSpec().count))
        self.local = None if self.external else localcluster.SuperCluster(self.dir, self.nodes)
        self.own = procs.Registry(self.dir / "tispace-state.json")

    @property
    def super_kubeconfig(self) -> Path:
        return self.external or self.dir / "super.kubeconfig"

    def tenant_kubeconfig(self, name: str) -> Path:
        return self.dir / "tenants" / f"{name}.kubeconfig"

    def etcd_servers(self) -> str:
        """The local super etcd, shared by tenants under their own prefix ('' for an external cluster)."""
        if not self.local:
            return ""
        etcd = next(c for c in self.local.components() if c.name == "etcd")
        return f"http://127.0.0.1:{etcd.port}"

    def _save_config(self) -> None:
        """Which super cluster this state dir uses, so later commands (down, status) find it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._config.write_text(
            json.dumps(
                {"super_kubeconfig": str(self.external) if self.external else None, "nodes": self.nodes.count}
            )
        )

    # --- lifecycle -----------------------------------------------------------------------
    def up(self, progress: localcluster.Progress, *, sample: bool = True) -> None:
        self._save_config()
        if self.local:
            self.local.up(progress)
        else:
            progress(f"using the existing super cluster of {self.external}")
            try:
                localcluster.kubectl(self.super_kubeconfig, "get", "--raw=/readyz", timeout=15)
            except RuntimeError as e:
                raise StackError(f"the super cluster of {self.external} is not reachable: {e}") from e
            localcluster.apply(self.super_kubeconfig, localcluster.furniture())
        progress("installing the TiSpace API (CRDs) and each program's service account and RBAC")
        install_api(self.super_kubeconfig)
        self.start_programs(progress)
        self.start_portal(progress)
        if sample:
            progress(f"creating the sample tenant {SAMPLE_TENANT!r} (VirtualCluster default/{SAMPLE_TENANT})")
            asyncio.run(self._sample_tenant(progress))

    def start_programs(self, progress: localcluster.Progress) -> None:
        """vn_agent, vc_manager and the syncer as local processes against the super cluster, each with
        its own service account's token (`tispace up`, and `tispace install --run-local` where pods
        cannot run)."""
        self._save_config()
        egress = self.dir / "vn-agent-egress.sock"
        agent = self._ensure_own(
            "vn-agent",
            lambda port: [
                "vn-agent",
                f"--super-kubeconfig={self.credentials('vn-agent')}",
                f"--port={port}",
                f"--state-dir={self.dir}",
                f"--egress-socket={egress}",
            ],
            progress,
            scheme="https",
        )
        self._ensure_own(
            "vc-manager",
            lambda port: [
                "manager",
                f"--super-kubeconfig={self.credentials('vc-manager')}",
                f"--state-dir={self.dir}",
                f"--etcd-servers={self.etcd_servers()}",
                f"--health-port={port}",
                f"--egress-socket={egress}",
            ],
            progress,
        )
        self._ensure_own(
            "syncer",
            lambda port: [
                "syncer",
                f"--super-kubeconfig={self.credentials('syncer')}",
                f"--port={port}",
                f"--vn-agent-host={localnet.VIRTUAL_ADDRESS}",
                f"--vn-agent-port={agent.port}",
            ],
            progress,
        )

    def start_portal(self, progress: localcluster.Progress) -> None:
        """The portal, logging in through a local OIDC provider with two sample users (their
        passwords stay in <state>/portal/users.json)."""
        comps = self.own.load()
        pair = [c for c in comps if c.name in ("oidc-provider", "portal")]
        if len(pair) == 2 and all(c.ok() for c in pair):
            progress(f"portal already running at http://127.0.0.1:{self._portal_port()}")
            return
        for c in pair:
            procs.stop(c.proc)
        self.own.save([c for c in comps if c not in pair])
        work = self.dir / "portal"
        users_file = work / "users.json"
        saved = json.loads(users_file.read_text()) if users_file.exists() else {}
        users = localidp.sample_users({u: v["password"] for u, v in saved.items()})
        private.write(users_file, json.dumps({u.username: asdict(u) for u in users}, indent=1))
        secret_file = work / "client-secret"
        if not secret_file.exists():
            private.write(secret_file, secrets.token_urlsafe(24))
        port = procs.free_port()
        progress("starting the local OIDC provider (sample users developer and admin)")
        client = localidp.Client(
            PORTAL_CLIENT, secret_file.read_text(), [f"http://127.0.0.1:{port}/auth/callback"]
        )
        idp = localidp.start(work, users, [client])
        self.own.save([*self.own.load(), idp])
        self._ensure_own(
            "portal",
            lambda port: [
                "portal",
                f"--super-kubeconfig={self.credentials('portal')}",
                f"--issuer={localidp.issuer(idp)}",
                f"--client-id={PORTAL_CLIENT}",
                f"--client-secret-file={secret_file}",
                f"--session-key-file={work / 'session.key'}",
                f"--port={port}",
                f"--instance-runtime-class={localcluster.RUNTIME_CLASS}",
                f"--instance-storage-class={localcluster.STORAGE_CLASS}",
            ],
            progress,
            port=port,
        )

    def _portal_port(self) -> int | None:
        return next((c.port for c in self.own.load() if c.name == "portal"), None)

    def portal_users(self) -> dict[str, dict[str, Any]]:
        path = self.dir / "portal" / "users.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def credentials(self, program: str) -> Path:
        """A kubeconfig acting as the program's own service account (least privilege, not admin)."""
        return rbac.token_kubeconfig(
            self.super_kubeconfig, program, self.dir / "credentials" / f"{program}.kubeconfig"
        )

    def _ensure_own(
        self,
        name: str,
        args: Callable[[int], list[str]],
        progress: localcluster.Progress,
        scheme: str = "http",
        port: int = 0,
    ) -> procs.Component:
        comps = self.own.load()
        current = next((c for c in comps if c.name == name), None)
        if current and current.ok():
            progress(f"{name} already running (pid {current.proc.pid})")
            return current
        if current:
            procs.stop(current.proc)
        progress(f"starting {name}")
        comp = start_program(
            self.dir / "logs",
            name,
            args,
            scheme=scheme,
            started=lambda c: self.own.save([x for x in comps if x.name != name] + [c]),
            port=port,
        )
        return comp

    def restart(self, name: str, argv: Callable[[list[str]], list[str]] | None = None) -> procs.Component:
        """Stop one of TiSpace's own programs and start it again (`argv` may edit its command line)."""
        try:
            return self.own.restart(name, argv=argv)
        except procs.StartError as e:
            raise StackError(f"{e}: run `tispace up` first") from e

    async def _sample_tenant(self, progress: localcluster.Progress) -> None:
        async with Client.from_kubeconfig(self.super_kubeconfig) as client:
            await client.ensure(r.CLUSTERVERSIONS, tenants.cluster_version())
            await client.ensure(
                r.VIRTUALCLUSTERS,
                tenants.virtual_cluster(
                    SAMPLE_TENANT, owner="developer@example.com", nodes={"mode": "selector"}
                ),  # every local node from the start, as a cluster made with kind shows its nodes
                namespace="default",
            )
            await tenants.wait_phase(client, SAMPLE_TENANT, "default", progress=lambda s: progress(f"  {s}"))
            config = await tenants.admin_kubeconfig(client, SAMPLE_TENANT, "default")
        kubeconfig.write(self.tenant_kubeconfig(SAMPLE_TENANT), config)
        progress("  waiting for the syncer to serve it")
        await self._served(f"default/{SAMPLE_TENANT}")

    async def _served(self, key: str, timeout: float = 120) -> None:
        """Ready means a pod made right after `up` goes down to the super cluster: the syncer starts
        on a tenant when its own watch sees it Running, a moment after we did."""
        syncer = next(c for c in self.own.load() if c.name == "syncer")

        async def serving() -> bool:
            return key in ((await asyncio.to_thread(_syncer_status, syncer)) or {}).get("tenants", [])

        try:
            await aio.poll(serving, timeout=timeout, interval=0.3, what=f"the syncer serving tenant {key}")
        except TimeoutError as e:
            raise StackError(f"{e}: see {self.dir / 'logs' / 'syncer.log'}") from None

    def down(self) -> None:
        for c in reversed(self.own.load()):
            procs.stop(c.proc)
        self.own.clear()
        # Tenant control planes outlive the manager by design; `down` stops them too.
        for reg in sorted((self.dir / "tenants").glob("*/procs.json")):
            for c in procs.Registry(reg).load():
                procs.stop(c.proc)
        if self.local:
            self.local.down()

    def status(self) -> list[dict[str, Any]]:
        rows = self.local.status() if self.local else []
        rows += [{**c.status(), "detail": _detail(c)} for c in self.own.load()]
        for reg in sorted((self.dir / "tenants").glob("*/procs.json")):
            rows += [
                {**c.status(), "name": f"{reg.parent.name}/{c.name}"} for c in procs.Registry(reg).load()
            ]
        return rows

    def summary(self) -> list[str]:
        kubectl = binaries.bin_dir() / "kubectl"
        lines = [f"super cluster kubeconfig: {self.super_kubeconfig}"]
        tenant = self.tenant_kubeconfig(SAMPLE_TENANT)
        if tenant.exists():
            lines.append(f"tenant {SAMPLE_TENANT!r} kubeconfig: {tenant}")
            lines.append(f"next: {kubectl} --kubeconfig {tenant} get namespaces")
        else:
            lines.append(f"next: {kubectl} --kubeconfig {self.super_kubeconfig} get nodes")
        if port := self._portal_port():
            logins = ", ".join(f"{u} / {v['password']}" for u, v in self.portal_users().items())
            lines.append(f"portal: http://127.0.0.1:{port} (log in as {logins}; admin sees every tenant)")
        return lines


def _detail(comp: procs.Component) -> str:
    """What a program says about itself: the syncer's tenants and queue depth."""
    if comp.name != "syncer" or not procs.alive(comp.proc):
        return ""
    st = _syncer_status(comp)
    return f"{len(st['tenants'])} tenants, queue depth {st['queue']}" if st else "status unavailable"


def _syncer_status(comp: procs.Component) -> dict[str, Any] | None:
    """The syncer's /status (tenants served, queue depth), or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{comp.port}/status", timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except (OSError, ValueError):
        return None
