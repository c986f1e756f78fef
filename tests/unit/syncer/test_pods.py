"""Pod rules, one test per rule of the design."""

import copy
import dataclasses
import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer.kinds import KINDS as TABLE
from syncer.resources import pods, simple
from syncer.resources.context import Refused, TenantContext
from tispace import naming
from tispace.naming import RootNamespace

CTX = TenantContext(
    root=RootNamespace("team-abcdef-dev"),
    vc_name="dev",
    vc_namespace="team",
    opaque_prefixes=("secret.corp/",),
    api_host="10.0.0.9",
    api_port=6443,
    vn_agent_host="192.0.2.1",
    vn_agent_port=10550,
    scheduler_policy={"tidb-scheduler": "tidb-super"},
)


def tenant_pod(**spec: object) -> dict:
    return {
        "metadata": {
            "name": "web-0",
            "namespace": "db",
            "uid": "uid-1",
            "resourceVersion": "9",
            "labels": {"app": "web", "secret.corp/x": "1"},
            "annotations": {"note": "n", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "ownerReferences": [{"kind": "StatefulSet", "name": "web", "uid": "o"}],
            "finalizers": ["x"],
            "managedFields": [],
        },
        "spec": {
            "containers": [{"name": "c", "image": "nginx"}],
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "priority": 0,
            "priorityClassName": "high",
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def test_metadata_is_translated_and_marked() -> None:
    out = pods.to_super(tenant_pod(), CTX)
    meta = out["metadata"]
    assert meta["name"] == "web-0" and meta["namespace"] == "team-abcdef-dev-db"
    assert meta["labels"] == {"app": "web", naming.MANAGED_BY: "tispace", naming.LABEL_TENANT: CTX.root}
    ann = meta["annotations"]
    assert ann["note"] == "n" and "kubectl.kubernetes.io/last-applied-configuration" not in ann
    assert ann[naming.ANN_UID] == "uid-1" and ann[naming.ANN_NAMESPACE] == "db"
    assert '"StatefulSet"' in ann[naming.ANN_OWNER_REFERENCES]
    assert set(meta) == {"name", "namespace", "labels", "annotations"}  # no uid, rv, finalizers, owners
    assert "status" not in out


def test_runtime_class_is_forced_and_privileged_allowed_under_it() -> None:
    p = tenant_pod(
        runtimeClassName="runc",
        containers=[{"name": "c", "image": "x", "securityContext": {"privileged": True}}],
    )
    out = pods.to_super(p, CTX)
    assert out["spec"]["runtimeClassName"] == "kata"
    assert out["spec"]["containers"][0]["securityContext"]["privileged"] is True
    # A super cluster without Kata: no runtime class at all, not the tenant's choice.
    plain = pods.to_super(p, dataclasses.replace(CTX, runtime_class=""))
    assert "runtimeClassName" not in plain["spec"]


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"hostNetwork": True}, "HostNamespaceForbidden"),
        ({"hostPID": True}, "HostNamespaceForbidden"),
        ({"hostIPC": True}, "HostNamespaceForbidden"),
        ({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]}, "HostPathForbidden"),
        (
            {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 1, "hostPort": 1}]}]},
            "HostPortForbidden",
        ),
        (
            {"initContainers": [{"name": "i", "image": "x", "ports": [{"containerPort": 1, "hostPort": 2}]}]},
            "HostPortForbidden",
        ),
    ],
)
def test_host_access_is_refused(spec: dict, reason: str) -> None:
    with pytest.raises(Refused) as err:
        pods.to_super(tenant_pod(**spec), CTX)
    assert err.value.reason == reason
    assert pods.refused_status(err.value) == {
        "phase": "Failed",
        "reason": reason,
        "message": err.value.message,
    }


def test_scheduler_policy_and_original_kept() -> None:
    out = pods.to_super(tenant_pod(schedulerName="tidb-scheduler"), CTX)
    assert out["spec"]["schedulerName"] == "tidb-super"
    assert out["metadata"]["annotations"][pods.ANN_SCHEDULER] == "tidb-scheduler"
    other = pods.to_super(tenant_pod(schedulerName="unknown"), CTX)
    assert other["spec"]["schedulerName"] == "default-scheduler"
    plain = pods.to_super(tenant_pod(), CTX)
    assert (
        plain["spec"]["schedulerName"] == "default-scheduler"
        and pods.ANN_SCHEDULER not in plain["metadata"]["annotations"]
    )


