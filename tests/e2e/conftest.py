"""One real local super cluster shared by every e2e test of the session."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tispace import binaries, kubeconfig, localnet, procs, rbac, tenants
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import install, localcluster, stack


@pytest.fixture(scope="session")
def super_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localcluster.SuperCluster]:
    binaries.ensure()
    cluster = localcluster.SuperCluster(tmp_path_factory.mktemp("super"))
    cluster.up()
    yield cluster
    cluster.down()


@pytest.fixture(scope="session")
async def super_client(super_cluster: localcluster.SuperCluster) -> AsyncIterator[Client]:
    client = Client.from_kubeconfig(super_cluster.kubeconfig, name="super")
    yield client
    await client.close()


@pytest.fixture(scope="session")
def stack_dir(super_cluster: localcluster.SuperCluster) -> Path:
    return super_cluster.dir


@pytest.fixture(scope="session")
def installed(super_cluster: localcluster.SuperCluster) -> localcluster.SuperCluster:
    """`tispace install --overlay plain` on the local super cluster (CRDs, RBAC, the programs'
    Deployments and DaemonSet, which KWOK only pretends to run), and the sample ClusterVersion.
    The programs themselves run as local processes with their service accounts' tokens."""
    install.install(super_cluster.kubeconfig, "plain", lambda _: None, timeout=120)
    localcluster.apply(super_cluster.kubeconfig, [tenants.cluster_version()])
    return super_cluster


def credentials(cluster: localcluster.SuperCluster, program: str) -> Path:
    """The program's service-account kubeconfig: the e2e suite runs every program least-privileged."""
    return rbac.token_kubeconfig(
        cluster.kubeconfig, program, cluster.dir / "credentials" / f"{program}.kubeconfig"
    )


@pytest.fixture(scope="session")
def manager(installed: localcluster.SuperCluster, vn_agent: procs.Component) -> Iterator[ManagerProc]:
    """vc_manager as a real background process, exactly as `tispace up` runs it."""
    mp = ManagerProc(installed, str(egress_socket(installed)))
    mp.start()
    yield mp
    mp.stop()
    for reg in (installed.dir / "tenants").glob("*/procs.json"):
        for c in procs.Registry(reg).load():
            procs.stop(c.proc)


class ManagerProc:
    def __init__(self, cluster: localcluster.SuperCluster, egress_socket: str) -> None:
        self.cluster = cluster
        self.egress_socket = egress_socket
        self.comp: procs.Component | None = None

    def start(self) -> None:
        etcd = next(c for c in self.cluster.components() if c.name == "etcd")
        kc, d = credentials(self.cluster, "vc-manager"), self.cluster.dir
        self.comp = stack.start_program(
            d / "logs",
            "vc-manager",
            lambda port: [
                "manager",
                f"--super-kubeconfig={kc}",
                f"--state-dir={d}",
                f"--etcd-servers=http://127.0.0.1:{etcd.port}",
                f"--health-port={port}",
                "--ready-timeout=90",
                f"--egress-socket={self.egress_socket}",
            ],
        )

    def kill(self) -> None:
        assert self.comp
        os.kill(self.comp.proc.pid, signal.SIGKILL)
        while procs.alive(self.comp.proc):
            time.sleep(0.05)

    def stop(self) -> None:
        if self.comp:
            procs.stop(self.comp.proc)


@pytest.fixture(scope="session")
def vn_agent(installed: localcluster.SuperCluster) -> Iterator[procs.Component]:
    """vn_agent as a real background process, exactly as `tispace up` runs it."""
    kc, d = credentials(installed, "vn-agent"), installed.dir
    comp = stack.start_program(
        d / "logs",
        "vn-agent",
        lambda port: [
            "vn-agent",
            f"--super-kubeconfig={kc}",
            f"--port={port}",
            f"--state-dir={d}",
            f"--egress-socket={egress_socket(installed)}",
        ],
        scheme="https",
    )
    yield comp
    procs.stop(comp.proc)


def egress_socket(cluster: localcluster.SuperCluster) -> Path:
    """Where vn_agent's egress proxy listens for the tenant API servers (vn_agent/egress.py)."""
    return cluster.dir / "vn-agent-egress.sock"


RACK_PREFIX = "rack.example.com/"
"""An admin-chosen node label prefix the session syncer copies to virtual nodes."""


class SyncerProc:
    """The syncer as a real background process, exactly as `tispace up` runs it; fault tests kill it."""

    def __init__(self, comp: procs.Component) -> None:
        self.comp = comp

    @property
    def port(self) -> int:
        return self.comp.port

    def kill(self) -> None:
        os.kill(self.comp.proc.pid, signal.SIGKILL)
        while procs.alive(self.comp.proc):
            time.sleep(0.05)

    def start(self) -> None:
        """Start it again with the same command line (same ports), and wait until it is healthy."""
        self.comp = procs.respawn(self.comp)
        procs.wait_healthy(self.comp, timeout=60)

    def stop(self) -> None:
        procs.stop(self.comp.proc)


@pytest.fixture(scope="session")
def syncer(
    manager: ManagerProc, vn_agent: procs.Component, super_cluster: localcluster.SuperCluster
) -> Iterator[SyncerProc]:
    kc = credentials(super_cluster, "syncer")
    comp = stack.start_program(
        super_cluster.dir / "logs",
        "syncer",
        lambda port: [
            "syncer",
            f"--super-kubeconfig={kc}",
            f"--port={port}",
            f"--vn-agent-host={localnet.VIRTUAL_ADDRESS}",
            f"--vn-agent-port={vn_agent.port}",
            f"--node-label-prefix={RACK_PREFIX}",
        ],
    )
    proc = SyncerProc(comp)
    yield proc
    proc.stop()


@dataclass
class TenantHandle:
    name: str
    namespace: str
    root: str
    kubeconfig: Path
    client: Client

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return localcluster.kubectl(self.kubeconfig, *args, stdin=stdin)


@pytest.fixture(scope="module")
async def tenant_factory(
    manager: ManagerProc, super_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Callable[..., Awaitable[TenantHandle]]]:
    """Create Running tenants on demand; all are deleted (and waited for) after the module.

    Per module, not per session: every tenant control plane holds inotify instances (certificate
    reloaders), and the default per-user limit of 128 runs out at about twenty live tenants.
    """
    made: list[TenantHandle] = []
    out = tmp_path_factory.mktemp("tenants")

    async def make(name: str, namespace: str = "default", **spec: Any) -> TenantHandle:
        """A Running tenant; the one already made in this module when the name is taken."""
        known = next((h for h in made if (h.name, h.namespace) == (name, namespace)), None)
        if known is not None:
            return known
        await super_client.create(
            r.VIRTUALCLUSTERS, tenants.virtual_cluster(name, namespace, **spec), namespace
        )
        await tenants.wait_phase(super_client, name, namespace, timeout=180)
        config = await tenants.admin_kubeconfig(super_client, name, namespace)
        path = kubeconfig.write(out / f"{namespace}-{name}.kubeconfig", config)
        handle = TenantHandle(
            name,
            namespace,
            await tenants.root_of(super_client, name, namespace),
            path,
            Client(kubeconfig.credentials(config), name=name),
        )
        made.append(handle)
        return handle

    yield make
    for t in made:
        await t.client.close()
        await super_client.delete(r.VIRTUALCLUSTERS, t.name, t.namespace)
    for t in made:
        await tenants.wait_gone(super_client, t.name, t.namespace)
