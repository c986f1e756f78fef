"""Rows of the kind table: each translator and patch function, and the table itself."""

import dataclasses
import datetime

import pytest

from syncer.engine.tenant import quota_of, spec_context
from syncer.kinds import DOWN_KINDS, KINDS
from syncer.resources import nodes, simple
from syncer.resources.context import TenantContext
from tispace import naming
from tispace.naming import RootNamespace

CTX = TenantContext(
    root=RootNamespace("t-abcdef-dev"),
    vc_name="dev",
    vc_namespace="t",
    vn_agent_host="192.0.2.1",
    vn_agent_port=10550,
)


def obj(kind: str, name: str = "x", ns: str = "app", **fields: object) -> dict:
    meta = {"name": name, "uid": "u", "labels": {"a": "b"}}
    if KINDS[kind].resource.namespaced:
        meta["namespace"] = ns
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **fields}


def test_table_lists_the_synced_kinds_with_their_direction() -> None:
    assert {k.name: k.direction.value for k in KINDS.values()} == {
        "Namespace": "down",
        "ConfigMap": "down",
        "Secret": "down",
        "ServiceAccount": "down",
        "Pod": "down",
        "Service": "down",
        "PersistentVolumeClaim": "down",
        "Ingress": "down",
        "Endpoints": "down",
        "Event": "up",
        "PersistentVolume": "up",
        "Node": "up",
        "StorageClass": "public",
        "VolumeAttributesClass": "public",
        "PriorityClass": "public",
        "RuntimeClass": "public",
        "IngressClass": "public",
    }


@pytest.mark.parametrize("kind", [k.name for k in DOWN_KINDS if k.name != "Pod"])
def test_every_kind_round_trips_through_its_patch(kind: str) -> None:
    row = KINDS[kind]
    fields = {"data": {"k": "dg=="}} if kind in ("ConfigMap", "Secret") else {}
    desired = row.to_super(obj(kind, **fields), CTX)
    assert desired["metadata"]["labels"][naming.MANAGED_BY] == "tispace"
    assert naming.tenant_key(desired) is not None
    assert row.patch_down(desired, desired) is None
    changed = {**desired, "metadata": {**desired["metadata"], "labels": {"other": "1"}}}
    assert row.patch_down(desired, changed) is not None


def test_super_locations() -> None:
    assert KINDS["Namespace"].super_location("", "app", CTX) == ("", "t-abcdef-dev-app")
    assert KINDS["Pod"].super_location("app", "p", CTX) == ("t-abcdef-dev-app", "p")
    assert KINDS["ConfigMap"].super_location("app", "kube-root-ca.crt", CTX) == (
        "t-abcdef-dev-app",
        simple.SUPER_ROOT_CA_CONFIGMAP,
    )


def test_namespace_labels_name_the_tenant() -> None:
    ns = simple.namespace_to_super(obj("Namespace", "app"), CTX)
    assert ns["metadata"]["name"] == "t-abcdef-dev-app"
    assert ns["metadata"]["labels"][naming.LABEL_TENANT_NAMESPACE] == "app"
    assert ns["metadata"]["labels"][naming.LABEL_TENANT] == CTX.root


def test_a_namespace_as_its_api_server_labels_it_is_in_sync() -> None:
    """Each API server writes kubernetes.io/metadata.name itself: it is neither copied nor undone."""
    tenant_ns = obj("Namespace", "app")
    tenant_ns["metadata"]["labels"]["kubernetes.io/metadata.name"] = "app"
    desired = simple.namespace_to_super(tenant_ns, CTX)
    assert "kubernetes.io/metadata.name" not in desired["metadata"]["labels"]
    actual = {**desired, "metadata": {**desired["metadata"], "labels": dict(desired["metadata"]["labels"])}}
    actual["metadata"]["labels"]["kubernetes.io/metadata.name"] = "t-abcdef-dev-app"
    assert KINDS["Namespace"].patch_down(desired, actual) is None


