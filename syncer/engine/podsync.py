"""The pod's way up: binding to virtual nodes, status, refusals, lost pods, tenant tokens."""

from __future__ import annotations

import base64
import datetime
import logging
from typing import Any

from syncer.engine.tenant import TenantRuntime
from syncer.resources import nodes, pods
from syncer.resources.context import Refused
from tispace import naming
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispace.kube.resources import Resource

log = logging.getLogger("syncer.pods")
TOKEN_SECONDS = 86400
# Not the tenant-object mark: a token secret mirrors no tenant Secret, and its pod owns it.
TOKEN_MANAGED_BY = "tispace-token"


async def tenant_event(t: TenantRuntime, obj: dict[str, Any], etype: str, reason: str, message: str) -> None:
    meta = obj["metadata"]
    ns = meta.get("namespace") or "default"
    now = nodes.seconds_now()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": ns},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", "Pod"),
            "name": meta["name"],
            "namespace": ns,
            "uid": meta.get("uid"),
        },
        "type": etype,
        "reason": reason,
        "message": message,
        "source": {"component": "tispace-syncer"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await t.client.create(r.EVENTS, event, ns)
    except ApiError as e:
        log.warning("event for %s/%s not recorded: %s", ns, meta["name"], e, extra={"tenant": t.name})


async def set_status(
    t: TenantRuntime, obj: dict[str, Any], status: dict[str, Any], res: Resource = r.PODS
) -> None:
    """Merge `status` into a tenant object's status, only if it is still the same object (uid)."""
    meta = obj["metadata"]
    await t.client.patch(
        res,
        meta["name"],
        {"metadata": {"uid": meta["uid"]}, "status": status},
        meta.get("namespace"),
        subresource="status",
    )


async def set_condition(t: TenantRuntime, pod: dict[str, Any], condition: dict[str, Any]) -> None:
    """Add or replace one pod condition (strategic merge keys conditions by type); best effort."""
    meta = pod["metadata"]
    try:
        await t.client.patch(
            r.PODS,
            meta["name"],
            {"metadata": {"uid": meta["uid"]}, "status": {"conditions": [condition]}},
            meta["namespace"],
            patch_type="strategic",
            subresource="status",
        )
    except ApiError as e:
        log.warning(
            "condition on %s/%s not set: %s", meta["namespace"], meta["name"], e, extra={"tenant": t.name}
        )


async def refuse(t: TenantRuntime, pod: dict[str, Any], why: Refused) -> None:
    if (pod.get("status") or {}).get("reason") == why.reason:
        return
    await set_status(t, pod, pods.refused_status(why))
    await tenant_event(t, pod, "Warning", why.reason, why.message)


async def remove_lost(t: TenantRuntime, pod: dict[str, Any]) -> None:
    """A super pod that vanished under a running tenant pod: the pod is reported Failed and deleted,
    as a real cluster deletes the pods of a lost node, so its owner (a ReplicaSet, a StatefulSet,
    tidb-operator v2, which never replaces a Failed pod) makes a new one. Nothing runs any more, so
    no grace is left to wait for."""
    meta = pod["metadata"]
    await set_status(t, pod, pods.lost_status())
    await tenant_event(t, pod, "Warning", "Evicted", pods.lost_status()["message"])
    try:
        await t.client.delete(r.PODS, meta["name"], meta["namespace"], grace_period=0, uid=meta["uid"])
    except ApiError as e:
        if e.status != 409:  # a new pod of that name: its owner replaced it first
            raise
    log.info(
        "pod %s/%s lost in the super cluster: deleted",
        meta["namespace"],
        meta["name"],
        extra={"tenant": t.name, "kind": "Pod", "object": f"{meta['namespace']}/{meta['name']}"},
    )


async def create_token(
    t: TenantRuntime, super_client: Client, tenant_pod: dict[str, Any], super_pod: dict[str, Any]
) -> None:
    """A token signed by the tenant for the pod's service account, as a super secret the pod mounts
    (the kubelet updates the mounted file when the secret changes, so a renewal reaches the pod).

    Owned by the super pod, so the super garbage collector removes it with the pod.
    """
    meta, smeta = tenant_pod["metadata"], super_pod["metadata"]
    sa = tenant_pod["spec"].get("serviceAccountName") or "default"
    req = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": TOKEN_SECONDS,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        },
    }
    issued = datetime.datetime.now(datetime.UTC)
    token = await t.client.request("POST", r.SERVICEACCOUNTS.path(meta["namespace"], sa, "token"), body=req)
    expires = datetime.datetime.fromisoformat(token["status"]["expirationTimestamp"])
    name = pods.token_secret_name(meta["name"])
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": smeta["namespace"],
            "labels": {naming.MANAGED_BY: TOKEN_MANAGED_BY, naming.LABEL_TENANT: t.ctx.root},
            "annotations": {
                naming.ANN_CLUSTER: t.ctx.root,
                naming.ANN_UID: meta["uid"],
                naming.ANN_NAMESPACE: meta["namespace"],
                naming.ANN_NAME: name,
                pods.ANN_TOKEN_REFRESH: pods.token_refresh_at(issued, expires),
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": smeta["name"], "uid": smeta["uid"]}
            ],
        },
        "data": {pods.TOKEN_KEY: base64.b64encode(token["status"]["token"].encode()).decode()},
    }
    try:
        await super_client.create(r.SECRETS, secret, smeta["namespace"])
    except ApiError as e:
        if e.status != 409:
            raise
        await super_client.replace(r.SECRETS, secret)  # left from an earlier pod of that name


async def ensure_vnode(t: TenantRuntime, super_node: dict[str, Any] | None, name: str) -> None:
    if t.nodes.get("", name) is not None:
        t.vnode_idle_since.pop(name, None)
        return
    if super_node is None:
        raise ApiError(404, {"message": f"super node {name} not found"}, "GET", name)
    try:
        await t.client.create(r.NODES, nodes.virtual_node(super_node, t.ctx))
    except ApiError as e:
        if e.status != 409:
            raise
    log.info("virtual node %s created", name, extra={"tenant": t.name})


async def bind(
    t: TenantRuntime, tenant_pod: dict[str, Any], super_pod: dict[str, Any], super_node: dict[str, Any] | None
) -> None:
    """Bind the tenant pod to the virtual node of the super node its super pod was scheduled to (a pod
    that named its node is bound already, but its virtual node must exist all the same)."""
    node = super_pod["spec"].get("nodeName")
    meta = tenant_pod["metadata"]
    if not node:
        return
    await ensure_vnode(t, super_node, node)
    if tenant_pod["spec"].get("nodeName"):
        return
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": meta["name"], "uid": meta["uid"]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    try:
        await t.client.request("POST", r.PODS.path(meta["namespace"], meta["name"], "binding"), body=binding)
    except ApiError as e:
        if e.status != 409:  # already bound: fine
            raise
