"""The production install (issue: production install): every overlay's manifests against the real
API server and the code, install and uninstall on a cluster of their own, and vc_manager's
leader election among replicas."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from tests.e2e.conftest import ManagerProc, credentials
from tests.e2e.helpers import eventually, pod, processes_mentioning, running
from tispace import kubeconfig, procs, rbac, tenants
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import cli, install, localcluster, stack

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("Deployment", "DaemonSet")


def containers(objs: list[dict]) -> Iterator[tuple[dict, dict]]:
    for o in objs:
        if o["kind"] in WORKLOADS:
            for c in o["spec"]["template"]["spec"]["containers"]:
                yield o, c


def rendered(name: str) -> list[dict]:
    """An overlay, or `portal` for config/portal (applied next to any overlay)."""
    return install.render_dir(install.CONFIG / "portal") if name == "portal" else install.render(name)


@pytest.mark.parametrize("overlay", [*install.overlays(), "portal"])
def test_every_program_in_every_overlay_runs_with_arguments_the_code_accepts(overlay: str) -> None:
    """The manifests are checked against the CLI itself: a renamed or removed option fails here."""
    objs = rendered(overlay)
    command = typer.main.get_command(cli.app)
    seen = set()
    for workload, c in containers(objs):
        args = [re.sub(r"\$\((\w+)\)", "value", a) for a in c["args"]]
        sub = command.commands[args[0]]  # type: ignore[attr-defined]
        sub.make_context(args[0], args[1:], resilient_parsing=False)  # raises on an unknown option
        spec = workload["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] in {p.name for p in rbac.PROGRAMS}
        assert spec["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
        assert c["image"] == "tispace/tispace:0.1.0" and c["resources"]["requests"]
        port = next(a.split("=", 1)[1] for a in args if a.startswith(("--port=", "--health-port=")))
        assert "--listen-host=0.0.0.0" in args  # probes come from the kubelet, not from inside the pod
        assert any(str(p["containerPort"]) == port for p in c["ports"])
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        seen.add(args[0])
    assert seen == ({"portal"} if overlay == "portal" else {"manager", "syncer", "vn-agent"})
    assert all(o["metadata"]["labels"][install.PART_OF] == "tispace" for o in objs)


def test_the_image_runs_as_no_one_in_particular() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M) and 'ENTRYPOINT ["tispace"]' in text


@pytest.mark.parametrize("overlay", [*install.overlays(), "portal"])
def test_every_manifest_of_every_overlay_is_accepted_by_the_api_server(
    overlay: str, installed: localcluster.SuperCluster
) -> None:
    """Server-side dry run: schemas (the CRDs' included), defaulting and admission, nothing stored.

    The local cluster already has a `kata` RuntimeClass and a `rook-ceph-block` StorageClass with
    another provisioner (immutable), so the overlay's are checked under a new name."""
    objs = []
    for o in rendered(overlay):
        o = copy.deepcopy(o)
        if o["kind"] in ("RuntimeClass", "StorageClass"):
            o["metadata"]["name"] += "-dry-run"
        objs.append(o)
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    out = localcluster.kubectl(
        installed.kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        "-",
        stdin=doc,
    )
    assert out.count("(server dry run)") == len(objs)


def tispace(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "tispacectl", *args], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


async def test_install_runs_tenants_and_uninstall_removes_exactly_what_it_made(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """On a super cluster of its own. KWOK plays the programs' pods, so the rollouts complete, and
    `--run-local` runs the programs themselves as local processes with the installed RBAC."""
    cluster = localcluster.SuperCluster(tmp_path_factory.mktemp("install-super"))
    cluster.up()
    state = tmp_path_factory.mktemp("install-state")
    try:
        kc = cluster.kubeconfig
        keep = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "keep-me", "namespace": "default"},
        }
        localcluster.apply(kc, [keep])
        out = tispace(
            "install", f"--super-kubeconfig={kc}", "--overlay=plain", "--run-local", f"--state-dir={state}"
        )
        assert "roll out" in out and "installed" in out
        for w in install.workloads(install.render("plain")):
            status = json.loads(localcluster.kubectl(kc, "get", w, "-n", rbac.NAMESPACE, "-o", "json"))[
                "status"
            ]
            assert status.get("readyReplicas", status.get("numberReady")) >= 1, (w, status)
        # The installed programs serve a tenant end to end.
        localcluster.apply(
            kc, [tenants.cluster_version(), tenants.virtual_cluster("after-install", "default")]
        )
        async with Client.from_kubeconfig(kc) as sup:
            vc = await tenants.wait_phase(sup, "after-install", "default", timeout=180)
            config = await tenants.admin_kubeconfig(sup, "after-install", "default")
            async with Client(kubeconfig.credentials(config)) as tenant:
                await tenant.create(r.PODS, pod("hello"), "default")
                sns = f"{vc['status']['clusterNamespace']}-default"
                await eventually(lambda: running(sup, sns, 1, "app=hello"), timeout=120, what="pod synced")
        tispace("install", f"--super-kubeconfig={kc}", "--overlay=plain")  # again: nothing more is "made"
        out = tispace("uninstall", f"--super-kubeconfig={kc}", "--yes", "--timeout=120")
        assert "deleting 1 VirtualClusters" in out
        assert not localcluster.kubectl(
            kc, "get", "crd", "-l", f"{install.PART_OF}=tispace", "-o", "name"
        ).strip()
        phase = localcluster.kubectl(
            kc, "get", "ns", rbac.NAMESPACE, "--ignore-not-found", "-o", "jsonpath={.status.phase}"
        )
        assert phase in ("", "Terminating")  # namespaces go asynchronously
        # What was there before stays: the cluster's furniture and an unrelated object.
        assert localcluster.kubectl(kc, "get", "serviceaccount", "keep-me", "-o", "name").strip()
        assert localcluster.kubectl(kc, "get", "runtimeclass", "kata", "-o", "name").strip()
        with pytest.raises(install.InstallError, match="no install record"):
            install.uninstall(kc, lambda _: None)
    finally:
        tispace("down", f"--state-dir={state}")
        cluster.down()