def test_a_tenants_limits_become_each_super_namespaces_quota() -> None:
    vc = {"metadata": {}, "spec": {"resourceQuota": {"hard": {"pods": 20, "requests.storage": "100Gi"}}}}
    ctx = dataclasses.replace(CTX, quota=quota_of(vc))
    assert ctx.quota == (("pods", "20"), ("requests.storage", "100Gi"))
    q = simple.namespace_quota(ctx, "t-abcdef-dev-app")
    assert q["metadata"]["name"] == simple.QUOTA and q["metadata"]["namespace"] == "t-abcdef-dev-app"
    assert q["metadata"]["labels"][naming.LABEL_TENANT] == CTX.root
    assert q["spec"] == {"hard": {"pods": "20", "requests.storage": "100Gi"}}
    assert quota_of({"spec": {}}) == quota_of({"spec": {"resourceQuota": {}}}) == ()


def test_a_served_tenants_context_follows_its_virtualcluster_spec_and_keeps_the_rest() -> None:
    learned = dataclasses.replace(CTX, dns_ip="10.96.7.7", public_storage_classes=frozenset({"ceph"}))
    spec = {
        "clusterDomain": "corp.local",
        "opaqueMetaPrefixes": ["a.corp/"],
        "transparentMetaPrefixes": ["b.corp/"],
        "optInKinds": ["Ingress"],
        "resourceQuota": {"hard": {"pods": "3"}},
    }
    ctx = spec_context(learned, {"metadata": {}, "spec": spec})
    assert (ctx.cluster_domain, ctx.opaque_prefixes, ctx.transparent_prefixes) == (
        "corp.local",
        ("a.corp/",),
        ("b.corp/",),
    )
    assert ctx.opt_in == {"Ingress"} and ctx.quota == (("pods", "3"),)
    assert (ctx.dns_ip, ctx.public_storage_classes, ctx.root) == ("10.96.7.7", {"ceph"}, CTX.root)
    back = spec_context(ctx, {"metadata": {}, "spec": {}})  # all removed: the defaults again
    assert back == dataclasses.replace(
        learned, cluster_domain="cluster.local", opaque_prefixes=(), opt_in=frozenset()
    )
    assert spec_context(back, {"metadata": {}}) == back  # no change, no new rules


def test_token_secrets_go_down_opaque() -> None:
    s = simple.secret_to_super(
        obj("Secret", type="kubernetes.io/service-account-token", data={"t": "eA=="}), CTX
    )
    assert s["type"] == "Opaque" and s["data"] == {"t": "eA=="}
    tls = simple.secret_to_super(obj("Secret", type="kubernetes.io/tls", data={}), CTX)
    assert tls["type"] == "kubernetes.io/tls"


def test_data_patch_removes_dropped_data() -> None:
    desired = simple.configmap_to_super(obj("ConfigMap"), CTX)
    actual = {**desired, "data": {"old": "1"}}
    assert simple.data_patch(desired, actual) == {"data": None}


def test_service_accounts_never_automount_and_default_is_skipped() -> None:
    sa = simple.serviceaccount_to_super(obj("ServiceAccount", imagePullSecrets=[{"name": "reg"}]), CTX)
    assert sa["automountServiceAccountToken"] is False and sa["imagePullSecrets"] == [{"name": "reg"}]
    assert KINDS["ServiceAccount"].skip(obj("ServiceAccount", "default"))
    assert not KINDS["ServiceAccount"].skip(obj("ServiceAccount", "robot"))


def test_a_virtual_node_carries_the_beta_os_and_arch_labels_a_kubelet_writes() -> None:
    """The tenant's node lifecycle controller adds them to a node without them (a patch per node)."""
    super_node = {
        "metadata": {"name": "n", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}
    }
    vn = nodes.virtual_node(super_node, CTX)
    assert vn["metadata"]["labels"]["beta.kubernetes.io/os"] == "linux"
    assert vn["metadata"]["labels"]["beta.kubernetes.io/arch"] == "amd64"
    assert nodes.label_patch(super_node, vn, CTX) is None
    without = {"metadata": {"labels": {k: v for k, v in vn["metadata"]["labels"].items() if "beta" not in k}}}
    assert nodes.label_patch(super_node, without, CTX) == {"metadata": {"labels": vn["metadata"]["labels"]}}