def test_a_named_node_becomes_a_required_affinity_not_a_node_name() -> None:
    assert "nodeName" not in pods.to_super(tenant_pod(), CTX)["spec"]
    pinned = pods.to_super(tenant_pod(nodeName="node-1"), CTX)["spec"]
    assert "nodeName" not in pinned  # the super scheduler still checks taints and room
    [term] = pinned["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}


def test_priority_fields_of_the_tenant_cluster_are_dropped() -> None:
    spec = pods.to_super(tenant_pod(preemptionPolicy="Never"), CTX)["spec"]
    assert not {"priority", "priorityClassName", "preemptionPolicy", "serviceAccount"} & set(spec)
    assert spec["serviceAccountName"] == "default" and spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("policy", ["ClusterFirst", "ClusterFirstWithHostNet", None])
def test_dns_points_at_the_tenant(policy: str | None) -> None:
    p = tenant_pod(**({"dnsPolicy": policy} if policy else {}))
    spec = pods.to_super(p, CTX)["spec"]
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"] == {
        "nameservers": ["10.96.0.10"],
        "searches": ["db.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        "options": [{"name": "ndots", "value": "5"}],
    }


def test_explicit_dns_is_respected() -> None:
    spec = pods.to_super(tenant_pod(dnsPolicy="Default"), CTX)["spec"]
    assert spec["dnsPolicy"] == "Default" and "dnsConfig" not in spec


def test_hostname_and_subdomain_kept() -> None:
    spec = pods.to_super(tenant_pod(hostname="web-0", subdomain="web"), CTX)["spec"]
    assert (spec["hostname"], spec["subdomain"]) == ("web-0", "web")


def test_env_points_at_the_tenant_api_and_downward_api_is_remapped() -> None:
    c = {
        "name": "c",
        "image": "x",
        "env": [
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "KUBERNETES_SERVICE_HOST", "value": "custom"},
        ],
    }
    env = {
        e["name"]: e for e in pods.to_super(tenant_pod(containers=[c]), CTX)["spec"]["containers"][0]["env"]
    }
    assert (
        env["NS"]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{naming.ANN_NAMESPACE}']"
    )
    assert env["UID"]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{naming.ANN_UID}']"
    assert env["NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["KUBERNETES_SERVICE_HOST"]["value"] == "custom"  # the tenant's own value wins
    assert env["KUBERNETES_SERVICE_PORT"]["value"] == "6443"


def test_volumes_token_ca_and_downward_api() -> None:
    vols = [
        {
            "name": "kube-api-access",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                        }
                    },
                ]
            },
        },
        {
            "name": "info",
            "downwardAPI": {"items": [{"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}}]},
        },
        {"name": "cfg", "configMap": {"name": "app"}},
    ]
    p = tenant_pod(volumes=vols)
    assert pods.needs_token(p)
    out = pods.to_super(p, CTX)["spec"]["volumes"]
    sources = out[0]["projected"]["sources"]
    assert sources[0] == {
        "downwardAPI": {
            "items": [
                {"path": "token", "fieldRef": {"fieldPath": f"metadata.annotations['{pods.ANN_TOKEN}']"}}
            ]
        }
    }
    assert sources[1]["configMap"]["name"] == simple.SUPER_ROOT_CA_CONFIGMAP
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"].endswith(
        f"['{naming.ANN_NAMESPACE}']"
    )
    assert out[1]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"].endswith(f"['{naming.ANN_UID}']")
    assert out[2]["configMap"]["name"] == "app"
    assert p["spec"]["volumes"] == vols  # the tenant object is never mutated


def test_translation_does_not_mutate_its_input() -> None:
    p = tenant_pod(containers=[{"name": "c", "image": "x", "env": [{"name": "A", "value": "1"}]}])
    before = copy.deepcopy(p)
    pods.to_super(p, CTX)
    assert p == before


def test_patch_down_carries_the_deadline_and_added_tolerations_keeping_the_super_ones() -> None:
    tenant = tenant_pod(activeDeadlineSeconds=5000, tolerations=[{"key": "a", "operator": "Exists"}])
    desired = pods.to_super(tenant, CTX)
    actual = copy.deepcopy(desired)
    admitted = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
    actual["spec"]["tolerations"].append(admitted)  # the super admission's own
    assert pods.patch_down(desired, actual) is None
    tenant["spec"]["activeDeadlineSeconds"] = 4999
    tenant["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    patch = pods.patch_down(pods.to_super(tenant, CTX), actual)
    assert patch is not None and patch["spec"] == {
        "activeDeadlineSeconds": 4999,
        "tolerations": [{"key": "a", "operator": "Exists"}, admitted, {"key": "b", "operator": "Exists"}],
    }


def test_observed_generation_is_the_tenant_generation_the_super_pod_carries_once_observed() -> None:
    """As a kubelet (1.34+) reports status.observedGeneration: upstream conformance updates a pod's
    spec 499 times and waits for it to read 500."""
    tenant = tenant_pod()
    tenant["metadata"]["generation"] = 7
    super_pod = pods.to_super(tenant, CTX)
    assert super_pod["metadata"]["annotations"][pods.ANN_GENERATION] == "7"
    super_pod["metadata"]["generation"] = 3  # the super pod's own count
    assert pods.observed_generation(super_pod) is None  # on no kubelet yet
    assert "observedGeneration" not in pods.status_up(super_pod, CTX)
    started = "2026-01-01T00:00:00Z"
    super_pod["status"] = {"startTime": started}
    assert pods.observed_generation(super_pod) == 7  # its kubelet reports none (KWOK): seen on arrival
    super_pod["status"] = {"startTime": started, "observedGeneration": 2}
    assert pods.observed_generation(super_pod) is None  # the super kubelet has not seen the last spec
    super_pod["status"] = {"startTime": started, "observedGeneration": 3}
    assert pods.status_up(super_pod, CTX)["observedGeneration"] == 7
    tenant["metadata"]["generation"] = 8
    patch = pods.patch_down(pods.to_super(tenant, CTX), super_pod)
    assert patch is not None and "spec" not in patch
    assert patch["metadata"]["annotations"][pods.ANN_GENERATION] == "8"


def test_patch_down_covers_metadata_and_images_only() -> None:
    desired = pods.to_super(tenant_pod(), CTX)
    assert pods.patch_down(desired, copy.deepcopy(desired)) is None
    actual = copy.deepcopy(desired)
    actual["metadata"]["labels"]["stale"] = "1"
    actual["spec"]["containers"][0]["image"] = "old"
    patch = pods.patch_down(desired, actual)
    assert patch["metadata"]["labels"]["stale"] is None
    assert patch["spec"] == {"containers": [{"name": "c", "image": "nginx"}]}
    assert TABLE["Pod"].patch_type == "strategic"  # merged by name: env, ports, mounts are kept


def test_the_zone_and_region_each_api_server_writes_on_binding_are_left_to_it() -> None:
    """Both API servers label a bound pod with its node's zone and region; neither side's copy
    is a change to sync (each was a pod patch per pod)."""
    bound = tenant_pod()
    bound["metadata"]["labels"].update(
        {"topology.kubernetes.io/zone": "a", "topology.kubernetes.io/region": "r"}
    )
    desired = pods.to_super(bound, CTX)
    assert desired["metadata"]["labels"] == pods.to_super(tenant_pod(), CTX)["metadata"]["labels"]
    super_pod = copy.deepcopy(desired)
    super_pod["metadata"]["labels"].update(
        {"topology.kubernetes.io/zone": "a", "topology.kubernetes.io/region": "r"}
    )
    assert pods.patch_down(desired, super_pod) is None
    assert pods.patch_down(pods.to_super(tenant_pod(), CTX), super_pod) is None


def test_image_changes_of_init_containers_and_sidecars_go_down_by_name() -> None:
    """Operators upgrade in place (tidb-operator changes sidecar images): only what changed is sent."""
    init = [
        {"name": "setup", "image": "busybox:1"},
        {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"},
    ]
    spec = {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "x:1"}]}
    actual = pods.to_super(tenant_pod(initContainers=init, **spec), CTX)
    newer = copy.deepcopy(init)
    newer[1]["image"] = "envoy:2"
    desired = pods.to_super(tenant_pod(initContainers=newer, **spec), CTX)
    assert pods.patch_down(desired, actual) == {
        "spec": {"initContainers": [{"name": "proxy", "image": "envoy:2"}]}
    }
    desired["spec"]["containers"][1]["image"] = "x:2"
    assert pods.patch_down(desired, actual)["spec"] == {
        "initContainers": [{"name": "proxy", "image": "envoy:2"}],
        "containers": [{"name": "d", "image": "x:2"}],
    }


def test_status_up_hides_the_super_node_address() -> None:
    super_pod = {
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "hostIP": "10.1.1.1",
            "hostIPs": [{"ip": "10.1.1.1"}],
            "nominatedNodeName": "x",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    up = pods.status_up(super_pod, CTX)
    assert up["hostIP"] == "192.0.2.1" and up["hostIPs"] == [{"ip": "192.0.2.1"}]
    assert up["podIP"] == "10.244.0.5" and "nominatedNodeName" not in up
    assert pods.status_differs(up, {"status": {"phase": "Pending"}})
    assert not pods.status_differs(up, {"status": {**up, "extra": 1}})


def test_the_tenant_runtime_class_overhead_stays_in_the_tenant() -> None:
    """Upstream conformance (RuntimeClass ... initialize its Overhead) had the super cluster refuse
    the pod: "Pod Overhead set without corresponding RuntimeClass defined Overhead"."""
    pod = tenant_pod(runtimeClassName="preconfigured-handler", overhead={"cpu": "10m", "memory": "1Mi"})
    spec = pods.to_super(pod, CTX)["spec"]
    assert "overhead" not in spec and spec["runtimeClassName"] == CTX.runtime_class


def test_a_condition_differing_only_in_its_times_is_not_written_again() -> None:
    """The tenant's binding writes PodScheduled with its own time: no status write for that alone."""

    def scheduled(at: str, status: str = "True", reason: str = "") -> dict:
        return {"type": "PodScheduled", "status": status, "reason": reason, "lastTransitionTime": at}

    super_pod = {"status": {"phase": "Pending", "conditions": [scheduled("2026-01-01T00:00:02Z")]}}
    bound = tenant_pod()
    bound["status"] = {"phase": "Pending", "conditions": [scheduled("2026-01-01T00:00:01Z")]}
    assert pods.status_patch(super_pod, bound, CTX) is None
    unbound = tenant_pod()  # the cache before the binding the same reconcile sends: it writes PodScheduled
    unbound["status"] = {"phase": "Pending"}
    assert pods.status_patch(super_pod, unbound, CTX) is None
    refused = scheduled("2026-01-01T00:00:01Z", "False", "Unschedulable")
    unschedulable = {"phase": "Pending", "conditions": [refused]}
    assert pods.status_patch({"status": unschedulable}, bound, CTX) == unschedulable
    running = {"phase": "Running", "conditions": [scheduled("2026-01-01T00:00:02Z")]}
    assert pods.status_patch({"status": running}, bound, CTX) == running


@given(st.dictionaries(st.from_regex(r"\A[a-z]{1,8}(/[a-z]{1,8})?\Z"), st.text(max_size=5), max_size=6))
def test_labels_never_carry_forged_marks_or_opaque_keys(labels: dict) -> None:
    p = tenant_pod()
    p["metadata"]["labels"] = {**labels, naming.MANAGED_BY: "forged", "secret.corp/k": "v"}
    out = pods.to_super(p, CTX)["metadata"]["labels"]
    assert out[naming.MANAGED_BY] == "tispace" and out[naming.LABEL_TENANT] == CTX.root
    assert not any(k.startswith("secret.corp/") for k in out)


def test_synced_condition_says_why_a_pod_did_not_reach_the_super_cluster() -> None:
    c = pods.synced_condition(False, "SyncRejected", "exceeded quota", "2026-11-23T00:00:00Z")
    assert c == {
        "type": "tenancy.x-k8s.io/Synced",
        "status": "False",
        "reason": "SyncRejected",
        "message": "exceeded quota",
        "lastTransitionTime": "2026-11-23T00:00:00Z",
    }
    assert pods.synced_condition(True, "Synced", "", "t")["status"] == "True"


def test_claim_names_lists_the_claims_a_pod_mounts() -> None:
    pod = {
        "spec": {
            "volumes": [
                {"name": "a", "persistentVolumeClaim": {"claimName": "data-kv-0"}},
                {"name": "b", "configMap": {"name": "cfg"}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "logs"}},
            ]
        }
    }
    assert pods.claim_names(pod) == ["data-kv-0", "logs"]
    assert pods.claim_names({"spec": {}}) == []


def test_debug_containers_the_tenant_adds_go_to_the_super_pod_once() -> None:
    p = tenant_pod(ephemeralContainers=[{"name": "dbg", "image": "busybox", "targetContainerName": "c"}])
    desired = pods.to_super(p, CTX)
    actual = pods.to_super(tenant_pod(), CTX)
    patch = pods.ephemeral_patch(desired, actual)
    assert patch is not None
    [added] = patch["spec"]["ephemeralContainers"]
    assert added["name"] == "dbg" and {"name": "KUBERNETES_SERVICE_HOST", "value": "10.0.0.9"} in added["env"]
    actual["spec"]["ephemeralContainers"] = [added]
    assert pods.ephemeral_patch(desired, actual) is None


def test_a_pod_token_is_renewed_at_80_percent_of_its_life_and_when_its_time_is_unreadable() -> None:
    issued = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
    at = pods.token_refresh_at(issued, issued + datetime.timedelta(hours=24))
    assert at == "2026-12-01T07:12:00Z"  # 19.2 h of 24 h
    assert pods.token_refresh_at(issued, issued + datetime.timedelta(seconds=600)) == "2026-11-30T12:08:00Z"
    two_days = pods.token_refresh_at(issued, issued + datetime.timedelta(hours=48))
    assert two_days == "2026-12-01T12:00:00Z"  # at least daily, as the kubelet
    token = {"serviceAccountToken": {"path": "token"}}
    made = pods.to_super(tenant_pod(volumes=[{"name": "api", "projected": {"sources": [token]}}]), CTX)

    def with_refresh(at: str | None, token: bool = True) -> dict[str, Any]:
        annotations = {
            **made["metadata"]["annotations"],
            **({pods.ANN_TOKEN: "signed"} if token else {}),
            **({pods.ANN_TOKEN_REFRESH: at} if at else {}),
        }
        return {**made, "metadata": {**made["metadata"], "annotations": annotations}}

    assert not pods.token_due(with_refresh(at), issued)
    assert not pods.token_due(
        with_refresh(at), datetime.datetime(2026, 12, 1, 7, 11, 59, tzinfo=datetime.UTC)
    )
    assert pods.token_due(with_refresh(at), datetime.datetime(2026, 12, 1, 7, 12, tzinfo=datetime.UTC))
    assert pods.token_due(with_refresh(None), issued)  # never renewed by this syncer
    assert pods.token_due(with_refresh("soon"), issued)
    assert pods.token_due(with_refresh("2026-12-01T07:12:00"), issued)  # no time zone
    assert pods.token_due(with_refresh(at, token=False), issued)  # its token taken off the pod

    # A pod made when tokens were Secrets mounts its Secret's token key; a pod without a token is
    # never due; a tenant Secret of that name is not a token Secret.
    def mounting(secret: dict[str, Any]) -> dict[str, Any]:
        return {
            "metadata": {"name": "web-0"},
            "spec": {"volumes": [{"name": "api", "projected": {"sources": [secret]}}]},
        }

    legacy = mounting(
        {"secret": {"name": pods.token_secret_name("web-0"), "items": [{"key": "token", "path": "t"}]}}
    )
    assert pods.mounts_token_secret(legacy) and pods.token_due(legacy, issued)
    own = mounting(
        {"secret": {"name": pods.token_secret_name("web-0"), "items": [{"key": "ca", "path": "ca"}]}}
    )
    assert not pods.mounts_token_secret(own) and not pods.token_due(
        own, issued
    )  # no renewal time: due if it were
    plain = pods.to_super(tenant_pod(), CTX)
    assert not pods.token_due(plain, issued)  # no renewal time either: due if it mounted a token
    assert not pods.mounts_token_secret(made)


def test_token_answers_become_the_super_pods_annotations_one_per_audience() -> None:
    issued = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
    answer = {"status": {"token": "eyJ.x", "expirationTimestamp": "2026-12-01T12:00:00Z"}}
    shorter = {"status": {"token": "eyJ.v", "expirationTimestamp": "2026-12-01T00:00:00Z"}}
    assert pods.token_annotations({"": answer}, issued) == {
        pods.ANN_TOKEN: "eyJ.x",
        pods.ANN_TOKEN_REFRESH: "2026-12-01T07:12:00Z",
    }
    both = pods.token_annotations({"": answer, "vault": shorter}, issued)
    assert both[pods.token_key("vault")] == "eyJ.v" and both[pods.ANN_TOKEN] == "eyJ.x"
    assert both[pods.ANN_TOKEN_REFRESH] == "2026-11-30T21:36:00Z"  # when the first is due


@pytest.mark.parametrize(
    ("sources", "lifetimes"),
    [
        ([{"path": "token", "expirationSeconds": 3607}], {"": pods.TOKEN_SECONDS}),  # kube-api-access
        ([{"path": "token"}], {"": 3600}),  # the API's default
        ([{"path": "t", "expirationSeconds": 3607}, {"path": "u", "expirationSeconds": 7200}], {"": 7200}),
        # for its own audiences the API server would stretch 3607 s to a year: never asked for
        (
            [{"path": "v", "audience": "https://kubernetes.default.svc", "expirationSeconds": 3607}],
            {"https://kubernetes.default.svc": 3600},
        ),
        ([{"path": "v", "audience": "vault", "expirationSeconds": 172800}], {"vault": 172800}),
        ([], {}),
    ],
    ids=["default-access", "unset", "shortest", "stretched-audience", "long", "none"],
)
def test_each_audience_gets_a_token_no_longer_lived_than_its_sources_ask(
    sources: list[dict[str, Any]], lifetimes: dict[str, int]
) -> None:
    projected = {"sources": [{"serviceAccountToken": s} for s in sources]}
    assert pods.token_lifetimes(tenant_pod(volumes=[{"name": "t", "projected": projected}])) == lifetimes


def test_a_pod_that_reads_its_token_from_a_secret_holds_the_api_servers_token() -> None:
    vault = {"serviceAccountToken": {"path": "v", "audience": "vault", "expirationSeconds": 600}}
    api = {"serviceAccountToken": {"path": "t", "expirationSeconds": 7200}}
    only_vault = tenant_pod(volumes=[{"name": "t", "projected": {"sources": [vault]}}])
    assert pods.token_lifetimes(only_vault, legacy=True) == {"": pods.TOKEN_SECONDS}
    both = tenant_pod(volumes=[{"name": "t", "projected": {"sources": [vault, api]}}])
    assert pods.token_lifetimes(both, legacy=True) == {"": 7200}


@pytest.mark.parametrize(
    ("at", "passed"),
    [(None, True), ("soon", True), ("2026-12-01T00:00:00", True), ("2026-12-01T00:00:00Z", True)]
    + [("2026-12-01T00:00:01Z", False)],
    ids=["missing", "garbled", "no-time-zone", "now", "later"],
)
def test_a_renewal_time_passes_when_it_comes_or_cannot_be_read(at: str | None, passed: bool) -> None:
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    assert pods.refresh_passed({pods.ANN_TOKEN_REFRESH: at} if at else {}, now) is passed


def test_a_token_renewed_later_than_its_sources_allow_is_stale() -> None:
    """Pods whose tokens an earlier syncer signed for a day, whatever their sources asked."""
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    vault = {"serviceAccountToken": {"path": "v", "audience": "vault", "expirationSeconds": 600}}
    p = tenant_pod(volumes=[{"name": "t", "projected": {"sources": [vault]}}])
    made = pods.to_super(p, CTX)

    def renewed_at(after: datetime.timedelta) -> dict[str, Any]:
        at = (now + after).strftime("%Y-%m-%dT%H:%M:%SZ")
        annotations = {**made["metadata"]["annotations"], pods.ANN_TOKEN_REFRESH: at}
        return {**made, "metadata": {**made["metadata"], "annotations": annotations}}

    assert pods.token_outlives_sources(p, renewed_at(datetime.timedelta(hours=19)), now)
    assert not pods.token_outlives_sources(p, renewed_at(datetime.timedelta(minutes=8)), now)
    assert not pods.token_outlives_sources(p, renewed_at(datetime.timedelta(minutes=9)), now)  # clocks
    assert pods.token_outlives_sources(p, renewed_at(datetime.timedelta(minutes=10)), now)
    # A day-long default token is not stale at 19.2 h; a pod without a renewal time is due anyway.
    access = tenant_pod(
        volumes=[
            {
                "name": "t",
                "projected": {
                    "sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]
                },
            }
        ]
    )
    made = pods.to_super(access, CTX)
    assert not pods.token_outlives_sources(access, renewed_at(datetime.timedelta(hours=19.2)), now)
    assert not pods.token_outlives_sources(access, made, now)
    assert not pods.token_outlives_sources(tenant_pod(), pods.to_super(tenant_pod(), CTX), now)


def test_a_token_source_with_an_audience_reads_its_own_annotation() -> None:
    sources = [
        {"serviceAccountToken": {"path": "token"}},
        {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 600}},
        {"serviceAccountToken": {"path": "vault2", "audience": "vault"}},
    ]
    p = tenant_pod(volumes=[{"name": "api", "projected": {"sources": sources}}])
    assert pods.token_lifetimes(p) == {"": 3600, "vault": 600}  # one per audience, the shortest
    out = pods.to_super(p, CTX)
    fields = [
        item["fieldRef"]["fieldPath"]
        for src in out["spec"]["volumes"][0]["projected"]["sources"]
        for item in src["downwardAPI"]["items"]
    ]
    vault = pods.token_key("vault")
    assert fields == [f"metadata.annotations['{k}']" for k in (pods.ANN_TOKEN, vault, vault)]
    assert vault.startswith(pods.ANN_TOKEN + ".") and vault != pods.token_key("vault2")
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    out["metadata"]["annotations"] |= {pods.ANN_TOKEN: "a", pods.ANN_TOKEN_REFRESH: "2026-12-02T00:00:00Z"}
    assert pods.token_due(out, now)  # the vault token is missing
    out["metadata"]["annotations"][vault] = "v"
    assert not pods.token_due(out, now)


def test_the_token_annotations_are_never_patched_away_nor_copied_from_the_tenant() -> None:
    p = tenant_pod()
    p["metadata"]["annotations"] = {pods.ANN_TOKEN: "forged", "team": "db"}
    desired = pods.to_super(p, CTX)
    assert pods.ANN_TOKEN not in desired["metadata"]["annotations"]
    actual = copy.deepcopy(desired)
    actual["metadata"]["annotations"] |= {
        pods.ANN_TOKEN: "signed",
        pods.ANN_TOKEN_REFRESH: "2026-12-07T00:00:00Z",
    }
    assert pods.patch_down(desired, actual) is None


@pytest.mark.parametrize(
    ("key", "token"),
    [
        (pods.ANN_TOKEN, True),
        (pods.token_key("vault"), True),
        (pods.ANN_TOKEN + ".00ff", True),
        (pods.ANN_TOKEN + ".XYZ", False),
        (pods.ANN_TOKEN + "-refresh", False),
        (pods.ANN_TOKEN_REFRESH, False),
        ("x" + pods.ANN_TOKEN, False),
        (naming.ANN_UID, False),
    ],
)
def test_a_token_annotation_is_told_from_every_other(key: str, token: bool) -> None:
    assert pods.is_token_key(key) is token
