"""Admin-side tenant operations shared by the CLI, `tispace up` and the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tispace import aio, api, kubeconfig, naming, tenantpki
from tispace.kube import resources as r
from tispace.kube.client import Client

DEFAULT_VERSION = "v1.36"


def cluster_version(
    name: str = DEFAULT_VERSION, kubernetes: str = "v1.36.3", etcd: str = "3.6.14"
) -> dict[str, Any]:
    """The ClusterVersion of config/samples: upstream images, tenants sharing the super etcd."""
    return {
        "apiVersion": f"{naming.GROUP}/{api.VERSION}",
        "kind": "ClusterVersion",
        "metadata": {"name": name},
        "spec": {
            "kubernetesVersion": kubernetes,
            "etcd": {"shared": True, "image": f"registry.k8s.io/etcd:{etcd}-0"},
            "apiServer": {"image": f"registry.k8s.io/kube-apiserver:{kubernetes}"},
            "controllerManager": {"image": f"registry.k8s.io/kube-controller-manager:{kubernetes}"},
        },
    }


def virtual_cluster(
    name: str,
    namespace: str = "default",
    *,
    version: str = DEFAULT_VERSION,
    owner: str = "",
    provisioner: str = "process",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": f"{naming.GROUP}/{api.VERSION}",
        "kind": "VirtualCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterVersionName": version, "owner": owner, "provisioner": provisioner, **spec},
    }


async def wait_phase(
    client: Client,
    name: str,
    namespace: str,
    phases: tuple[str, ...] = (api.Phase.RUNNING,),
    timeout: float = 180,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Poll until the VirtualCluster reaches one of `phases`; TimeoutError says where it stuck."""
    last = ""

    async def reached() -> dict[str, Any] | None:
        nonlocal last
        vc = await client.get(r.VIRTUALCLUSTERS, name, namespace)
        status = vc.get("status") or {}
        line = f"{status.get('phase', 'Pending')}: {status.get('message', '')}".rstrip(": ")
        if line != last:
            progress(line)
            last = line
        return vc if status.get("phase") in phases else None

    return await aio.poll(
        reached,
        timeout=timeout,
        interval=0.3,
        what=lambda: f"VirtualCluster {namespace}/{name} {'/'.join(phases)} (last: {last})",
    )


async def wait_gone(client: Client, name: str, namespace: str, timeout: float = 120) -> None:
    async def gone() -> bool:
        return await client.get_or_none(r.VIRTUALCLUSTERS, name, namespace) is None

    await aio.poll(gone, timeout=timeout, interval=0.3, what=f"VirtualCluster {namespace}/{name} gone")


async def root_of(client: Client, name: str, namespace: str) -> str:
    return naming.vc_root(await client.get(r.VIRTUALCLUSTERS, name, namespace))


async def admin_kubeconfig(client: Client, name: str, namespace: str) -> dict[str, Any]:
    return await admin_kubeconfig_of(client, await client.get(r.VIRTUALCLUSTERS, name, namespace))


async def admin_kubeconfig_of(client: Client, vc: dict[str, Any]) -> dict[str, Any]:
    """The tenant admin's kubeconfig, for a VirtualCluster already read (its uid names the root)."""
    secret = await client.get(r.SECRETS, tenantpki.ADMIN_KUBECONFIG, naming.vc_root(vc))
    return tenantpki.read_admin_kubeconfig(secret)


async def _authorized(tenant: Client, user: str, timeout: float = 30) -> None:
    """Wait until the tenant apiserver's RBAC cache has the new binding, so the kubeconfig we hand
    out works on its first request instead of answering "forbidden" for a moment."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": {"verb": "*", "group": "*", "resource": "*"}},
    }

    async def allowed() -> bool:
        return bool((await tenant.create(r.SUBJECTACCESSREVIEWS, review))["status"].get("allowed"))

    await aio.poll(allowed, timeout=timeout, what=f"the tenant apiserver authorizing {user}")


async def user_kubeconfig(client: Client, vc: dict[str, Any], user: str, days: int = 30) -> dict[str, Any]:
    """A kubeconfig for `user`, bound to cluster-admin inside the tenant of `vc` (and nowhere else)."""
    name = vc["metadata"]["name"]
    admin = await admin_kubeconfig_of(client, vc)
    ca = await client.get(r.SECRETS, tenantpki.ROOT_CA, naming.vc_root(vc))
    tpki_root = tenantpki.ca_from_secret(ca)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"tispace:user:{user}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    async with Client(kubeconfig.credentials(admin), name=name) as tenant:
        await tenant.ensure(r.CLUSTERROLEBINDINGS, binding)
        await _authorized(tenant, user)
    server = admin["clusters"][0]["cluster"]["server"]
    return tenantpki.user_kubeconfig_from_ca(tpki_root, server=server, user=user, days=days, cluster=name)
