"""`native`: the tenant control plane as StatefulSets and Services in its root namespace.

How a production install runs: the ClusterVersion's images and flags are rendered into a
dedicated etcd, kube-apiserver and kube-controller-manager (pure `render`), applied with
server-side apply, and the tenant is Running once every StatefulSet is ready.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tispace import kubeconfig, naming, rbac, tenantpki
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispace.tenantpki import TenantPKI
from vc_manager import addons
from vc_manager.provisioners import NotReadyYet, ProvisionError, tuning
from vc_manager.settings import Settings
from vc_manager.tenant import Tenant

API_PORT = 6443
FIELD_MANAGER = "tispace-vc-manager"
PKI_MOUNT = "/etc/kubernetes/pki"


def _component(tenant: Tenant, key: str) -> dict[str, Any]:
    return dict(tenant.version.get(key) or {})


def _volume(secret: str) -> dict[str, Any]:
    return {"name": secret, "secret": {"secretName": secret}}


def _mount(secret: str) -> dict[str, Any]:
    return {"name": secret, "mountPath": f"{PKI_MOUNT}/{secret}", "readOnly": True}


def _statefulset(
    tenant: Tenant,
    name: str,
    key: str,
    command: list[str],
    secrets: list[str],
    port: int,
    claim: str | None = None,
) -> dict[str, Any]:
    """`command` names the binary first: its tuning (flags, Go environment) is added here."""
    comp = _component(tenant, key)
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "tispace",
        tenantpki.LABEL_VC: tenant.name,
    }
    container: dict[str, Any] = {
        "name": name,
        "image": comp.get("image", ""),
        "command": [*command, *tuning.FLAGS.get(command[0], ()), *(comp.get("extraArgs") or [])],
        "ports": [{"containerPort": port, "name": "main"}],
        "volumeMounts": [_mount(s) for s in secrets]
        + ([{"name": "data", "mountPath": "/var/lib/etcd"}] if claim else []),
        "resources": comp.get("resources") or {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }
    if env := tuning.GO_ENV.get(command[0]):
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    sts: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": tenant.root, "labels": labels},
        "spec": {
            "serviceName": name,
            "replicas": int(comp.get("replicas") or 1),
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "volumes": [_volume(s) for s in secrets],
                    "automountServiceAccountToken": False,
                },
            },
        },
    }
    if claim:
        sts["spec"]["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": claim}}},
            }
        ]
    return sts


def _service(tenant: Tenant, name: str, port: int, headless: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"app.kubernetes.io/name": name},
        "ports": [{"name": "main", "port": port, "targetPort": port}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": tenant.root},
        "spec": spec,
    }


def server(tenant: Tenant) -> str:
    return f"https://apiserver.{tenant.root}.svc:{API_PORT}"


def render(tenant: Tenant, service_cidr: str) -> list[dict[str, Any]]:
    """Every object of a native control plane, in apply order. Pure."""
    missing = [
        k for k in ("etcd", "apiServer", "controllerManager") if not _component(tenant, k).get("image")
    ]
    if missing:
        raise ProvisionError(
            f"ClusterVersion {tenant.spec.get('clusterVersionName')!r} has no image for "
            f"{', '.join(missing)}; provisioner native needs one per component"
        )
    p = PKI_MOUNT
    etcd_url = f"http://etcd-0.etcd.{tenant.root}.svc:2379"
    etcd = _statefulset(
        tenant,
        "etcd",
        "etcd",
        [
            "etcd",
            "--name=$(POD_NAME)",
            "--data-dir=/var/lib/etcd/data",
            "--listen-client-urls=http://0.0.0.0:2379",
            f"--advertise-client-urls={etcd_url}",
            "--listen-peer-urls=http://0.0.0.0:2380",
            "--auto-compaction-retention=1",
        ],
        [],
        2379,
        claim=str(_component(tenant, "etcd").get("storageSize") or "10Gi"),
    )
    etcd["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    )
    apiserver = _statefulset(
        tenant,
        "apiserver",
        "apiServer",
        [
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--secure-port={API_PORT}",
            f"--tls-cert-file={p}/{tenantpki.APISERVER}/tls.crt",
            f"--tls-private-key-file={p}/{tenantpki.APISERVER}/tls.key",
            f"--client-ca-file={p}/{tenantpki.ROOT_CA}/tls.crt",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--service-account-issuer=https://kubernetes.default.svc.{tenant.cluster_domain}",
            f"--service-account-key-file={p}/{tenantpki.SERVICE_ACCOUNT}/tls.crt",
            f"--service-account-signing-key-file={p}/{tenantpki.SERVICE_ACCOUNT}/tls.key",
            f"--service-cluster-ip-range={tenant.spec.get('serviceCidr') or service_cidr}",
            "--enable-aggregator-routing=true",
            f"--requestheader-client-ca-file={p}/{tenantpki.FRONT_PROXY_CA}/tls.crt",
            f"--requestheader-allowed-names={tenantpki.FRONT_PROXY_CLIENT}",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            f"--proxy-client-cert-file={p}/{tenantpki.FRONT_PROXY_CA}/client.crt",
            f"--proxy-client-key-file={p}/{tenantpki.FRONT_PROXY_CA}/client.key",
            f"--kubelet-client-certificate={p}/{tenantpki.KUBELET_CLIENT}/tls.crt",
            f"--kubelet-client-key={p}/{tenantpki.KUBELET_CLIENT}/tls.key",
            "--kubelet-preferred-address-types=InternalIP",
        ],
        [
            tenantpki.ROOT_CA,
            tenantpki.APISERVER,
            tenantpki.SERVICE_ACCOUNT,
            tenantpki.FRONT_PROXY_CA,
            tenantpki.KUBELET_CLIENT,
        ],
        API_PORT,
    )
    kcm = _statefulset(
        tenant,
        "controller-manager",
        "controllerManager",
        [
            "kube-controller-manager",
            f"--kubeconfig={p}/{tenantpki.ADMIN_KUBECONFIG}/{tenantpki.ADMIN_KUBECONFIG}",
            "--leader-elect=false",
            f"--service-account-private-key-file={p}/{tenantpki.SERVICE_ACCOUNT}/tls.key",
            f"--root-ca-file={p}/{tenantpki.ROOT_CA}/tls.crt",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={p}/{tenantpki.ROOT_CA}/tls.crt",
            f"--cluster-signing-key-file={p}/{tenantpki.ROOT_CA}/tls.key",
        ],
        [tenantpki.ROOT_CA, tenantpki.SERVICE_ACCOUNT, tenantpki.ADMIN_KUBECONFIG],
        10257,
    )
    return [
        *network_policies(tenant),
        _service(tenant, "etcd", 2379, headless=True),
        etcd,
        _service(tenant, "apiserver", API_PORT, False),
        apiserver,
        kcm,
    ]


def _pods(name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}


def _policy(tenant: Tenant, name: str, to: list[dict[str, Any]]) -> dict[str, Any]:
    """Egress of one control-plane component: only to `to` (and cluster DNS); nothing else."""
    dns = {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{name}-egress", "namespace": tenant.root},
        "spec": {**_pods(name), "policyTypes": ["Egress"], "egress": [*to, dns]},
    }


def network_policies(tenant: Tenant) -> list[dict[str, Any]]:
    """What a tenant's control plane may reach, so a webhook or aggregated API URL a tenant writes
    cannot reach the super API server, another tenant or the super cluster's own services. Pure.

    The API server reaches its etcd, the tenant's own pods (every super namespace labelled with its
    root: webhooks, aggregated APIs, with --enable-aggregator-routing), and TiSpace's syncer
    (Service admission webhook) and vn_agent (the kubelet API of virtual nodes). The
    controller-manager reaches only its API server; etcd takes connections only from the API server.
    """
    own_pods = {"namespaceSelector": {"matchLabels": {naming.LABEL_TENANT: tenant.root}}}
    tispace = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": rbac.NAMESPACE}},
        "podSelector": {
            "matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": ["syncer", "vn-agent"]}
            ]
        },
    }
    etcd_ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "etcd-ingress", "namespace": tenant.root},
        "spec": {**_pods("etcd"), "policyTypes": ["Ingress"], "ingress": [{"from": [_pods("apiserver")]}]},
    }
    return [
        _policy(tenant, "apiserver", [{"to": [_pods("etcd")]}, {"to": [own_pods]}, {"to": [tispace]}]),
        _policy(tenant, "controller-manager", [{"to": [_pods("apiserver")]}]),
        etcd_ingress,
    ]


async def _apply(client: Client, objs: list[dict[str, Any]]) -> None:
    """Server-side apply, in order, as the manager's field manager."""
    for obj in objs:
        meta = obj["metadata"]
        await client.patch(
            r.BY_KIND[obj["kind"]],
            meta["name"],
            obj,
            meta.get("namespace"),
            patch_type="apply",
            field_manager=FIELD_MANAGER,
            force=True,
        )