async def test_manager_replicas_elect_one_leader_and_fail_over(
    manager: ManagerProc, installed: localcluster.SuperCluster, super_client: Client
) -> None:
    """Two vc_manager replicas with --leader-namespace: one leads, the other waits; kill the leader
    and the other provisions the next VirtualCluster."""
    manager.stop()
    kc, d = credentials(installed, "vc-manager"), installed.dir
    etcd = next(c for c in installed.components() if c.name == "etcd")
    replicas = []
    try:
        for n in range(2):  # a waiting replica answers its liveness probe too
            replicas.append(
                stack.start_program(
                    d / "logs",
                    f"vc-manager-replica-{n}",
                    lambda port, n=n: [
                        "manager",
                        f"--super-kubeconfig={kc}",
                        f"--state-dir={d}",
                        f"--etcd-servers=http://127.0.0.1:{etcd.port}",
                        f"--health-port={port}",
                        f"--leader-namespace={rbac.NAMESPACE}",
                        f"--identity=replica-{n}",
                    ],
                )
            )
        lease = await eventually(
            lambda: super_client.get_or_none(r.LEASES, "vc-manager-leader", rbac.NAMESPACE), what="a leader"
        )
        leader = lease["spec"]["holderIdentity"]
        await super_client.create(r.VIRTUALCLUSTERS, tenants.virtual_cluster("led-1", "default"), "default")
        await tenants.wait_phase(super_client, "led-1", "default", timeout=180)
        victim = replicas[int(leader.rsplit("-", 1)[1])]
        os.kill(victim.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        await super_client.create(r.VIRTUALCLUSTERS, tenants.virtual_cluster("led-2", "default"), "default")
        await tenants.wait_phase(super_client, "led-2", "default", timeout=180)
        took = time.monotonic() - killed
        lease = await super_client.get(r.LEASES, "vc-manager-leader", rbac.NAMESPACE)
        assert lease["spec"]["holderIdentity"] != leader
        print(f"failover: the second VirtualCluster Running {took:.1f}s after the leader was killed")
        for name in ("led-1", "led-2"):
            await super_client.delete(r.VIRTUALCLUSTERS, name, "default")
        for name in ("led-1", "led-2"):
            await tenants.wait_gone(super_client, name, "default")
    finally:
        for c in replicas:
            procs.stop(c.proc)
        manager.start()
    assert not processes_mentioning("vc-manager-replica")
