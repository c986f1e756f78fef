import pytest

from tispace import naming, tenants
from vc_manager.provisioners import ProvisionError, native, tuning
from vc_manager.tenant import Tenant, set_condition


def _tenant(**spec: object) -> Tenant:
    return Tenant(
        name="dev",
        namespace="team",
        uid="u-1",
        spec={"clusterVersionName": "v1.36", **spec},
        version=tenants.cluster_version()["spec"],
    )


def test_defaults() -> None:
    t = _tenant()
    assert (t.provisioner, t.cluster_domain, t.pki_days, t.shared_etcd) == (
        "process",
        "cluster.local",
        365,
        True,
    )
    assert t.root == naming.root_namespace("team", "dev", "u-1")


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    c1 = set_condition([], "Ready", True, "Running", "ok", "t1")
    c2 = set_condition(c1, "Ready", True, "Running", "still ok", "t2")
    assert c2 == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Running",
            "message": "still ok",
            "lastTransitionTime": "t1",
        }
    ]
    c3 = set_condition(c2, "Ready", False, "Degraded", "down", "t3")
    assert c3[0]["lastTransitionTime"] == "t3" and c3[0]["status"] == "False"


def test_set_condition_leaves_other_types() -> None:
    c = set_condition([{"type": "A", "status": "True"}], "B", False, "r", "m", "t")
    assert [x["type"] for x in c] == ["A", "B"]


def test_native_render_is_complete_and_namespaced() -> None:
    t = _tenant(serviceCidr="10.100.0.0/16")
    objs = native.render(t, "10.96.0.0/16")
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("NetworkPolicy", "apiserver-egress"),
        ("NetworkPolicy", "controller-manager-egress"),
        ("NetworkPolicy", "etcd-ingress"),
        ("Service", "etcd"),
        ("StatefulSet", "etcd"),
        ("Service", "apiserver"),
        ("StatefulSet", "apiserver"),
        ("StatefulSet", "controller-manager"),
    ]
    assert {o["metadata"]["namespace"] for o in objs} == {t.root}
    api_cmd = objs[6]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--service-cluster-ip-range=10.100.0.0/16" in api_cmd
    assert "--enable-aggregator-routing=true" in api_cmd
    assert objs[3]["spec"]["clusterIP"] == "None"
    assert objs[4]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_a_native_control_plane_reaches_only_its_own_pods_etcd_and_tispace() -> None:
    """A webhook or aggregated API URL written by the tenant cannot reach the super API server, other
    tenants' pods or control planes, or anything else: egress is fenced by NetworkPolicies."""
    t = _tenant()
    policies = {p["metadata"]["name"]: p["spec"] for p in native.network_policies(t)}
    api = policies["apiserver-egress"]
    assert api["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "apiserver"}
    assert api["policyTypes"] == ["Egress"]  # with no ipBlock rule: no route to any address by IP
    peers = [peer for rule in api["egress"] for peer in rule["to"]]
    assert {"namespaceSelector": {"matchLabels": {naming.LABEL_TENANT: t.root}}} in peers
    assert not any("ipBlock" in peer for peer in peers)
    namespaced = [p for p in peers if "namespaceSelector" in p]
    assert all(p["namespaceSelector"].get("matchLabels") or p.get("podSelector") for p in namespaced)
    kcm = policies["controller-manager-egress"]
    assert kcm["egress"][0]["to"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "apiserver"}}}
    ]
    assert policies["etcd-ingress"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "apiserver"}}}]}
    ]


def test_native_render_refuses_a_version_without_images() -> None:
    t = Tenant(
        name="dev",
        namespace="team",
        uid="u",
        spec={"clusterVersionName": "bare"},
        version={"kubernetesVersion": "v1.36.3"},
    )
    with pytest.raises(ProvisionError, match="no image for etcd, apiServer, controllerManager"):
        native.render(t, "10.96.0.0/16")


def test_every_native_control_plane_runs_tuned_and_a_version_can_override_it() -> None:
    version = tenants.cluster_version()["spec"]
    version["controllerManager"]["extraArgs"] = ["--controllers=*"]
    t = Tenant(name="dev", namespace="team", uid="u-1", spec={}, version=version)
    containers = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]
        for o in native.render(t, "10.96.0.0/16")
        if o["kind"] == "StatefulSet"
    }
    api, kcm = containers["apiserver"], containers["controller-manager"]
    assert {"name": "GOGC", "value": tuning.GO_ENV["kube-apiserver"]["GOGC"]} in api["env"]
    flags = [a for a in kcm["command"] if a.startswith("--controllers=")]
    tuned = [a for a in tuning.FLAGS["kube-controller-manager"] if a.startswith("--controllers=")]
    assert flags == [*tuned, "--controllers=*"]  # the last one wins
    assert containers["etcd"]["env"][0]["name"] == "POD_NAME"


def test_extra_args_come_from_the_cluster_version() -> None:
    t = Tenant(name="d", namespace="n", uid="u", spec={}, version={"apiServer": {"extraArgs": ["--v=4"]}})
    assert t.extra_args("apiServer") == ["--v=4"]
    assert t.extra_args("controllerManager") == []