@dataclass
class NativeProvisioner:
    settings: Settings
    client: Client

    async def provision(self, tenant: Tenant, tpki: TenantPKI) -> str:
        await _apply(self.client, render(tenant, self.settings.service_cidr))
        return server(tenant)

    async def admin_kubeconfig(self, tenant: Tenant, tpki: TenantPKI, server: str) -> dict[str, Any]:
        return tenantpki.admin_kubeconfig(tpki, server=server, days=tenant.pki_days, cluster=tenant.name)

    async def _waiting(self, tenant: Tenant) -> str | None:
        waiting = []
        for name in ("etcd", "apiserver", "controller-manager"):
            sts = await self.client.get_or_none(r.STATEFULSETS, name, tenant.root)
            want = (sts or {}).get("spec", {}).get("replicas", 1)
            have = (sts or {}).get("status", {}).get("readyReplicas", 0)
            if have < want:
                waiting.append(f"{name} {have}/{want}")
        return f"waiting for StatefulSets: {', '.join(waiting)} ready" if waiting else None

    async def wait_ready(self, tenant: Tenant, server: str, timeout: float) -> None:
        if (problem := await self._waiting(tenant)) is not None:
            raise NotReadyYet(problem)
        await self._dns_addon(tenant)

    async def _dns_addon(self, tenant: Tenant) -> None:
        """CoreDNS inside the tenant (addons.coredns), applied with the tenant's admin credentials."""
        secret = await self.client.get(r.SECRETS, tenantpki.ADMIN_KUBECONFIG, tenant.root)
        creds = kubeconfig.credentials(tenantpki.read_admin_kubeconfig(secret))
        image = _component(tenant, "dns").get("image") or addons.DNS_IMAGE
        try:
            async with Client(creds, name=tenant.name, attempts=2) as c:
                await _apply(c, addons.coredns(tenant.cluster_domain, image))
        except (ApiError, OSError, TimeoutError) as e:
            raise NotReadyYet(f"tenant DNS add-on not applied yet: {e}") from e

    async def supervise(self, tenant: Tenant, tpki: TenantPKI) -> str | None:
        """The super cluster's StatefulSet controller restarts what dies; report what it reports."""
        return await self._waiting(tenant)

    def dns_endpoint(self, tenant: Tenant) -> str:
        """The tenant's DNS runs inside the tenant (kube-system/kube-dns), found by the syncer."""
        return ""

    async def teardown(self, tenant: Tenant) -> None:
        """Everything lives in the root namespace, which the manager deletes."""
