"""Service and Endpoints rules: host-first ClusterIP, what goes down, what comes up."""

import base64
import dataclasses

import orjson
import pytest

from syncer.engine import admission
from syncer.resources import services
from syncer.resources.context import TenantContext
from tispace import naming
from tispace.kube.client import ApiError
from tispace.naming import RootNamespace

CTX = TenantContext(root=RootNamespace("t-abcdef-dev"), vc_name="dev", vc_namespace="t")


def svc(**spec: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "app", "uid": "u-1", "labels": {"app": "web"}},
        "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [{"port": 80}], **spec},
    }


def test_a_service_goes_down_without_its_tenant_ip_unless_one_was_asked_for() -> None:
    down = services.service_to_super(svc(clusterIP="", clusterIPs=[]), CTX)
    assert down["metadata"]["namespace"] == "t-abcdef-dev-app"
    assert down["spec"] == {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [{"port": 80}]}
    asked = services.service_to_super(svc(clusterIP="10.96.7.7", clusterIPs=["10.96.7.7"]), CTX)
    assert asked["spec"]["clusterIP"] == "10.96.7.7"
    headless = services.service_to_super(svc(clusterIP="None"), CTX)
    assert headless["spec"]["clusterIP"] == "None"


def test_which_services_need_a_super_ip() -> None:
    assert services.needs_host_ip(svc())
    assert services.needs_host_ip(svc(type="NodePort"))
    assert not services.needs_host_ip(svc(clusterIP="None"))
    assert not services.needs_host_ip(svc(type="ExternalName", externalName="example.com"))
    assert services.is_tenant_apiserver_service({"metadata": {"name": "kubernetes", "namespace": "default"}})
    assert not services.is_tenant_apiserver_service({"metadata": {"name": "kubernetes", "namespace": "x"}})


def test_admission_marks_the_super_copy_pending_and_reconcile_can_tell() -> None:
    obj = svc()
    del obj["metadata"]["uid"]
    down = services.service_to_super(services.admission_object(obj, "req-9"), CTX)
    assert down["metadata"]["annotations"][naming.ANN_UID] == "pending/req-9"
    assert services.is_pending(down)
    assert naming.tenant_key(down) == (CTX.root, "app", "web")
    assert not services.is_pending(services.service_to_super(svc(), CTX))
    assert "uid" not in obj["metadata"]  # the admitted object itself is not changed


def test_admission_patch_carries_ips_and_node_ports() -> None:
    tenant = svc(type="NodePort", ports=[{"port": 80}, {"port": 443}])
    super_svc = {
        "spec": {
            "clusterIP": "10.96.3.4",
            "clusterIPs": ["10.96.3.4"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 443, "nodePort": 30443}],
        }
    }
    ops = services.admission_patch(tenant, super_svc)
    assert {"op": "add", "path": "/spec/clusterIP", "value": "10.96.3.4"} in ops
    assert {"op": "add", "path": "/spec/clusterIPs", "value": ["10.96.3.4"]} in ops
    assert {"op": "add", "path": "/spec/ports/1/nodePort", "value": 30443} in ops
    assert {"op": "add", "path": "/spec/ipFamilyPolicy", "value": "SingleStack"} in ops
    plain = services.admission_patch(svc(), {"spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}})
    assert [op["path"] for op in plain] == ["/spec/clusterIP", "/spec/clusterIPs"]


def test_service_patch_follows_the_tenant_spec_but_never_the_ips() -> None:
    desired = services.service_to_super(svc(), CTX)
    actual = {**desired, "spec": {**desired["spec"], "clusterIP": "10.96.1.1"}}
    assert services.service_patch(desired, actual) is None
    moved = services.service_to_super(svc(ports=[{"port": 8080}], selector={"app": "v2"}), CTX)
    patch = services.service_patch(moved, actual)
    assert patch == {"spec": {"ports": [{"port": 8080}], "selector": {"app": "v2"}}}
    selectorless = services.service_to_super(svc(selector=None), CTX)
    del selectorless["spec"]["selector"]
    assert services.service_patch(selectorless, actual) == {"spec": {"selector": None}}


def test_load_balancer_status_goes_up() -> None:
    lb = {"ingress": [{"ip": "192.0.2.10"}]}
    up = services.load_balancer_up({"status": {"loadBalancer": lb}}, svc(), CTX)
    assert up == {"loadBalancer": lb}
    assert (
        services.load_balancer_up({"status": {"loadBalancer": lb}}, {"status": {"loadBalancer": lb}}, CTX)
        is None
    )


def test_only_hand_made_endpoints_go_down_and_lose_tenant_references() -> None:
    made = {
        "metadata": {
            "name": "db",
            "namespace": "app",
            "labels": {services.ENDPOINTS_MANAGED_BY: "endpoint-controller"},
        }
    }
    assert services.is_controller_endpoints(made)
    apiserver = {"metadata": {"name": "kubernetes", "namespace": "default"}}  # its API server's own
    assert services.is_controller_endpoints(apiserver)
    assert not services.is_controller_endpoints({"metadata": {"name": "kubernetes", "namespace": "app"}})
    own = {
        "metadata": {"name": "db", "namespace": "app", "uid": "u-2"},
        "subsets": [
            {
                "addresses": [
                    {"ip": "10.244.0.5", "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "p"}}
                ],
                "ports": [{"port": 5432}],
            }
        ],
    }
    assert not services.is_controller_endpoints(own)
    down = services.endpoints_to_super(own, CTX)
    assert down["subsets"] == [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 5432}]}]
    assert own["subsets"][0]["addresses"][0]["nodeName"] == "n1"


