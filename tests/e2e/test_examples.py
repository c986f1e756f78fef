"""The examples a developer follows, applied to a real tenant: examples/tiup (issue: tidb-operator
and TiUP in a tenant)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tests.e2e.conftest import SyncerProc, TenantHandle
from tests.e2e.helpers import answer, bound, eventually, resolver, running
from tispace.kube import resources as r
from tispace.kube.client import Client

ROOT = Path(__file__).resolve().parents[2]


async def test_tiup_hosts_are_vms_with_volumes_and_the_names_the_topology_uses(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("tiup-dev")
    key = base64.b64encode(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q= dev@example\n").decode()
    secret = {"metadata": {"name": "tiup-ssh"}, "data": {"authorized_keys": key}}
    await t.client.create(r.SECRETS, secret, "default")
    t.kubectl("apply", "-k", str(ROOT / "examples" / "tiup"))
    sns = f"{t.root}-default"
    await eventually(lambda: running(t.client, "default", 3, "app=tiup"), timeout=120, what="3 hosts Running")
    hosts = await eventually(lambda: running(super_client, sns, 3, "app=tiup"), what="3 super pods")
    for p in hosts:
        spec = p["spec"]
        assert spec["runtimeClassName"] == "kata"  # privileged only inside its own VM
        assert spec["containers"][0]["securityContext"]["privileged"] is True
        assert (spec["hostname"], spec["subdomain"]) == (p["metadata"]["name"], "tiup-hosts")
    claims = await eventually(lambda: bound(super_client, sns, 3), timeout=120, what="3 Ceph claims Bound")
    assert {c["spec"]["storageClassName"] for c in claims} == {"rook-ceph-block"}
    # The key reaches the VMs (the syncer's workers take the secret and the pods in any order).
    await eventually(lambda: super_client.get_or_none(r.SECRETS, "tiup-ssh", sns), what="tiup-ssh down")
    # Every host named in the topology file resolves, in the tenant's DNS, to its VM's address.
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in hosts}
    topology = yaml.safe_load((ROOT / "examples" / "tiup" / "topology.yaml").read_text())
    names = {h["host"] for role in topology.values() if isinstance(role, list) for h in role}
    dns = resolver(await super_client.get(r.VIRTUALCLUSTERS, "tiup-dev", "default"))
    assert len(names) == 3
    for name in names:
        want = [ips[name.split(".")[0]]]
        assert await eventually(lambda name=name: answer(dns, name), what=name) == want