def test_virtual_node_points_at_vn_agent_and_copies_topology() -> None:
    super_node = {
        "metadata": {
            "name": "node-1",
            "labels": {
                "kubernetes.io/hostname": "node-1",
                "topology.kubernetes.io/zone": "z1",
                "internal.corp/rack": "r1",
            },
        },
        "status": {
            "capacity": {"cpu": "32"},
            "allocatable": {"cpu": "31"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "t1"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "nodeInfo": {"kubeletVersion": "v"},
        },
    }
    vn = nodes.virtual_node(super_node, CTX)
    assert vn["metadata"]["labels"] == {
        "kubernetes.io/hostname": "node-1",
        "topology.kubernetes.io/zone": "z1",
        nodes.LABEL_VIRTUAL: "true",
    }
    rack_ctx = dataclasses.replace(CTX, node_label_prefixes=("internal.corp/",))
    assert nodes.labels(super_node, rack_ctx)["internal.corp/rack"] == "r1"
    # The admin moves the node to another rack: the copied labels follow, the tenant's own stay.
    mine = {**nodes.virtual_node(super_node, rack_ctx)["metadata"]["labels"], "team": "db"}
    moved = {**super_node, "metadata": {**super_node["metadata"], "labels": {"internal.corp/rack": "r2"}}}
    patch = nodes.label_patch(moved, {"metadata": {"labels": mine}}, rack_ctx)
    assert patch == {
        "metadata": {
            "labels": {
                "kubernetes.io/hostname": None,
                "topology.kubernetes.io/zone": None,
                "internal.corp/rack": "r2",
                nodes.LABEL_VIRTUAL: "true",
            }
        }
    }
    assert nodes.label_patch(super_node, {"metadata": {"labels": mine}}, rack_ctx) is None
    st = vn["status"]
    assert st["addresses"][0] == {"type": "InternalIP", "address": "192.0.2.1"}
    assert st["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10550}}
    assert st["capacity"] == {"cpu": "32"}
    # vn_agent as a DaemonSet: each virtual node points at its super node's own address.
    own = nodes.status(super_node, dataclasses.replace(CTX, vn_agent_host=""))
    assert own["addresses"][0] == {"type": "InternalIP", "address": "10.0.0.1"}
    # heartbeat-only changes are not worth a write; a condition flip is
    later = {
        **super_node,
        "status": {
            **super_node["status"],
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "t2"}],
        },
    }
    assert not nodes.status_differs(nodes.status(later, CTX), vn)
    down = {
        **super_node,
        "status": {**super_node["status"], "conditions": [{"type": "Ready", "status": "False"}]},
    }
    assert nodes.status_differs(nodes.status(down, CTX), vn)


def test_a_lease_is_owned_by_its_node() -> None:
    """As a kubelet's: the tenant's garbage collector removes it with the node."""
    node = {"metadata": {"name": "node-1", "uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"}}
    lease = nodes.lease(node, "2026-01-01T00:00:00.000000Z")
    assert lease["metadata"] == {
        "name": "node-1",
        "namespace": "kube-node-lease",
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "u1"}],
    }
    assert lease["spec"]["leaseDurationSeconds"] == nodes.LEASE_SECONDS
    assert nodes.made_at(node) == datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert nodes.made_at({"metadata": {"name": "unsaved"}}) is None
    assert nodes.made_at({"metadata": {"name": "odd", "creationTimestamp": "yesterday"}}) is None


@pytest.mark.parametrize("kind", [k.name for k in DOWN_KINDS])
def test_no_kind_carries_forged_ownership_marks_down(kind: str) -> None:
    """A tenant cannot make its super copy look like another tenant's (or like no tenant's)."""
    o = obj(kind, spec={"containers": [{"name": "c", "image": "i"}]}) if kind == "Pod" else obj(kind)
    o["metadata"]["annotations"] = {
        naming.ANN_CLUSTER: "t-999999-victim",
        naming.ANN_UID: "victim-uid",
        naming.ANN_NAMESPACE: "kube-system",
        naming.ANN_OWNER_REFERENCES: '[{"kind": "Node", "name": "x"}]',
    }
    o["metadata"]["labels"] = {naming.LABEL_TENANT: "t-999999-victim", naming.MANAGED_BY: "other"}
    down = KINDS[kind].to_super(o, CTX)
    meta = down["metadata"]
    assert naming.tenant_key(down) == (CTX.root, o["metadata"].get("namespace", ""), o["metadata"]["name"])
    assert meta["annotations"][naming.ANN_UID] == "u"
    assert naming.ANN_OWNER_REFERENCES not in meta["annotations"]  # only real ownerReferences are recorded
    assert meta["labels"][naming.LABEL_TENANT] == CTX.root and meta["labels"][naming.MANAGED_BY] == "tispace"