def test_webhook_configuration_and_reviews() -> None:
    config = admission.webhook_configuration("https://127.0.0.1:9443/services/t/dev", b"CA")
    hook = config["webhooks"][0]
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:9443/services/t/dev", "caBundle": "Q0E="}
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "NoneOnDryRun"
    assert hook["rules"][0]["resources"] == ["services"] and hook["rules"][0]["operations"] == ["CREATE"]
    ok = orjson.loads(admission.review("u", patch=[{"op": "add", "path": "/spec/clusterIP", "value": "x"}]))
    assert ok["response"]["allowed"] and ok["response"]["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(ok["response"]["patch"]))[0]["value"] == "x"
    no = orjson.loads(admission.review("u", denied=ApiError(422, {"message": "IP taken"}, "", "")))
    assert no["response"] == {"uid": "u", "allowed": False, "status": {"code": 422, "message": "IP taken"}}


def ingress(cls: str | None) -> dict:
    spec: dict = {
        "rules": [
            {
                "host": "shop.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ]
    }
    if cls:
        spec["ingressClassName"] = cls
    return {"metadata": {"name": "shop", "namespace": "app", "uid": "i-1"}, "spec": spec}


def test_ingress_goes_down_only_with_a_shared_class_and_only_when_opted_in() -> None:
    from syncer.kinds import KINDS
    from syncer.resources.context import Refused

    ctx = dataclasses.replace(CTX, public_ingress_classes=frozenset({"nginx"}), opt_in=frozenset({"Ingress"}))
    down = services.ingress_to_super(ingress("nginx"), ctx)
    assert down["metadata"]["namespace"] == "t-abcdef-dev-app" and down["spec"]["ingressClassName"] == "nginx"
    assert services.ingress_to_super(ingress(None), ctx)["spec"]["rules"][0]["host"] == "shop.example.com"
    with pytest.raises(Refused) as err:
        services.ingress_to_super(ingress("internal-only"), ctx)
    assert err.value.reason == "IngressClassNotAllowed" and "nginx" in err.value.message
    assert KINDS["Ingress"].enabled(ctx) and not KINDS["Ingress"].enabled(CTX)
    assert KINDS["Service"].enabled(CTX)


def test_the_tenant_kube_dns_service_names_the_pods_nameserver() -> None:
    dns = {"metadata": {"name": "kube-dns", "namespace": "kube-system"}, "spec": {"clusterIP": "10.96.44.7"}}
    assert services.tenant_dns_ip(dns) == "10.96.44.7"
    assert services.tenant_dns_ip({**dns, "spec": {"clusterIP": "None"}}) is None
    assert services.tenant_dns_ip({**dns, "metadata": {"name": "kube-dns", "namespace": "default"}}) is None
    assert services.tenant_dns_ip(None) is None
