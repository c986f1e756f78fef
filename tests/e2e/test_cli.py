"""`tispace up / status / down` as a user runs them, on a second local cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import processes_mentioning
from tispace import procs
from tispacectl import localcluster


def tispace(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "tispacectl", *args], capture_output=True, text=True, timeout=300
    )
    if check and out.returncode != 0:
        raise AssertionError(f"tispace {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def _pids(state: Path) -> list[procs.Proc]:
    comps = (
        procs.Registry(state / "super-state.json").load()
        + procs.Registry(state / "tispace-state.json").load()
    )
    return [c.proc for c in comps]


def _ports(state: Path) -> list[int]:
    comps = (
        procs.Registry(state / "super-state.json").load()
        + procs.Registry(state / "tispace-state.json").load()
    )
    return [c.port for c in comps]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    yield d
    tispace("down", "--state-dir", str(d), check=False)


def test_up_is_idempotent_recovers_and_down_leaves_nothing(state: Path) -> None:
    out = tispace("up", "--state-dir", str(state), "--nodes", "1")
    assert "kubectl --kubeconfig" in out.stdout
    portal = re.search(r"portal: (http://127\.0\.0\.1:\d+) \(log in as developer / (\S+),", out.stdout)
    assert portal, out.stdout
    assert procs.healthy(f"{portal[1]}/login")
    assert json.loads((state / "portal" / "users.json").read_text())["developer"]["password"] == portal[2]
    first = _pids(state)
    assert first and all(procs.alive(p) for p in first)

    assert "already running" in tispace("up", "--state-dir", str(state)).stdout
    assert _pids(state) == first  # reused, not duplicated

    status = tispace("status", "--state-dir", str(state)).stdout
    for name in (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "vc-manager",
        "syncer",
        "oidc-provider",
        "portal",
        "kube-controll",
    ):
        assert name in status
    assert "1 tenants, queue depth" in status  # the syncer serves the sample tenant
    assert (state / "tenants" / "dev.kubeconfig").exists()

    # A killed run leaves stale state: the next `up` notices and recovers.
    api = next(p for p in first if p.name == "kube-apiserver")
    os.kill(api.pid, signal.SIGKILL)
    assert tispace("status", "--state-dir", str(state), check=False).returncode == 1
    assert "stale state" in tispace("up", "--state-dir", str(state)).stdout
    second = _pids(state)
    assert all(procs.alive(p) for p in second)
    nodes = json.loads(localcluster.kubectl(state / "super.kubeconfig", "get", "nodes", "-o", "json"))
    assert len(nodes["items"]) == 1

    ports = _ports(state)
    tispace("down", "--state-dir", str(state))
    assert not any(procs.alive(p) for p in first + second)
    assert not any(procs.port_open(port) for port in ports)
    assert tispace("status", "--state-dir", str(state), check=False).returncode == 1


def test_up_against_an_existing_super_cluster(state: Path, tmp_path: Path) -> None:
    """A separately started cluster stands in for a kind or production cluster."""
    existing = localcluster.SuperCluster(tmp_path / "existing", localcluster.NodeSpec(count=1))
    existing.up()
    try:
        out = tispace("up", "--state-dir", str(state), "--super-kubeconfig", str(existing.kubeconfig))
        assert str(existing.kubeconfig) in out.stdout
        assert not (state / "super-state.json").exists()  # no second cluster was started
        assert "1 tenants" in tispace("status", "--state-dir", str(state)).stdout
        # Without access to the super etcd, the tenant runs its own etcd next to its API server.
        assert "/etcd" in tispace("status", "--state-dir", str(state)).stdout
        tispace("down", "--state-dir", str(state))
        assert existing.running()  # `down` never stops a cluster it did not start
    finally:
        existing.down()


def test_unreachable_super_cluster_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.kubeconfig"
    bad.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: x, cluster: {{server: 'https://127.0.0.1:{procs.free_port()}'}}}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\nusers: [{name: x, user: {}}]\n"
    )
    out = tispace("up", "--state-dir", str(tmp_path / "s"), "--super-kubeconfig", str(bad), check=False)
    assert out.returncode == 1
    assert "not reachable" in out.stdout


def test_ctrl_c_during_up_leaves_nothing_running(tmp_path: Path) -> None:
    state = tmp_path / "interrupted"
    up = subprocess.Popen(
        [sys.executable, "-m", "tispacectl", "up", "--state-dir", str(state), "--nodes", "1"],
        stdout=subprocess.PIPE,
        text=True,
        # As from a terminal: a suite started in the background (nohup, `cmd &`) ignores SIGINT, and
        # Python keeps an inherited SIG_IGN, so the Ctrl-C below would be lost.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert up.stdout is not None
    try:
        for line in up.stdout:  # interrupt once the control plane is half started
            if "starting kube-apiserver" in line:
                break
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 130 and "interrupted: everything started by this run was stopped" in rest
        assert processes_mentioning(str(state)) == []
    finally:  # had the interrupt been lost, a whole stack would run on after the test
        up.kill()
        tispace("down", "--state-dir", str(state), check=False)
