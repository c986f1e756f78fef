"""The process provisioner's supervision and teardown, on real (stand-in) processes."""

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers import processes_mentioning
from tispace import procs
from vc_manager.provisioners.process import ProcessProvisioner
from vc_manager.settings import Settings
from vc_manager.tenant import Tenant


async def test_supervision_never_respawns_what_teardown_is_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervise daemon runs beside the delete handler: a component teardown has just stopped
    looks crashed, and restarting it would leave a control plane process running after the delete."""
    prov = ProcessProvisioner(Settings(super_kubeconfig=tmp_path / "kc", state_dir=tmp_path), client=None)  # type: ignore[arg-type]
    tenant = Tenant(name="doomed", namespace="default", uid=str(uuid.uuid4()), spec={}, version={})
    marker = f"tispace-test-{uuid.uuid4()}"
    logs = prov.dir(tenant) / "logs"
    comps = [
        procs.Component(
            procs.spawn(name, [sys.executable, "-c", "import time; time.sleep(600)", marker], logs / name),
            port=0,
            health="",
        )
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "coredns")
    ]
    procs.Registry(prov.dir(tenant) / "procs.json").save(comps)
    stop = procs.stop

    def slow_stop(proc: procs.Proc, timeout: float = 10.0) -> None:
        stop(proc, timeout)
        time.sleep(0.3)  # a real component takes a while to stop: supervision gets its turn meanwhile

    monkeypatch.setattr(procs, "stop", slow_stop)
    teardown = asyncio.create_task(prov.teardown(tenant))
    try:
        while not teardown.done():
            await prov.supervise(tenant, tpki=None)  # type: ignore[arg-type]
            await asyncio.sleep(0.05)
        await teardown
        assert not prov.dir(tenant).exists()
        assert not processes_mentioning(marker)
    finally:
        for p in processes_mentioning(marker):
            os.kill(int(p.name), signal.SIGKILL)
