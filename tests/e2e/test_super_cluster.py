"""The local super cluster is a real Kubernetes: nodes, pods, logs, exec, claims."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.e2e.helpers import eventually, pod
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import localcluster


def test_api_server_answers_kubectl(super_cluster: localcluster.SuperCluster) -> None:
    assert localcluster.kubectl(super_cluster.kubeconfig, "get", "--raw=/readyz") == "ok"
    version = json.loads(localcluster.kubectl(super_cluster.kubeconfig, "version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"


async def test_kwok_nodes_are_ready_with_configured_capacity(super_client: Client) -> None:
    nodes = (await super_client.list(r.NODES))["items"]
    assert len(nodes) == 4
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        assert node["status"]["capacity"]["cpu"] == "32"
        assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] in ("zone-a", "zone-b")
        assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0


async def test_furniture_exists(super_cluster: localcluster.SuperCluster) -> None:
    out = localcluster.kubectl(super_cluster.kubeconfig, "get", "runtimeclass,storageclass", "-o", "name")
    assert "runtimeclass.node.k8s.io/kata" in out
    assert "storageclass.storage.k8s.io/rook-ceph-block" in out


async def test_pod_runs_and_kubectl_logs_and_exec_work(
    super_cluster: localcluster.SuperCluster, super_client: Client
) -> None:
    await super_client.create(r.PODS, pod("direct", runtimeClassName="kata"), "default")

    async def running() -> dict | None:
        p = await super_client.get(r.PODS, "direct", "default")
        return p if p["status"].get("phase") == "Running" and p["status"].get("podIP") else None

    p = await eventually(running, what="pod direct Running")
    assert p["status"]["podIP"].startswith("10.244.")
    kc = super_cluster.kubeconfig
    assert "tispace: serving" in localcluster.kubectl(kc, "logs", "direct", "-n", "default")
    assert (
        localcluster.kubectl(kc, "exec", "direct", "-n", "default", "--", "printenv", "TISPACE").strip()
        == "1"
    )
    await super_client.delete(r.PODS, "direct", "default", grace_period=0)


async def test_claim_of_the_ceph_class_binds(super_client: Client) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await super_client.create(r.PVCS, claim, "default")

    async def bound() -> dict | None:
        c = await super_client.get(r.PVCS, "data", "default")
        return c if c["status"].get("phase") == "Bound" else None

    c = await eventually(bound, what="claim Bound")
    assert c["spec"]["storageClassName"] == "rook-ceph-block"
    pv = await super_client.get(r.PVS, c["spec"]["volumeName"])
    assert pv["spec"]["capacity"]["storage"] == "1Gi"
    await super_client.delete(r.PVCS, "data", "default")


def test_config_installs_with_kustomize_and_samples_apply(super_cluster: localcluster.SuperCluster) -> None:
    """`kubectl apply -k config/` (CRDs + RBAC) and the samples, checked by the real API server."""
    root = Path(__file__).resolve().parents[2]
    localcluster.kubectl(super_cluster.kubeconfig, "apply", "-k", str(root / "config"))
    localcluster.kubectl(
        super_cluster.kubeconfig,
        "wait",
        "--for=condition=Established",
        "crd/virtualclusters.tenancy.x-k8s.io",
        "crd/clusterversions.tenancy.x-k8s.io",
    )
    out = localcluster.kubectl(
        super_cluster.kubeconfig, "apply", "--dry-run=server", "-f", str(root / "config/samples")
    )
    assert "virtualcluster.tenancy.x-k8s.io/dev created (server dry run)" in out
    # Tenants made by earlier tests may have created the sample ClusterVersion already.
    assert re.search(
        r"clusterversion.tenancy.x-k8s.io/v1.36 (created|unchanged|configured) \(server dry run\)", out
    )
    assert (
        localcluster.kubectl(
            super_cluster.kubeconfig,
            "auth",
            "can-i",
            "create",
            "namespaces",
            "--as=system:serviceaccount:tispace-system:vc-manager",
        ).strip()
        == "yes"
    )
