"""A tenant's PKI and the secrets that carry it in the tenant's root namespace.

The manager writes these secrets, the CLI issues user kubeconfigs from `root-ca`, vn_agent
trusts `root-ca` to recognise a tenant API server, and the syncer reads `admin-kubeconfig`.
Secret names follow the retired VirtualCluster project.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import Any

import yaml

from tispace import kubeconfig, pki

ROOT_CA = "root-ca"
APISERVER = "apiserver-ca"
ETCD_CA = "etcd-ca"
FRONT_PROXY_CA = "front-proxy-ca"
SERVICE_ACCOUNT = "serviceaccount-rsa"
KUBELET_CLIENT = "kubelet-client"
ADMIN_KUBECONFIG = "admin-kubeconfig"
SECRET_NAMES = (
    ROOT_CA,
    APISERVER,
    ETCD_CA,
    FRONT_PROXY_CA,
    SERVICE_ACCOUNT,
    KUBELET_CLIENT,
    ADMIN_KUBECONFIG,
)
ADMIN_USER = "tispace-admin"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
FRONT_PROXY_CLIENT = "front-proxy-client"
LABEL_VC = "tenancy.x-k8s.io/vcname"


@dataclass(frozen=True)
class TenantPKI:
    root_ca: pki.CertKey
    apiserver: pki.CertKey
    etcd_ca: pki.CertKey
    front_proxy_ca: pki.CertKey
    front_proxy_client: pki.CertKey
    sa_private: bytes
    sa_public: bytes
    kubelet_client: pki.CertKey

    def expires(self) -> datetime.datetime:
        """When the first certificate of the set expires."""
        leafs = (self.root_ca, self.apiserver, self.front_proxy_client, self.kubelet_client)
        return min(c.cert.not_valid_after_utc for c in leafs)


def generate(*, tenant: str, hosts: tuple[str, ...], days: int) -> TenantPKI:
    """A fresh PKI. CA names carry the tenant: a TLS peer holding many tenant CAs (vn_agent)
    must find each issuer by its own name."""
    root = pki.new_ca(f"tispace-tenant-ca {tenant}", days=days)
    front = pki.new_ca(f"tispace-front-proxy-ca {tenant}", days=days)
    sa_private, sa_public = pki.new_keypair()
    return TenantPKI(
        root_ca=root,
        apiserver=pki.issue(root, "kube-apiserver", hosts=hosts, server=True, days=days),
        etcd_ca=pki.new_ca(f"tispace-etcd-ca {tenant}", days=days),
        front_proxy_ca=front,
        front_proxy_client=pki.issue(front, FRONT_PROXY_CLIENT, client=True, days=days),
        sa_private=sa_private,
        sa_public=sa_public,
        kubelet_client=pki.issue(root, KUBELET_CLIENT_USER, orgs=("system:masters",), client=True, days=days),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tls(ck: pki.CertKey) -> dict[str, str]:
    return {"tls.crt": _b64(ck.cert_pem), "tls.key": _b64(ck.key_pem)}


def secret_data(p: TenantPKI) -> dict[str, dict[str, str]]:
    """Secret name -> base64 data, everything but the kubeconfig (which needs the endpoint)."""
    return {
        ROOT_CA: _tls(p.root_ca),
        APISERVER: _tls(p.apiserver),
        ETCD_CA: _tls(p.etcd_ca),
        FRONT_PROXY_CA: {
            **_tls(p.front_proxy_ca),
            "client.crt": _b64(p.front_proxy_client.cert_pem),
            "client.key": _b64(p.front_proxy_client.key_pem),
        },
        SERVICE_ACCOUNT: {"tls.key": _b64(p.sa_private), "tls.crt": _b64(p.sa_public)},
        KUBELET_CLIENT: _tls(p.kubelet_client),
    }


def from_secrets(secrets: dict[str, dict[str, Any]]) -> TenantPKI:
    """Rebuild the PKI from secret objects; KeyError names what is missing."""

    def raw(name: str, key: str) -> bytes:
        return base64.b64decode(secrets[name]["data"][key])

    def ck(name: str, cert: str = "tls.crt", key: str = "tls.key") -> pki.CertKey:
        return pki.CertKey(raw(name, cert), raw(name, key))

    return TenantPKI(
        root_ca=ck(ROOT_CA),
        apiserver=ck(APISERVER),
        etcd_ca=ck(ETCD_CA),
        front_proxy_ca=ck(FRONT_PROXY_CA),
        front_proxy_client=ck(FRONT_PROXY_CA, "client.crt", "client.key"),
        sa_private=raw(SERVICE_ACCOUNT, "tls.key"),
        sa_public=raw(SERVICE_ACCOUNT, "tls.crt"),
        kubelet_client=ck(KUBELET_CLIENT),
    )


def ca_from_secret(secret_obj: dict[str, Any]) -> pki.CertKey:
    data = secret_obj["data"]
    return pki.CertKey(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))


def user_kubeconfig_from_ca(
    ca: pki.CertKey, *, server: str, user: str, groups: tuple[str, ...] = (), days: int, cluster: str
) -> dict[str, Any]:
    """A kubeconfig for `user` of this tenant; only this tenant's API server trusts it."""
    cert = pki.issue(ca, user, orgs=groups, client=True, days=days)
    return kubeconfig.build(name=cluster, server=server, ca_pem=ca.cert_pem, user=cert)


def admin_kubeconfig(p: TenantPKI, *, server: str, days: int, cluster: str) -> dict[str, Any]:
    return user_kubeconfig_from_ca(
        p.root_ca, server=server, user=ADMIN_USER, groups=("system:masters",), days=days, cluster=cluster
    )


def admin_secret_data(config: dict[str, Any]) -> dict[str, str]:
    return {ADMIN_KUBECONFIG: _b64(kubeconfig.dump(config).encode())}


def read_admin_kubeconfig(secret_obj: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(base64.b64decode(secret_obj["data"][ADMIN_KUBECONFIG]))
    return loaded


def secret(name: str, namespace: str, data: dict[str, str], vc_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_VC: vc_name}},
        "data": data,
    }
