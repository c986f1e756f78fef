"""VirtualCluster -> a private, working tenant control plane (issue: vc_manager)."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import ManagerProc, TenantHandle
from tests.e2e.helpers import established, eventually, processes_mentioning
from tispace import kubeconfig, procs, tenants
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispacectl import bench, localcluster
from vc_manager.provisioners import tuning
from vc_manager.provisioners.process import count_etcd_prefix

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                        },
                    }
                },
            }
        ],
    },
}


def _tenant_procs(cluster: localcluster.SuperCluster, root: str) -> list[procs.Proc]:
    return [c.proc for c in procs.Registry(cluster.dir / "tenants" / root / "procs.json").load()]


def _etcd(cluster: localcluster.SuperCluster) -> str:
    return f"http://127.0.0.1:{next(c for c in cluster.components() if c.name == 'etcd').port}"


async def test_tenant_runs_and_takes_namespaces_crds_and_custom_objects(
    tenant_factory, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    t: TenantHandle = await tenant_factory("alpha", owner="alice@example.com")
    vc = await super_client.get(r.VIRTUALCLUSTERS, "alpha", "default")
    st = vc["status"]
    assert st["phase"] == "Running" and st["clusterNamespace"] == t.root
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Ready": "True",
        "ControlPlaneReady": "True",
    }
    assert st["observedGeneration"] == vc["metadata"]["generation"]
    for secret in (
        "root-ca",
        "apiserver-ca",
        "etcd-ca",
        "front-proxy-ca",
        "serviceaccount-rsa",
        "admin-kubeconfig",
    ):
        assert await super_client.get_or_none(r.SECRETS, secret, t.root), secret

    t.kubectl("create", "namespace", "team")
    t.kubectl("apply", "-f", "-", stdin=json.dumps(CRD))
    await eventually(lambda: established(t.client, "widgets.example.com"), what="CRD established")
    t.kubectl(
        "apply",
        "-n",
        "team",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w1"},
                "spec": {"size": 3},
            }
        ),
    )
    assert json.loads(t.kubectl("get", "widget", "w1", "-n", "team", "-o", "json"))["spec"]["size"] == 3

    # Service-account machinery works as in any cluster: the default SA appears in a new namespace.
    sa = await eventually(
        lambda: t.client.get_or_none(r.SERVICEACCOUNTS, "default", "team"), what="default SA"
    )
    assert sa["metadata"]["name"] == "default"
    # Printer columns for admins.
    out = localcluster.kubectl(super_cluster.kubeconfig, "get", "vc", "alpha")
    assert "Running" in out and "alice@example.com" in out

    # The control plane runs tuned to stay small when idle (the tenant above works all the same).
    running = {p.name: p for p in _tenant_procs(super_cluster, t.root)}
    for name, env in tuning.GO_ENV.items():
        environ = Path(f"/proc/{running[name].pid}/environ").read_bytes().split(b"\0")
        assert all(f"{k}={v}".encode() in environ for k, v in env.items()), name
    for name, flags in tuning.FLAGS.items():
        cmdline = Path(f"/proc/{running[name].pid}/cmdline").read_bytes().decode().split("\0")
        assert set(flags) <= set(cmdline), name
    # The resources without a watch cache are listed and watched from etcd, the same API.
    cached = {
        (sample.labels["group"], sample.labels["resource"])
        for sample in bench.samples(
            await t.client.get_text("/metrics"), "apiserver_watch_cache_initializations_total"
        )
    }
    uncached = {(group, resource) for resource, _, group in (u.partition(".") for u in tuning.UNCACHED)}
    assert ("", "pods") in cached and ("rbac.authorization.k8s.io", "clusterroles") in uncached
    assert not cached & uncached
    since = (await t.client.list(r.CLUSTERROLES))["metadata"]["resourceVersion"]

    async def heard() -> str:
        async for event in t.client.watch(r.CLUSTERROLES, resource_version=since, timeout_seconds=60):
            if event["object"]["metadata"].get("name") == "uncached":
                return str(event["type"])
        return "nothing"

    watching = asyncio.create_task(heard())
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "uncached"},
    }
    try:
        await t.client.create(r.CLUSTERROLES, role)
        assert await asyncio.wait_for(watching, 60) == "ADDED"
    finally:
        watching.cancel()


async def test_two_tenants_are_isolated(tenant_factory, super_cluster: localcluster.SuperCluster) -> None:
    a: TenantHandle = await tenant_factory("iso-a")
    b: TenantHandle = await tenant_factory("iso-b")
    a.kubectl("create", "namespace", "only-in-a")
    assert "only-in-a" not in b.kubectl("get", "namespaces", "-o", "name")

    a_creds = kubeconfig.load(a.kubeconfig)
    # A's credentials against B's API server and against the super cluster: rejected.
    for server, ca in (
        (kubeconfig.load(b.kubeconfig).server, kubeconfig.load(b.kubeconfig).ca_pem),
        (kubeconfig.load(super_cluster.kubeconfig).server, kubeconfig.load(super_cluster.kubeconfig).ca_pem),
    ):
        forged = kubeconfig.Credentials(
            server=server, ca_pem=ca, cert_pem=a_creds.cert_pem, key_pem=a_creds.key_pem
        )
        async with Client(forged, attempts=1) as c:
            with pytest.raises(ApiError) as err:
                await c.list(r.NAMESPACES)
            assert err.value.status == 401


async def test_user_kubeconfig_is_admin_in_the_tenant_only(
    tenant_factory, super_client: Client, super_cluster: localcluster.SuperCluster, tmp_path: Path
) -> None:
    t: TenantHandle = await tenant_factory("users")
    config = await tenants.user_kubeconfig(
        super_client, await super_client.get(r.VIRTUALCLUSTERS, "users", "default"), "alice"
    )
    path = kubeconfig.write(tmp_path / "alice", config)
    assert (
        localcluster.kubectl(path, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}") == "alice"
    )
    assert localcluster.kubectl(path, "auth", "can-i", "*", "*").strip() == "yes"
    alice = kubeconfig.load(path)
    sup = kubeconfig.load(super_cluster.kubeconfig)
    async with Client(
        kubeconfig.Credentials(sup.server, sup.ca_pem, alice.cert_pem, alice.key_pem), attempts=1
    ) as c:
        with pytest.raises(ApiError) as err:
            await c.list(r.NAMESPACES)
        assert err.value.status == 401
    # The CLI prints the same kind of kubeconfig.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tispacectl",
            "kubeconfig",
            "users",
            "--user",
            "bob",
            "--super-kubeconfig",
            str(super_cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (
        yaml.safe_load(out.stdout)["clusters"][0]["cluster"]["server"] == kubeconfig.load(t.kubeconfig).server
    )


async def test_delete_leaves_no_process_etcd_key_or_namespace(
    manager: ManagerProc, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    await super_client.create(r.VIRTUALCLUSTERS, tenants.virtual_cluster("gone"), "default")
    await tenants.wait_phase(super_client, "gone", "default")
    root = await tenants.root_of(super_client, "gone", "default")
    running = _tenant_procs(super_cluster, root)
    assert running and all(procs.alive(p) for p in running)
    assert await count_etcd_prefix(_etcd(super_cluster), f"/tenants/{root}/") > 0

    await super_client.delete(r.VIRTUALCLUSTERS, "gone", "default")
    await tenants.wait_gone(super_client, "gone", "default")
    assert not any(procs.alive(p) for p in running)
    assert await count_etcd_prefix(_etcd(super_cluster), f"/tenants/{root}/") == 0
    assert await super_client.get_or_none(r.NAMESPACES, root) is None
    assert not (super_cluster.dir / "tenants" / root).exists()


async def test_manager_restart_adopts_without_duplicates_and_crashed_apiserver_returns(
    tenant_factory, manager: ManagerProc, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    t: TenantHandle = await tenant_factory("sturdy")
    before = {p.name: p for p in _tenant_procs(super_cluster, t.root)}
    # kopf posts events from a queue: count once the first reconcile's Running event is there.
    running_events = await eventually(
        lambda: _events(super_client, "sturdy", "Running"), what="Running event"
    )
    manager.kill()
    manager.start()
    # Each reconcile ends with a Running event: once the new manager has resumed this tenant...
    await eventually(lambda: _more(super_client, running_events), what="manager resumed the tenant")

    # ...it adopted the running processes: it restarts the apiserver we kill...
    api = before["kube-apiserver"]
    os.kill(api.pid, signal.SIGKILL)

    async def restarted() -> bool:
        now = next(p for p in _tenant_procs(super_cluster, t.root) if p.name == "kube-apiserver")
        return (
            now.pid != api.pid
            and procs.alive(now)
            and procs.healthy(f"{kubeconfig.load(t.kubeconfig).server}/readyz")
        )

    await eventually(restarted, timeout=90, what="tenant apiserver restarted")
    # ...and never started a duplicate of what kept running.
    after = {p.name: p for p in _tenant_procs(super_cluster, t.root)}
    assert after["kube-controller-manager"].pid == before["kube-controller-manager"].pid
    apiservers = processes_mentioning("kube-apiserver", f"/tenants/{t.root}/registry")
    assert len(apiservers) == 1
    assert "default" in t.kubectl("get", "namespaces", "-o", "name")

    async def degraded_then_recovered() -> bool:
        out = localcluster.kubectl(
            super_cluster.kubeconfig,
            "get",
            "events",
            "-n",
            "default",
            "--field-selector=involvedObject.name=sturdy",
            "-o",
            "json",
        )
        return {"ControlPlaneDegraded", "Recovered"} <= {e["reason"] for e in json.loads(out)["items"]}

    await eventually(degraded_then_recovered, what="Degraded and Recovered events")
    vc = await super_client.get(r.VIRTUALCLUSTERS, "sturdy", "default")
    assert {c["type"]: c["status"] for c in vc["status"]["conditions"]}["ControlPlaneReady"] == "True"


async def _events(client: Client, name: str, reason: str) -> int:
    items = (await client.list(r.EVENTS, "default"))["items"]
    return sum(1 for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason)


async def _more(client: Client, than: int) -> bool:
    return await _events(client, "sturdy", "Running") > than


async def test_unknown_cluster_version_is_an_error_until_it_exists(
    manager: ManagerProc, super_client: Client
) -> None:
    await super_client.create(r.VIRTUALCLUSTERS, tenants.virtual_cluster("later", version="v9.9"), "default")
    vc = await tenants.wait_phase(super_client, "later", "default", phases=("Error",), timeout=180)
    assert vc["status"]["reason"] == "ClusterVersionNotFound"
    assert "v9.9" in vc["status"]["message"]
    await super_client.create(r.CLUSTERVERSIONS, tenants.cluster_version("v9.9"))
    await tenants.wait_phase(super_client, "later", "default", timeout=180)
    await super_client.delete(r.VIRTUALCLUSTERS, "later", "default")
    await tenants.wait_gone(super_client, "later", "default")


async def test_bad_input_ends_in_clear_states(manager: ManagerProc, super_client: Client) -> None:
    long_name = "n" * 50
    await super_client.create(r.NAMESPACES, {"metadata": {"name": "a-team-with-a-long-namespace"}})
    await super_client.create(
        r.VIRTUALCLUSTERS,
        tenants.virtual_cluster(long_name, "a-team-with-a-long-namespace"),
        "a-team-with-a-long-namespace",
    )
    vc = await tenants.wait_phase(super_client, long_name, "a-team-with-a-long-namespace", phases=("Error",))
    assert vc["status"]["reason"] == "InvalidName" and "at most 55 characters" in vc["status"]["message"]
    await super_client.delete(r.VIRTUALCLUSTERS, long_name, "a-team-with-a-long-namespace")
    await tenants.wait_gone(super_client, long_name, "a-team-with-a-long-namespace")

    # Invalid spec is refused by the API schema; a second object of the same name by the API server.
    with pytest.raises(ApiError) as err:
        await super_client.create(
            r.VIRTUALCLUSTERS, tenants.virtual_cluster("bad", pkiExpireDays=0), "default"
        )
    assert err.value.status == 422
    with pytest.raises(ApiError) as err:
        await super_client.create(
            r.VIRTUALCLUSTERS, tenants.virtual_cluster("bad", provisioner="import"), "default"
        )
    assert err.value.status == 422 and "importKubeconfigSecret" in err.value.message


async def test_native_provisioner_renders_a_valid_control_plane(
    manager: ManagerProc, super_client: Client
) -> None:
    await super_client.create(
        r.VIRTUALCLUSTERS, tenants.virtual_cluster("nat", provisioner="native"), "default"
    )
    vc = await tenants.wait_phase(
        super_client, "nat", "default", phases=("Provisioning", "Running"), timeout=180
    )
    root = vc["status"]["clusterNamespace"]
    from vc_manager.provisioners import native

    # The controller-manager StatefulSet is applied last: once it exists, everything does.
    await eventually(lambda: super_client.get_or_none(r.STATEFULSETS, "controller-manager", root), what="sts")
    sts = await super_client.get(r.STATEFULSETS, "apiserver", root)
    args = sts["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--enable-aggregator-routing=true" in args
    for name in ("etcd", "controller-manager"):
        assert await super_client.get_or_none(r.STATEFULSETS, name, root)
    for name in ("etcd", "apiserver"):
        assert await super_client.get_or_none(r.SERVICES, name, root)
    fences = {p["metadata"]["name"] for p in (await super_client.list(r.NETWORKPOLICIES, root))["items"]}
    assert fences == {"apiserver-egress", "controller-manager-egress", "etcd-ingress"}
    # Server-side dry-run of the rendered objects succeeds against the real API.
    tenant = await manager_tenant(super_client, "nat")
    for obj in native.render(tenant, "10.96.0.0/16"):
        await super_client.request(
            "PATCH",
            r.BY_KIND[obj["kind"]].path(root, obj["metadata"]["name"]),
            params={"dryRun": "All", "fieldManager": "test", "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    # KWOK plays the StatefulSets' pods, so the super cluster reports them ready; the next step, the
    # tenant DNS add-on, needs the tenant API server itself, which only a real kubelet would run: the
    # tenant stays Provisioning and says why.
    async def waiting_for_dns() -> dict | None:
        vc = await super_client.get(r.VIRTUALCLUSTERS, "nat", "default")
        return vc if "DNS add-on" in (vc.get("status") or {}).get("message", "") else None

    vc = await eventually(waiting_for_dns, timeout=90, what="the DNS add-on step reached")
    assert vc["status"]["phase"] == "Provisioning"
    assert f"apiserver.{root}.svc" in vc["status"]["message"]
    await super_client.delete(r.VIRTUALCLUSTERS, "nat", "default")
    await tenants.wait_gone(super_client, "nat", "default")
    assert await super_client.get_or_none(r.NAMESPACES, root) is None


async def manager_tenant(client: Client, name: str):
    from vc_manager.tenant import Tenant

    vc = await client.get(r.VIRTUALCLUSTERS, name, "default")
    cv = await client.get(r.CLUSTERVERSIONS, vc["spec"]["clusterVersionName"])
    return Tenant(
        name=name, namespace="default", uid=vc["metadata"]["uid"], spec=vc["spec"], version=cv["spec"]
    )


async def test_import_provisioner_adopts_an_existing_cluster(tenant_factory, super_client: Client) -> None:
    source: TenantHandle = await tenant_factory("source")
    await super_client.create(
        r.SECRETS,
        {
            "metadata": {"name": "source-kubeconfig"},
            "data": {"kubeconfig": base64.b64encode(source.kubeconfig.read_bytes()).decode()},
        },
        "default",
    )
    await super_client.create(
        r.VIRTUALCLUSTERS,
        tenants.virtual_cluster("imported", provisioner="import", importKubeconfigSecret="source-kubeconfig"),
        "default",
    )
    await tenants.wait_phase(super_client, "imported", "default", timeout=180)
    admin = await tenants.admin_kubeconfig(super_client, "imported", "default")
    assert kubeconfig.credentials(admin).server == kubeconfig.load(source.kubeconfig).server
    await super_client.delete(r.VIRTUALCLUSTERS, "imported", "default")
    await tenants.wait_gone(super_client, "imported", "default")
    assert "default" in source.kubectl(
        "get", "namespaces", "-o", "name"
    )  # the imported cluster was left alone


async def test_delete_while_provisioning_leaves_nothing(
    manager: ManagerProc, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    await super_client.create(r.VIRTUALCLUSTERS, tenants.virtual_cluster("hasty"), "default")

    async def provisioning() -> str | None:
        st = (await super_client.get(r.VIRTUALCLUSTERS, "hasty", "default")).get("status") or {}
        return st.get("clusterNamespace") if st.get("phase") == "Provisioning" else None

    root = await eventually(provisioning, what="hasty provisioning")
    await super_client.delete(r.VIRTUALCLUSTERS, "hasty", "default")
    await tenants.wait_gone(super_client, "hasty", "default")
    assert processes_mentioning(f"/tenants/{root}/") == []
    assert await count_etcd_prefix(_etcd(super_cluster), f"/tenants/{root}/") == 0
    assert await super_client.get_or_none(r.NAMESPACES, root) is None
    assert not (super_cluster.dir / "tenants" / root).exists()


async def _control_plane(client: Client, name: str) -> dict:
    vc = await client.get(r.VIRTUALCLUSTERS, name, "default")
    return next(c for c in vc["status"]["conditions"] if c["type"] == "ControlPlaneReady")


async def test_crash_loop_and_broken_secrets_are_reported_and_recover(
    tenant_factory, manager: ManagerProc, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    t: TenantHandle = await tenant_factory("shaky")

    # A tenant apiserver that cannot start is restarted with backoff and reported as crash-looping.
    key = super_cluster.dir / "tenants" / t.root / "pki" / "apiserver.key"
    good = key.read_bytes()
    key.write_bytes(b"not a key")
    api = next(p for p in _tenant_procs(super_cluster, t.root) if p.name == "kube-apiserver")
    os.kill(api.pid, signal.SIGKILL)

    async def crash_looping() -> dict | None:
        cp = await _control_plane(super_client, "shaky")
        return cp if cp["status"] == "False" and "crash-looping" in cp["message"] else None

    cp = await eventually(crash_looping, what="crash loop reported")
    assert cp["reason"] == "ControlPlaneDegraded" and "kube-apiserver" in cp["message"]
    key.write_bytes(good)

    async def ready() -> bool:
        return (await _control_plane(super_client, "shaky"))["status"] == "True"

    await eventually(ready, timeout=120, what="recovered after the key came back")
    assert "default" in t.kubectl("get", "namespaces", "-o", "name")

    # A PKI secret deleted under a running tenant: a condition names it; restoring it recovers.
    saved = await super_client.get(r.SECRETS, "kubelet-client", t.root)
    await super_client.delete(r.SECRETS, "kubelet-client", t.root)

    async def incomplete() -> dict | None:
        cp = await _control_plane(super_client, "shaky")
        return cp if cp["reason"] == "PKIIncomplete" else None

    cp = await eventually(incomplete, what="missing secret reported")
    assert cp["status"] == "False" and "kubelet-client" in cp["message"]
    vc = await super_client.get(r.VIRTUALCLUSTERS, "shaky", "default")
    assert {c["type"]: c["status"] for c in vc["status"]["conditions"]}["Ready"] == "False"
    saved["metadata"] = {k: saved["metadata"][k] for k in ("name", "namespace", "labels")}
    await super_client.create(r.SECRETS, saved, t.root)
    await eventually(ready, what="recovered after the secret came back")

    # The admin kubeconfig is derived data: the manager writes it again.
    await super_client.delete(r.SECRETS, "admin-kubeconfig", t.root)

    async def restored() -> bool:
        return await super_client.get_or_none(r.SECRETS, "admin-kubeconfig", t.root) is not None

    await eventually(restored, what="admin-kubeconfig restored")

    async def announced() -> bool:  # kopf posts events from a queue, after the secret is written
        return await _events(super_client, "shaky", "AdminKubeconfigRestored") >= 1

    await eventually(announced, what="AdminKubeconfigRestored event")


async def test_manager_killed_while_provisioning_and_while_deleting_leaves_no_half_tenant(
    manager: ManagerProc, super_client: Client, super_cluster: localcluster.SuperCluster
) -> None:
    await super_client.create(r.VIRTUALCLUSTERS, tenants.virtual_cluster("jolted"), "default")

    async def provisioning() -> str | None:
        st = (await super_client.get(r.VIRTUALCLUSTERS, "jolted", "default")).get("status") or {}
        return st.get("clusterNamespace") if st.get("phase") == "Provisioning" else None

    root = await eventually(provisioning, what="jolted provisioning")
    manager.kill()
    killed = time.monotonic()
    manager.start()
    await tenants.wait_phase(super_client, "jolted", "default", timeout=180)
    print(f"manager kill -9 while provisioning: Running {time.monotonic() - killed:.1f}s later")
    for component in ("kube-apiserver", "kube-controller-manager", "coredns"):
        assert len(processes_mentioning(component, f"/tenants/{root}/")) == 1, component

    await super_client.delete(r.VIRTUALCLUSTERS, "jolted", "default")

    async def terminating() -> bool:
        vc = await super_client.get_or_none(r.VIRTUALCLUSTERS, "jolted", "default")
        return vc is None or (vc.get("status") or {}).get("phase") == "Terminating"  # deletion may be quick

    await eventually(terminating, what="jolted terminating")
    manager.kill()
    killed = time.monotonic()
    manager.start()
    await tenants.wait_gone(super_client, "jolted", "default")
    print(f"manager kill -9 while deleting: gone {time.monotonic() - killed:.1f}s later")
    assert processes_mentioning(f"/tenants/{root}/") == []
    assert await count_etcd_prefix(_etcd(super_cluster), f"/tenants/{root}/") == 0
    assert await super_client.get_or_none(r.NAMESPACES, root) is None


def _large_crd(min_bytes: int) -> dict:
    """A CRD as big as tidb-operator's TidbCluster (over 1 MB): many documented properties."""
    crd = copy.deepcopy(CRD)
    crd["metadata"]["name"] = "bigs.example.com"
    crd["spec"]["names"] = {"kind": "Big", "plural": "bigs", "singular": "big"}
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    n = 0
    while len(json.dumps(crd)) < min_bytes:
        props[f"field{n:05d}"] = {"type": "string", "description": "x" * 400}
        n += 1
    return crd


async def test_a_crd_over_a_megabyte_is_taken_by_create_and_server_side_apply(tenant_factory) -> None:
    """What tidb-operator's CRDs need: client-side `kubectl apply` cannot (its annotation is capped at
    256 KiB), `kubectl create` and server-side apply must."""
    t: TenantHandle = await tenant_factory("big-crd")
    crd = _large_crd(1_100_000)
    t.kubectl("create", "-f", "-", stdin=json.dumps(crd))
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["extra"] = {
        "type": "integer"
    }
    t.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(crd))
    await eventually(lambda: established(t.client, "bigs.example.com"), what="CRD established")
    t.kubectl(
        "create",
        "-f",
        "-",
        stdin=json.dumps(
            {"apiVersion": "example.com/v1", "kind": "Big", "metadata": {"name": "b"}, "spec": {"extra": 1}}
        ),
    )
    assert json.loads(t.kubectl("get", "big", "b", "-o", "json"))["spec"] == {"extra": 1}
