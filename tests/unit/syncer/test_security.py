"""Hostile tenant objects against every synced kind (docs/security.md).

Whatever a tenant writes in names, labels, annotations, ownerReferences and finalizers, the
super copy lands in that tenant's own super namespaces, carries that tenant's marks and no
one else's, and reaches nothing the super cluster's controllers or other tenants own.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.kinds import DOWN_KINDS, KINDS
from syncer.resources import pods, volumes
from syncer.resources.context import CONTROLLER_OWNED, Refused, TenantContext
from tispace import naming
from tispace.naming import RootNamespace

CTX = TenantContext(
    root=RootNamespace("team-abcdef-dev"),
    vc_name="dev",
    vc_namespace="team",
    public_storage_classes=frozenset({"rook-ceph-block"}),
    public_ingress_classes=frozenset({"nginx"}),
    opt_in=frozenset({"Ingress"}),
)
OTHER = TenantContext(root=RootNamespace("team-123456-qa"), vc_name="qa", vc_namespace="team")

BODIES: dict[str, dict[str, Any]] = {
    "Namespace": {},
    "ConfigMap": {"data": {"k": "v"}},
    "Secret": {"type": "Opaque", "data": {"k": "dg=="}},
    "ServiceAccount": {},
    "Pod": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    "Service": {"spec": {"selector": {"app": "x"}, "ports": [{"port": 80}], "externalIPs": ["10.0.0.1"]}},
    "PersistentVolumeClaim": {"spec": {"resources": {"requests": {"storage": "1Gi"}}}},
    "Ingress": {"spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example.com"}]}},
    "Endpoints": {"subsets": [{"addresses": [{"ip": "10.1.2.3", "nodeName": "n", "targetRef": {}}]}]},
}

dns_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
# Keys a hostile tenant would try: our marks, controller-owned prefixes, and anything else.
MARKS = (
    naming.MANAGED_BY,
    naming.LABEL_TENANT,
    naming.LABEL_TENANT_NAMESPACE,
    naming.ANN_CLUSTER,
    naming.ANN_UID,
    naming.ANN_NAME,
    naming.ANN_NAMESPACE,
    naming.ANN_VC_NAME,
    naming.ANN_VC_NAMESPACE,
    naming.ANN_OWNER_REFERENCES,
)
"""The marks the syncer itself writes on super copies."""
forged_key = st.one_of(
    st.sampled_from(
        [
            *MARKS,
            naming.LABEL_PUBLIC,
            "pv.kubernetes.io/bind-completed",
            "volume.kubernetes.io/selected-node",
            "endpoints.kubernetes.io/managed-by",
        ]
    ),
    st.builds(lambda p, k: f"{p}{k}", st.sampled_from([f"{naming.GROUP}/", *CONTROLLER_OWNED]), dns_label),
    st.from_regex(r"\A([a-z]{1,8}\.[a-z]{2,4}/)?[a-z]{1,12}\Z"),
)
values = st.one_of(st.sampled_from([OTHER.root, "tispace", "kube-system", "true", ""]), st.text(max_size=12))
meta_map = st.dictionaries(forged_key, values, max_size=8)
owner_refs = st.lists(
    st.fixed_dictionaries(
        {
            "apiVersion": st.sampled_from(["v1", "apps/v1", "tenancy.x-k8s.io/v1alpha1"]),
            "kind": st.sampled_from(["Namespace", "Node", "VirtualCluster", "Secret", "ReplicaSet"]),
            "name": st.sampled_from(["kube-system", OTHER.root, "node-1", "x"]),
            "uid": st.uuids().map(str),
        }
    ),
    max_size=3,
)
namespaces = st.one_of(
    dns_label, st.sampled_from(["kube-system", "default", OTHER.root, f"{OTHER.root}-default"])
)


def hostile(kind: str, namespace: str, name: str, labels: dict, annotations: dict, owners: list) -> dict:
    obj = copy.deepcopy(BODIES[kind])
    obj["metadata"] = {
        "name": name,
        "uid": "tenant-uid",
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": owners,
        "finalizers": ["example.com/block-forever"],
    }
    if KINDS[kind].resource.namespaced:
        obj["metadata"]["namespace"] = namespace
    return obj


@pytest.mark.parametrize("kind", sorted(k.name for k in DOWN_KINDS))
@settings(max_examples=60, deadline=None)
@given(namespace=namespaces, name=dns_label, labels=meta_map, annotations=meta_map, owners=owner_refs)
def test_a_super_copy_stays_in_its_tenant_and_carries_only_its_marks(
    kind: str, namespace: str, name: str, labels: dict, annotations: dict, owners: list
) -> None:
    k = KINDS[kind]
    obj = hostile(kind, namespace, name, labels, annotations, owners)
    out = k.to_super(obj, CTX)
    meta = out["metadata"]
    sns, sname = k.super_location(namespace if k.resource.namespaced else "", name, CTX)
    if k.resource.namespaced:
        assert meta["namespace"] == sns == CTX.super_ns(namespace)
        assert sns != OTHER.super_ns(namespace) and naming.is_dns1123_label(sns)
    else:
        assert (sns, meta["name"]) == ("", sname) and sname == CTX.super_ns(name)
    # The tenant's marks, computed, never the forged ones.
    assert meta["labels"][naming.MANAGED_BY] == naming.MANAGED_BY_VALUE
    assert meta["labels"][naming.LABEL_TENANT] == CTX.root
    ours = {k_ for k_ in {**meta["labels"], **meta["annotations"]} if k_.startswith(f"{naming.GROUP}/")}
    assert ours <= {*MARKS, pods.ANN_SCHEDULER, pods.ANN_GENERATION}
    if naming.LABEL_TENANT_NAMESPACE in meta["labels"]:
        assert kind == "Namespace" and meta["labels"][naming.LABEL_TENANT_NAMESPACE] == name
    assert naming.tenant_key(out) == (CTX.root, namespace if k.resource.namespaced else "", name)
    assert meta["annotations"][naming.ANN_UID] == "tenant-uid"
    # Nothing that lets the super cluster's garbage collector or controllers act for the tenant.
    assert "ownerReferences" not in meta and "finalizers" not in meta
    assert not any(key.startswith(CONTROLLER_OWNED) for key in {**meta["labels"], **meta["annotations"]})


def test_a_service_never_takes_external_ips() -> None:
    """CVE-2020-8554: externalIPs would capture traffic to any address in the super cluster."""
    out = KINDS["Service"].to_super(hostile("Service", "web", "s", {}, {}, []), CTX)
    assert "externalIPs" not in out["spec"]


def test_endpoints_name_no_tenant_node_or_pod() -> None:
    out = KINDS["Endpoints"].to_super(hostile("Endpoints", "web", "e", {}, {}, []), CTX)
    [addr] = out["subsets"][0]["addresses"]
    assert addr == {"ip": "10.1.2.3"}


HOST_REACHING = [
    {"hostPath": {"path": "/"}},
    {"nfs": {"server": "10.0.0.1", "path": "/"}},
    {"iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.x", "lun": 0}},
    {"rbd": {"monitors": ["10.0.0.1:6789"], "image": "other-tenant"}},
    {"cephfs": {"monitors": ["10.0.0.1:6789"]}},
    {"csi": {"driver": "rook-ceph.rbd.csi.ceph.com"}},
    {"flexVolume": {"driver": "example/x"}},
    {"gitRepo": {"repository": "https://example.com/x"}},
]


@pytest.mark.parametrize("source", HOST_REACHING, ids=lambda s: next(iter(s)))
def test_a_pod_cannot_mount_what_the_super_host_would_mount(source: dict) -> None:
    pod = hostile("Pod", "web", "p", {}, {}, [])
    pod["spec"]["volumes"] = [{"name": "v", **source}]
    with pytest.raises(Refused) as why:
        pods.to_super(pod, CTX)
    assert why.value.reason in ("HostPathForbidden", "VolumeTypeForbidden")


@pytest.mark.parametrize("field", ["hostNetwork", "hostPID", "hostIPC"])
def test_a_pod_cannot_share_a_host_namespace(field: str) -> None:
    pod = hostile("Pod", "web", "p", {}, {}, [])
    pod["spec"][field] = True
    with pytest.raises(Refused):
        pods.to_super(pod, CTX)


def test_a_pod_gets_no_super_service_account_token_and_no_super_node_by_name() -> None:
    pod = hostile("Pod", "web", "p", {}, {}, [])
    pod["spec"] |= {
        "serviceAccountName": "default",
        "automountServiceAccountToken": True,
        "nodeName": "infra-1",
    }
    out = pods.to_super(pod, CTX)["spec"]
    assert out["automountServiceAccountToken"] is False and "nodeName" not in out
    assert out["runtimeClassName"] == CTX.runtime_class


def test_an_ephemeral_volume_gets_a_class_the_admin_shared_and_no_other() -> None:
    pod = hostile("Pod", "web", "p", {}, {}, [])
    template = {"spec": {"storageClassName": "fast-internal", "resources": {"requests": {"storage": "1Gi"}}}}
    pod["spec"]["volumes"] = [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": template}}]
    with pytest.raises(Refused) as why:
        pods.to_super(pod, CTX)
    assert why.value.reason == "StorageClassNotAllowed"
    template["spec"].pop("storageClassName")
    [vol] = pods.to_super(pod, CTX)["spec"]["volumes"]
    assert vol["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] == CTX.default_storage_class


def test_a_claim_cannot_clone_from_another_namespace() -> None:
    claim = hostile("PersistentVolumeClaim", "db", "c", {}, {}, [])
    claim["spec"]["dataSourceRef"] = {
        "kind": "PersistentVolumeClaim",
        "name": "data",
        "namespace": OTHER.root,
    }
    out = volumes.claim_to_super(claim, CTX)
    assert out["spec"]["dataSourceRef"] == {"kind": "PersistentVolumeClaim", "name": "data"}


@given(st.tuples(dns_label, dns_label), st.tuples(dns_label, dns_label))
def test_two_tenants_never_share_a_super_namespace(a: tuple[str, str], b: tuple[str, str]) -> None:
    roots = [naming.root_namespace("team", a[0], "uid-a"), naming.root_namespace("team", b[0], "uid-b")]
    assert naming.super_namespace(roots[0], a[1]) != naming.super_namespace(roots[1], b[1])  # type: ignore[arg-type]
