"""Services with host-first ClusterIPs, endpoints, and what tenants cannot do with them."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import dns.resolver
import pytest

from tests.e2e.conftest import SyncerProc, TenantHandle
from tests.e2e.helpers import absent, answer, bound, eventually, pod, resolver, running, syncer_status
from tispace import kubeconfig, localnet, naming, tenants
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import localcluster
from vc_manager import addons


def service(name: str, ns: str, **spec: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec},
    }


def _apply(t: TenantHandle, *objs: dict) -> None:
    t.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


async def test_tenant_services_carry_the_super_cluster_ips(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    a: TenantHandle = await tenant_factory("svc-a")
    b: TenantHandle = await tenant_factory("svc-b")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    # The same names in both tenants, the namespace in the same apply as its services.
    for t in (a, b):
        _apply(t, ns, *(service(f"s{i}", "shop") for i in range(8)), service("np", "shop", type="NodePort"))

    seen: dict[str, str] = {}
    for t in (a, b):
        for name in [f"s{i}" for i in range(8)] + ["np"]:
            tsvc = await t.client.get(r.SERVICES, name, "shop")
            ssvc = await eventually(
                lambda name=name, t=t: super_client.get_or_none(r.SERVICES, name, f"{t.root}-shop"),
                what=f"super service {name}",
            )
            ip = tsvc["spec"]["clusterIP"]
            assert (
                ip == ssvc["spec"]["clusterIP"] and tsvc["spec"]["clusterIPs"] == ssvc["spec"]["clusterIPs"]
            )
            assert ip not in seen, f"{t.name}/{name} and {seen.get(ip)} share {ip}"
            seen[ip] = f"{t.name}/{name}"
            if name == "np":
                assert tsvc["spec"]["ports"][0]["nodePort"] == ssvc["spec"]["ports"][0]["nodePort"]

    # Adopted: the super copies carry the tenant uids, no longer the admission marks.
    ssvc = await super_client.get(r.SERVICES, "s0", f"{a.root}-shop")
    tsvc = await a.client.get(r.SERVICES, "s0", "shop")

    async def adopted() -> bool:
        s = await super_client.get(r.SERVICES, "s0", f"{a.root}-shop")
        return s["metadata"]["annotations"]["tenancy.x-k8s.io/uid"] == tsvc["metadata"]["uid"]

    await eventually(adopted, what="pending super service adopted")
    assert (
        ssvc["metadata"]["uid"]
        == (await super_client.get(r.SERVICES, "s0", f"{a.root}-shop"))["metadata"]["uid"]
    )

    # An IP that is taken in the super cluster is refused by the tenant API server, clearly.
    taken = (await a.client.get(r.SERVICES, "s1", "shop"))["spec"]["clusterIP"]
    with pytest.raises(RuntimeError) as err:
        _apply(b, service("thief", "shop", clusterIP=taken))
    assert "super cluster refused" in str(err.value) and "already allocated" in str(err.value)
    assert await b.client.get_or_none(r.SERVICES, "thief", "shop") is None
    assert await super_client.get_or_none(r.SERVICES, "thief", f"{b.root}-shop") is None

    # Headless stays headless; deleting a tenant service deletes its super copy.
    _apply(a, service("peers", "shop", clusterIP="None"))
    hs = await eventually(
        lambda: super_client.get_or_none(r.SERVICES, "peers", f"{a.root}-shop"), what="headless"
    )
    assert hs["spec"]["clusterIP"] == "None"
    a.kubectl("delete", "service", "s0", "-n", "shop")

    async def gone() -> bool:
        return await super_client.get_or_none(r.SERVICES, "s0", f"{a.root}-shop") is None

    await eventually(gone, what="super service deleted")
    assert await super_client.get_or_none(r.SERVICES, "s0", f"{b.root}-shop") is not None


async def test_a_service_deleted_and_made_again_at_once_is_admitted_while_the_syncer_lags(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """`kubectl replace --force` and helm `--force` delete and create at once: the old super copy
    may still be there when the syncer is behind on the tenant."""
    t: TenantHandle = await tenant_factory("svc-again")
    sns = f"{t.root}-default"
    _apply(t, service("web", "default"))
    uid = (await t.client.get(r.SERVICES, "web", "default"))["metadata"]["uid"]

    async def adopted(want: str) -> dict | None:
        s = await super_client.get_or_none(r.SERVICES, "web", sns)
        return s if s and s["metadata"]["annotations"][naming.ANN_UID] == want else None

    first = await eventually(lambda: adopted(uid), what="super copy adopted")
    # The syncer falls behind on this tenant: a key every 5 s, and a few already waiting.
    vc = f"/apis/tenancy.x-k8s.io/v1alpha1/namespaces/{t.namespace}/virtualclusters/{t.name}"

    async def rate(value: float | None) -> None:
        body = {"spec": {"syncRate": value}}
        await super_client.request("PATCH", vc, body=body, content_type="application/merge-patch+json")

        async def applied() -> bool:
            status = await syncer_status(syncer.port)
            return bool(status["tenants"][f"{t.namespace}/{t.name}"]["rate"] == (value or 0))

        await eventually(applied, what=f"syncRate {value} applied by the syncer")

    await rate(0.2)
    for i in range(3):
        t.kubectl("create", "configmap", f"busy-{i}")
    t.kubectl("delete", "service", "web")
    assert await super_client.get_or_none(r.SERVICES, "web", sns)  # the syncer has not got to it
    _apply(t, service("web", "default"))  # admitted all the same
    second = await t.client.get(r.SERVICES, "web", "default")
    now = await super_client.get(r.SERVICES, "web", sns)
    assert now["metadata"]["uid"] != first["metadata"]["uid"]
    assert now["spec"]["clusterIP"] == second["spec"]["clusterIP"]
    await rate(None)
    await eventually(lambda: adopted(second["metadata"]["uid"]), what="the new copy adopted")


async def test_endpoints_list_super_pod_ips_and_hand_made_endpoints_go_down(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("svc-a")
    _apply(t, service("api", "default"))
    await t.client.create(r.PODS, pod("api"), "default")

    async def endpoint_ips() -> list[str] | None:
        ep = await t.client.get_or_none(r.ENDPOINTS, "api", "default")
        subsets = (ep or {}).get("subsets") or []
        return [a["ip"] for s in subsets for a in s.get("addresses") or []] or None

    ips = await eventually(endpoint_ips, what="tenant endpoints")
    super_pod = await super_client.get(r.PODS, "api", f"{t.root}-default")
    assert ips == [super_pod["status"]["podIP"]]
    # The super copy of a selector service gets its endpoints from the super cluster, not from us.
    sep = await eventually(
        lambda: super_client.get_or_none(r.ENDPOINTS, "api", f"{t.root}-default"), what="ep"
    )
    assert "tenancy.x-k8s.io/cluster" not in (sep["metadata"].get("annotations") or {})

    # A selectorless service with hand-made endpoints: those go down.
    external = service("ext", "default")
    del external["spec"]["selector"]
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "ext", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.244.9.9"}], "ports": [{"port": 8080}]}],
    }
    _apply(t, external, endpoints)

    async def mirrored() -> dict | None:
        ep = await super_client.get_or_none(r.ENDPOINTS, "ext", f"{t.root}-default")
        return ep if ep and ep.get("subsets") else None

    sep = await eventually(mirrored, what="hand-made endpoints mirrored")
    assert sep["subsets"][0]["addresses"] == [{"ip": "10.244.9.9"}]

    # The API server's own `default/kubernetes` Endpoints and EndpointSlice, as every API server keeps
    # them (upstream conformance reads them), stay in the tenant.
    port = urlsplit(kubeconfig.load(t.kubeconfig).server).port
    own = await t.client.get(r.ENDPOINTS, "kubernetes", "default")
    assert own["subsets"][0]["addresses"] == [{"ip": localnet.VIRTUAL_ADDRESS}]
    assert own["subsets"][0]["ports"][0]["port"] == port
    slices = await t.client.request(
        "GET",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        params={"labelSelector": "kubernetes.io/service-name=kubernetes"},
    )
    [slice_] = slices["items"]
    assert slice_["endpoints"][0]["addresses"] == [localnet.VIRTUAL_ADDRESS]
    assert await super_client.get_or_none(r.ENDPOINTS, "kubernetes", f"{t.root}-default") is None


def statefulset(name: str, ns: str, replicas: int, *, claim: bool = False) -> dict:
    """A StatefulSet governed by the headless Service `name`, optionally with one claim per pod."""
    container: dict = {"name": name, "image": "busybox"}
    spec: dict = {
        "serviceName": name,
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
    }
    if claim:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


async def test_each_tenant_dns_answers_its_own_names_with_super_ips(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    a: TenantHandle = await tenant_factory("svc-a")
    await tenant_factory("svc-b")
    _apply(
        a,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "data"}},
        service("db", "data", clusterIP="None", selector={"app": "db"}, publishNotReadyAddresses=True),
        service("front", "data"),
        statefulset("db", "data", 2),
    )
    res_a = resolver(await super_client.get(r.VIRTUALCLUSTERS, "svc-a", "default"))
    res_b = resolver(await super_client.get(r.VIRTUALCLUSTERS, "svc-b", "default"))
    sns = f"{a.root}-data"

    front = (await a.client.get(r.SERVICES, "front", "data"))["spec"]["clusterIP"]
    assert await eventually(lambda: answer(res_a, "front.data.svc.cluster.local"), what="service A") == [
        front
    ]

    async def pod_ips() -> dict[str, str] | None:
        pods = (await super_client.list(r.PODS, sns, label_selector="app=db"))["items"]
        ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in pods}
        return ips if len(ips) == 2 and all(ips.values()) else None

    ips = await eventually(pod_ips, what="2 super pods with IPs")
    for name, ip in ips.items():
        fqdn = f"{name}.db.data.svc.cluster.local"
        assert await eventually(lambda fqdn=fqdn: answer(res_a, fqdn), what=fqdn) == [ip]
    assert await eventually(lambda: answer(res_a, "db.data.svc.cluster.local"), what="headless") == sorted(
        ips.values()
    )
    # Tenant B's DNS knows nothing of tenant A.
    with pytest.raises(dns.resolver.NXDOMAIN):
        res_b.resolve("front.data.svc.cluster.local", "A")
    with pytest.raises(dns.resolver.NXDOMAIN):
        res_b.resolve("db-0.db.data.svc.cluster.local", "A")


async def test_statefulset_with_claims_and_headless_service_runs_end_to_end(
    syncer: SyncerProc, tenant_factory, super_client: Client, tmp_path
) -> None:
    a: TenantHandle = await tenant_factory("svc-a")
    b: TenantHandle = await tenant_factory("svc-b")
    # The super cluster's public classes are in every tenant.
    for t in (a, b):
        await eventually(
            lambda t=t: t.client.get_or_none(r.STORAGECLASSES, "rook-ceph-block"), what="class up"
        )
        await eventually(lambda t=t: t.client.get_or_none(r.RUNTIMECLASSES, "kata"), what="runtime class up")
    _apply(
        a,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "store"}},
        service("kv", "store", clusterIP="None", selector={"app": "kv"}, publishNotReadyAddresses=True),
        statefulset("kv", "store", 3, claim=True),
    )
    sns = f"{a.root}-store"
    super_claims = await eventually(lambda: bound(super_client, sns, 3), timeout=120, what="3 super claims")
    assert {c["spec"]["storageClassName"] for c in super_claims} == {"rook-ceph-block"}
    claims = await eventually(lambda: bound(a.client, "store", 3), timeout=120, what="3 tenant claims Bound")

    async def provisioned_event() -> bool:
        items = (await a.client.list(r.EVENTS, "store"))["items"]
        return any(
            e["involvedObject"]["kind"] == "PersistentVolumeClaim" and e["reason"] == "ProvisioningSucceeded"
            for e in items
        )

    await eventually(provisioned_event, what="the super cluster's claim events in the tenant")
    volumes = {c["spec"]["volumeName"] for c in claims}
    assert volumes == {c["spec"]["volumeName"] for c in super_claims}

    async def tenant_pvs_bound() -> list[dict] | None:
        pvs = [pv for pv in (await a.client.list(r.PVS))["items"] if pv["metadata"]["name"] in volumes]
        ok = [pv for pv in pvs if pv["status"].get("phase") == "Bound"]
        return ok if len(ok) == 3 else None

    await eventually(tenant_pvs_bound, what="3 Bound PVs in the tenant")
    super_pods = await eventually(lambda: running(super_client, sns, 3), timeout=120, what="3 super pods")
    assert {p["spec"]["runtimeClassName"] for p in super_pods} == {"kata"}
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in super_pods}

    async def endpoints() -> set[str] | None:
        ep = await a.client.get_or_none(r.ENDPOINTS, "kv", "store")
        got = {ad["ip"] for s in (ep or {}).get("subsets") or [] for ad in s.get("addresses") or []}
        return got if got == set(ips.values()) else None

    await eventually(endpoints, what="tenant endpoints list the super pod IPs")
    res_a = resolver(await super_client.get(r.VIRTUALCLUSTERS, "svc-a", "default"))
    res_b = resolver(await super_client.get(r.VIRTUALCLUSTERS, "svc-b", "default"))
    for name, ip in ips.items():
        fqdn = f"{name}.kv.store.svc.cluster.local"
        assert await eventually(lambda fqdn=fqdn: answer(res_a, fqdn), what=fqdn) == [ip]
        with pytest.raises(dns.resolver.NXDOMAIN):
            res_b.resolve(fqdn, "A")

    # The operator's PV changes (label, Retain) reach the super PV of its own volume...
    pv = next(
        c["spec"]["volumeName"] for c in claims if c["metadata"]["name"] == "data-kv-0"
    )  # kv-2's is deleted below
    a.kubectl("label", "pv", pv, "tidb.pingcap.com/cluster=basic")
    a.kubectl("patch", "pv", pv, "-p", '{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}')

    async def carried() -> bool:
        s = await super_client.get(r.PVS, pv)
        return (
            s["metadata"]["labels"].get("tidb.pingcap.com/cluster") == "basic"
            and s["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        )

    await eventually(carried, what="label and reclaim policy carried down")
    # ...while tenant B neither sees A's volumes nor changes them with a PV of the same name.
    assert not volumes & {p["metadata"]["name"] for p in (await b.client.list(r.PVS))["items"]}
    fake = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv, "labels": {"stolen": "yes"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "csi": {"driver": "example.com", "volumeHandle": "x"},
        },
    }
    await b.client.create(r.PVS, fake)
    b.kubectl("create", "namespace", "probe")  # a later change of B, to know B's queue got this far
    await eventually(lambda: super_client.get_or_none(r.NAMESPACES, f"{b.root}-probe"), what="B synced on")
    s = await super_client.get(r.PVS, pv)
    assert "stolen" not in s["metadata"]["labels"] and s["spec"]["persistentVolumeReclaimPolicy"] == "Retain"

    # A claim for a class that is not shared: an Event, nothing in the super cluster.
    bad = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "nvme", "namespace": "store"},
        "spec": {
            "storageClassName": "secret-nvme",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    await a.client.create(r.PVCS, bad, "store")

    async def refused() -> dict | None:
        items = (await a.client.list(r.EVENTS, "store"))["items"]
        return next((e for e in items if e["reason"] == "StorageClassNotAllowed"), None)

    ev = await eventually(refused, what="StorageClassNotAllowed event")
    assert "secret-nvme" in ev["message"] and "rook-ceph-block" in ev["message"]
    assert await super_client.get_or_none(r.PVCS, "nvme", sns) is None

    # Shared classes are read-only for the tenant's users.
    user = kubeconfig.write(
        tmp_path / "alice.kubeconfig",
        await tenants.user_kubeconfig(
            super_client, await super_client.get(r.VIRTUALCLUSTERS, "svc-a", "default"), "alice"
        ),
    )
    with pytest.raises(RuntimeError, match="shared read-only"):
        localcluster.kubectl(user, "label", "storageclass", "rook-ceph-block", "mine=yes")
    with pytest.raises(RuntimeError, match="shared read-only"):
        localcluster.kubectl(user, "delete", "runtimeclass", "kata")

    # Deleting a claim (after scaling down) releases its volume per policy: Delete removes it.
    a.kubectl("scale", "statefulset", "kv", "-n", "store", "--replicas=2")
    await eventually(lambda: running(super_client, sns, 2), timeout=120, what="scaled to 2")
    gone_claim = next(c for c in claims if c["metadata"]["name"] == "data-kv-2")
    a.kubectl("delete", "pvc", "data-kv-2", "-n", "store", "--wait=false")

    async def released() -> bool:
        return (
            await super_client.get_or_none(r.PVS, gone_claim["spec"]["volumeName"]) is None
            and await a.client.get_or_none(r.PVS, gone_claim["spec"]["volumeName"]) is None
        )

    await eventually(released, timeout=120, what="volume deleted on both sides")


async def test_ingress_is_opt_in_and_needs_a_shared_class(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    shared = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "shared-nginx", "labels": {"tenancy.x-k8s.io/public": "true"}},
        "spec": {"controller": "k8s.io/ingress-nginx"},
    }
    await super_client.create(r.INGRESSCLASSES, shared)
    on: TenantHandle = await tenant_factory("svc-ing", optInKinds=["Ingress"])
    off: TenantHandle = await tenant_factory("svc-b")

    def ing(name: str, cls: str) -> dict:
        backend = {"service": {"name": "web", "port": {"number": 80}}}
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "ingressClassName": cls,
                "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
            },
        }

    for t in (on, off):
        await eventually(lambda t=t: t.client.get_or_none(r.INGRESSCLASSES, "shared-nginx"), what="class up")
        _apply(t, ing("shop", "shared-nginx"), ing("sneaky", "internal"))
    down = await eventually(
        lambda: super_client.get_or_none(r.INGRESSES, "shop", f"{on.root}-default"), what="ingress down"
    )
    assert down["spec"]["ingressClassName"] == "shared-nginx"

    async def refused() -> bool:
        items = (await on.client.list(r.EVENTS, "default"))["items"]
        return any(e["reason"] == "IngressClassNotAllowed" for e in items)

    await eventually(refused, what="IngressClassNotAllowed event")
    assert await super_client.get_or_none(r.INGRESSES, "sneaky", f"{on.root}-default") is None
    # Without the opt-in nothing goes down (a later change of that tenant shows its queue moved on).
    off.kubectl("create", "configmap", "after-ingress", "--from-literal=x=1")
    await eventually(
        lambda: super_client.get_or_none(r.CONFIGMAPS, "after-ingress", f"{off.root}-default"),
        what="later sync",
    )
    assert (await super_client.list(r.INGRESSES, f"{off.root}-default"))["items"] == []
    # Opting in later, while the tenant is served, takes effect for what is already there.
    await super_client.request(
        "PATCH",
        f"/apis/tenancy.x-k8s.io/v1alpha1/namespaces/{off.namespace}/virtualclusters/{off.name}",
        body={"spec": {"optInKinds": ["Ingress"]}},
        content_type="application/merge-patch+json",
    )
    await eventually(
        lambda: super_client.get_or_none(r.INGRESSES, "shop", f"{off.root}-default"), what="opted in later"
    )
    await super_client.request(  # and out again: its super copies go, the tenant's objects stay
        "PATCH",
        f"/apis/tenancy.x-k8s.io/v1alpha1/namespaces/{off.namespace}/virtualclusters/{off.name}",
        body={"spec": {"optInKinds": None}},
        content_type="application/merge-patch+json",
    )
    await eventually(
        lambda: absent(super_client, r.INGRESSES, "shop", f"{off.root}-default"), what="opted out"
    )
    assert await off.client.get_or_none(r.INGRESSES, "shop", "default")
    await super_client.delete(r.INGRESSCLASSES, "shared-nginx")
    await eventually(
        lambda: absent(on.client, r.INGRESSCLASSES, "shared-nginx"),
        what="unshared class removed from tenant",
    )


async def test_pods_use_the_tenant_kube_dns_service_as_nameserver(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """The tenant DNS add-on the native provisioner installs (here applied by hand to a process
    tenant): CoreDNS runs as tenant pods, and its Service's IP becomes every pod's nameserver."""
    t: TenantHandle = await tenant_factory("svc-b")
    _apply(t, *addons.coredns())
    ip = (await t.client.get(r.SERVICES, "kube-dns", "kube-system"))["spec"]["clusterIP"]
    await eventually(
        lambda: super_client.get_or_none(r.SERVICES, "kube-dns", f"{t.root}-kube-system"),
        what="kube-dns down",
    )
    dns_pods = await eventually(
        lambda: running(super_client, f"{t.root}-kube-system", 2, "k8s-app=kube-dns"),
        what="CoreDNS pods down",
    )
    assert all(p["spec"]["dnsPolicy"] == "Default" for p in dns_pods)  # upstream: the node's resolvers
    await t.client.create(r.PODS, pod("resolver"), "default")
    sp = await eventually(
        lambda: super_client.get_or_none(r.PODS, "resolver", f"{t.root}-default"), what="resolver pod down"
    )
    assert sp["spec"]["dnsConfig"]["nameservers"] == [ip]
    assert sp["spec"]["dnsConfig"]["searches"][0] == "default.svc.cluster.local"
