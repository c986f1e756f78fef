"""tidb-operator v2 and v1, installed in a tenant with their own helm charts, reconciling for real.

The operator binaries are built from their release sources by scripts/install-tidb-operator.sh
and run as local processes against the tenant API server with the chart's service account
token (not cluster-admin). Pods are KWOK's, so nothing answers on PD's port: each test asserts
what fake pods allow, and stops where the operator needs a real PD (README of examples/tidb-operator).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import SyncerProc, TenantHandle
from tests.e2e.helpers import absent, all_established, answer, eventually, live_pods, resolver
from tispace import naming, procs, rbac
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispace.kube.resources import Resource
from tispacectl import localcluster

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-tidb-operator.sh"
EXAMPLES = REPO / "examples" / "tidb-operator"
V2 = "v2.0.1"
CORE = "core.pingcap.com"
PDS = Resource(CORE, "v1alpha1", "pds", "PD", True)
TIKVS = Resource(CORE, "v1alpha1", "tikvs", "TiKV", True)
TIDBS = Resource(CORE, "v1alpha1", "tidbs", "TiDB", True)
CLUSTERS = Resource(CORE, "v1alpha1", "clusters", "Cluster", True)
TIDBCLUSTERS = Resource("pingcap.com", "v1alpha1", "tidbclusters", "TidbCluster", True)
VAPS = r.VALIDATINGPOLICIES

API_REFUSED = re.compile(
    r"is forbidden|Unauthorized|cannot find openapi doc|should be installed before calling Start|"
    r"Could not wait for Cache to sync|the server could not find the requested resource|no matches for kind|"
    r"denied request|admission webhook|is invalid"
)
"""The API refusing the operator, anywhere in its log (not: PD cannot be reached, which fake pods cause)."""
RACE = re.compile(
    r"already exists|the object has been modified|[a-z][a-z0-9.-]* \\?\"[^\"\\]+\\?\" not found"
)
"""Races of the operator's own caches while it makes a cluster's objects (a group seen before its
Cluster): fine at the start, a loop once the cluster has settled."""


@pytest.fixture(scope="module")
def tidb_root() -> Path:
    """The built operators, helm, charts, CRDs and examples (seconds when cached)."""
    subprocess.run(["bash", str(SCRIPT)], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["bash", str(SCRIPT), "--print-bin"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip()).parent


def kubectl(t: TenantHandle, *args: str, stdin: str | None = None) -> str:
    """kubectl with room for CRDs of several MB."""
    return localcluster.kubectl(t.kubeconfig, *args, stdin=stdin, timeout=300)


def helm_install(root: Path, t: TenantHandle, version_dir: Path, *values: str) -> str:
    """`helm install` of the operator's own chart into namespace tidb-admin, waiting for its pods."""
    chart = version_dir / "charts" / "tidb-operator"
    args = ["install", "tidb-operator", str(chart), "--namespace=tidb-admin", "--create-namespace", "--wait"]
    out = subprocess.run(
        [str(root / "bin" / "helm"), f"--kubeconfig={t.kubeconfig}", *args, "--timeout=5m", *values],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"
    return out.stdout


@pytest.fixture
def operator_procs() -> Iterator[list[procs.Proc]]:
    started: list[procs.Proc] = []
    yield started
    for p in started:
        procs.stop(p)


def condition(obj: dict, kind: str) -> str | None:
    return next(
        (c["status"] for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), None
    )


def log_lines(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines()


def api_errors(log: Path, settled_at: int) -> tuple[list[str], int]:
    """Lines where the API refused the operator, and how many errors of a race it met once settled
    (after line `settled_at`)."""
    lines = log_lines(log)
    races = [ln for ln in lines[settled_at:] if RACE.search(ln) and "error" in ln.lower()]
    return [ln for ln in lines if API_REFUSED.search(ln)], len(races)


async def super_pod_of(super_client: Client, t: TenantHandle, tenant_pod: dict) -> dict | None:
    sns = f"{t.root}-{tenant_pod['metadata']['namespace']}"
    return await super_client.get_or_none(r.PODS, tenant_pod["metadata"]["name"], sns)


async def test_tidb_operator_v2_reconciles_a_cluster_inside_a_tenant(
    syncer: SyncerProc, tenant_factory, super_client: Client, tidb_root: Path, operator_procs, tmp_path: Path
) -> None:
    t: TenantHandle = await tenant_factory("tidb-v2")
    v2 = tidb_root / "v2"
    # The CRDs as the docs install them: server-side apply (up to 1.3 MB each).
    kubectl(t, "apply", "--server-side", "-f", str(v2 / "manifests" / "crd"))
    crds = await eventually(lambda: all_established(t.client), timeout=180, what="CRDs established")
    assert {
        "clusters.core.pingcap.com",
        "backupschedules.br.pingcap.com",
        "tikvgroups.core.pingcap.com",
    } <= crds

    images = [f"--set={k}.image.tag={V2}" for k in ("operator", "backupManager", "prestopChecker")]
    began = time.monotonic()
    helm_install(tidb_root, t, v2, *images)
    print(f"v2: helm install to the operator's pod Running: {time.monotonic() - began:.1f}s")
    vaps = {p["metadata"]["name"] for p in (await t.client.list(VAPS))["items"]}
    assert {"delete-pod.policy.pingcap.com", "volume-storage.policy.pingcap.com"} <= vaps
    [chart_pod] = await live_pods(t.client, "tidb-admin", "app.kubernetes.io/component=tidb-operator")
    assert chart_pod["status"]["phase"] == "Running"
    down = await super_pod_of(super_client, t, chart_pod)
    assert down is not None and down["spec"]["runtimeClassName"] == "kata"
    env = {e["name"]: e for e in down["spec"]["containers"][0]["env"]}
    assert env["KUBERNETES_SERVICE_HOST"]["value"] == "127.0.0.1"  # the tenant API server, not the super's
    assert (
        env["NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
        == f"metadata.annotations['{naming.ANN_NAMESPACE}']"
    )

    async def openapi_published() -> bool:  # the operator exits when its CRDs' OpenAPI is not served yet
        paths = (await t.client.request("GET", "/openapi/v3"))["paths"]
        return f"apis/{CORE}/v1alpha1" in paths

    await eventually(openapi_published, what="OpenAPI v3 of core.pingcap.com")
    creds = rbac.token_kubeconfig(t.kubeconfig, "tidb-operator", tmp_path / "op.kubeconfig", 2, "tidb-admin")
    port, log = procs.free_port(), tmp_path / "tidb-operator.log"
    argv = [str(tidb_root / "bin" / "tidb-operator"), f"--kubeconfig={creds}", "--leader-elect=false",
            "--metrics-bind-address=0", f"--health-probe-bind-address=127.0.0.1:{port}"]  # fmt: skip
    op = procs.spawn("tidb-operator", argv, log)
    operator_procs.append(op)
    started = time.monotonic()
    procs.wait_healthy(procs.Component(op, port, f"http://127.0.0.1:{port}/healthz"), timeout=120)

    kubectl(t, "create", "namespace", "db")
    kubectl(t, "apply", "-n", "db", "-f", str(EXAMPLES / "v2-basic.yaml"))
    sns = f"{t.root}-db"

    async def three_running() -> list[dict] | None:
        pods = await live_pods(t.client, "db", "pingcap.com/managed-by=tidb-operator")
        ok = [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
        return ok if len(ok) == 3 == len(pods) else None

    pods = await eventually(three_running, timeout=300, what="PD, TiKV and TiDB pods Running in the tenant")
    by_component = {p["metadata"]["labels"]["pingcap.com/component"]: p for p in pods}
    assert set(by_component) == {"pd", "tikv", "tidb"}
    res = resolver(await super_client.get(r.VIRTUALCLUSTERS, "tidb-v2", "default"))
    for p in pods:
        name, spec = p["metadata"]["name"], p["spec"]
        sp = await super_client.get(r.PODS, name, sns)
        assert sp["spec"]["runtimeClassName"] == "kata" and sp["status"]["podIP"] == p["status"]["podIP"]
        assert (sp["spec"]["hostname"], sp["spec"]["subdomain"]) == (spec["hostname"], spec["subdomain"])
        fqdn = f"{spec['hostname']}.{spec['subdomain']}.db.svc.cluster.local"
        assert await eventually(lambda fqdn=fqdn: answer(res, fqdn), what=fqdn) == [p["status"]["podIP"]]
        for vol in spec["volumes"]:
            if "configMap" in vol:
                assert await super_client.get_or_none(r.CONFIGMAPS, vol["configMap"]["name"], sns), vol
    claims = (await t.client.list(r.PVCS, "db"))["items"]
    assert len(claims) == 2 and {c["status"]["phase"] for c in claims} == {"Bound"}  # PD's and TiKV's
    for c in claims:
        sc = await super_client.get(r.PVCS, c["metadata"]["name"], sns)
        assert (
            sc["status"]["phase"] == "Bound" and sc["spec"]["storageClassName"] == localcluster.STORAGE_CLASS
        )
    services = {s["metadata"]["name"] for s in (await t.client.list(r.SERVICES, "db"))["items"]}
    assert {"pd-pd", "pd-pd-peer", "tikv-tikv-peer", "tidb-tidb", "tidb-tidb-peer"} <= services
    for s in services:
        assert await super_client.get_or_none(r.SERVICES, s, sns), s

    async def instances_running_and_synced() -> bool:
        found = [i for res_ in (PDS, TIKVS, TIDBS) for i in (await t.client.list(res_, "db"))["items"]]
        return len(found) == 3 and all(
            condition(i, "Running") == condition(i, "Synced") == "True" for i in found
        )

    await eventually(instances_running_and_synced, timeout=180, what="instances Running=True and Synced=True")
    settled = len(log_lines(log))
    await asyncio.sleep(max(0.0, 120 - (time.monotonic() - started)))  # two minutes of reconciling
    assert await three_running(), "the pods stay Running"
    errors, races = api_errors(log, settled)
    assert not errors, "the API refused the operator:\n" + "\n".join(errors[:20])
    assert races <= 1, f"{races} conflict or not-found errors after the cluster settled: a loop"

    kubectl(t, "delete", "-n", "db", "cluster", "basic", "--wait=false")

    async def all_gone() -> bool:
        for client, ns in ((t.client, "db"), (super_client, sns)):
            for res_ in (r.PODS, r.PVCS, r.SERVICES, r.CONFIGMAPS):
                if (await client.list(res_, ns, label_selector="pingcap.com/managed-by=tidb-operator"))[
                    "items"
                ]:
                    return False
        return await absent(t.client, CLUSTERS, "basic", "db")

    await eventually(
        all_gone,
        timeout=300,
        what="the cluster's pods, claims, services and config maps gone in both clusters",
    )
    assert not (await t.client.list(PDS, "db"))["items"]


async def test_tidb_operator_v1_reconciles_a_tidbcluster_inside_a_tenant(
    syncer: SyncerProc, tenant_factory, super_client: Client, tidb_root: Path, operator_procs, tmp_path: Path
) -> None:
    if procs.port_open(6060):
        pytest.fail(
            "port 6060 is taken: tidb-controller-manager v1 serves pprof there and has no flag to move it"
        )
    t: TenantHandle = await tenant_factory("tidb-v1")
    v1 = tidb_root / "v1"
    # The CRDs as the v1 docs install them, `kubectl create` (TidbCluster alone is 1.28 MB), then
    # as an upgrade does, server-side apply.
    crd_file = str(v1 / "manifests" / "crd.yaml")
    kubectl(t, "create", "-f", crd_file)
    kubectl(t, "apply", "--server-side", "--force-conflicts", "-f", crd_file)
    await eventually(lambda: all_established(t.client), timeout=180, what="CRDs established")
    tc_crd = await t.client.get(r.CRDS, "tidbclusters.pingcap.com")
    assert len(yaml.safe_dump(tc_crd)) > 1_000_000

    began = time.monotonic()
    helm_install(tidb_root, t, v1)
    print(f"v1: helm install to the operator's pod Running: {time.monotonic() - began:.1f}s")
    deployments = {d["metadata"]["name"] for d in (await t.client.list(r.DEPLOYMENTS, "tidb-admin"))["items"]}
    assert deployments == {"tidb-controller-manager"}  # scheduler and webhook off, as the chart's defaults

    creds = rbac.token_kubeconfig(
        t.kubeconfig, "tidb-controller-manager", tmp_path / "op.kubeconfig", 2, "tidb-admin"
    )
    log = tmp_path / "tidb-controller-manager.log"
    op = procs.spawn(
        "tidb-controller-manager",
        [str(tidb_root / "bin" / "tidb-controller-manager"), "-auto-failover=false", "-v=2"],
        log,
        env={"KUBECONFIG": str(creds), "NAMESPACE": "tidb-admin"},
    )
    operator_procs.append(op)
    procs.wait_healthy(procs.Component(op, 6060, "http://127.0.0.1:6060/metrics"), timeout=120)

    kubectl(t, "create", "namespace", "demo")
    kubectl(t, "apply", "-n", "demo", "-f", str(v1 / "examples" / "basic" / "tidb-cluster.yaml"))
    sns = f"{t.root}-demo"

    async def pod_running(label: str) -> dict | None:
        pods = await live_pods(t.client, "demo", label)
        return pods[0] if len(pods) == 1 and pods[0]["status"].get("phase") == "Running" else None

    await eventually(
        lambda: pod_running("app.kubernetes.io/component=discovery"), timeout=180, what="discovery"
    )
    pd = await eventually(lambda: pod_running("app.kubernetes.io/component=pd"), timeout=180, what="PD pod")
    assert pd["metadata"]["name"] == "basic-pd-0"
    spd = await super_client.get(r.PODS, "basic-pd-0", sns)
    assert (spd["spec"]["hostname"], spd["spec"]["subdomain"]) == ("basic-pd-0", "basic-pd-peer")
    env = {e["name"]: e for e in spd["spec"]["containers"][0]["env"]}
    assert (
        env["NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
        == f"metadata.annotations['{naming.ANN_NAMESPACE}']"
    )
    assert spd["metadata"]["annotations"][naming.ANN_NAMESPACE] == "demo"

    async def peer_endpoint() -> bool:
        ep = await t.client.get_or_none(r.ENDPOINTS, "basic-pd-peer", "demo")
        addrs = [a for s in (ep or {}).get("subsets") or [] for a in s.get("addresses") or []]
        return [(a["ip"], a.get("hostname")) for a in addrs] == [(spd["status"]["podIP"], "basic-pd-0")]

    await eventually(peer_endpoint, what="basic-pd-peer endpoints with the pod's IP and hostname")
    claim = await eventually(lambda: t.client.get_or_none(r.PVCS, "pd-basic-pd-0", "demo"), what="PD claim")
    pv = claim["spec"].get("volumeName") or (await eventually(
        lambda: _volume_of(t.client, "pd-basic-pd-0", "demo"), what="PD claim bound"))  # fmt: skip

    async def retained() -> dict | None:
        tenant_pv = await t.client.get(r.PVS, pv)
        super_pv = await super_client.get(r.PVS, pv)
        both = {
            tenant_pv["spec"]["persistentVolumeReclaimPolicy"],
            super_pv["spec"]["persistentVolumeReclaimPolicy"],
        }
        return tenant_pv if both == {"Retain"} else None

    tenant_pv = await eventually(
        retained, timeout=180, what="Retain set by the operator and carried to the super PV"
    )

    async def tc_status() -> dict | None:
        tc = await t.client.get(TIDBCLUSTERS, "basic", "demo")
        return tc if (tc.get("status") or {}).get("pd", {}).get("statefulSet") else None

    tc = await eventually(tc_status, what="TidbCluster status written")
    settled = len(log_lines(log))
    assert condition(tc, "Ready") == "False"  # PD cannot answer from a fake pod
    # No patch war over the volume: through two of the operator's 30 s resyncs, the PV stays as it is.
    await asyncio.sleep(65)
    assert (await t.client.get(r.PVS, pv))["metadata"]["resourceVersion"] == tenant_pv["metadata"][
        "resourceVersion"
    ]
    tikv = await t.client.list(r.STATEFULSETS, "demo", label_selector="app.kubernetes.io/component=tikv")
    assert not tikv["items"]  # the operator waits for a healthy PD before TiKV
    errors, races = api_errors(log, settled)
    assert not errors, "the API refused the operator:\n" + "\n".join(errors[:20])
    assert races <= 1, f"{races} conflict or not-found errors after the cluster settled: a loop"

    kubectl(t, "delete", "-n", "demo", "tidbcluster", "basic")

    async def gone_but_the_volume() -> bool:
        if (await t.client.list(r.STATEFULSETS, "demo"))["items"] or (
            await t.client.list(r.DEPLOYMENTS, "demo")
        )["items"]:
            return False
        for client, ns in ((t.client, "demo"), (super_client, sns)):
            if (await client.list(r.PODS, ns))["items"] or await client.get_or_none(
                r.SERVICES, "basic-pd", ns
            ):
                return False
        return True

    await eventually(
        gone_but_the_volume, timeout=240, what="pods, StatefulSet and services gone in both clusters"
    )
    assert await t.client.get_or_none(r.PVCS, "pd-basic-pd-0", "demo")  # no owner: kept, as upstream
    assert (await super_client.get(r.PVS, pv))["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


async def _volume_of(client: Client, name: str, ns: str) -> str | None:
    c = await client.get_or_none(r.PVCS, name, ns)
    return (c or {}).get("spec", {}).get("volumeName")
