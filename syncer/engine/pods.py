"""The pod's hooks: claims first, finished and lost pods, refusals, tokens, debug containers, binding.

A pod is the one kind whose super copy really runs, so it is the one with a life beyond
create and patch: it waits for its claims, gets a token signed by its tenant, is bound to the
virtual node of the super node it landed on, and is removed when its super pod was lost.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
from collections.abc import Iterable

from syncer.engine.model import (
    Effects,
    Hooks,
    NotYet,
    Obj,
    Routes,
    View,
    Watch,
    WorkKey,
    Write,
    set_status,
    tell,
)
from syncer.resources import nodes, pods
from syncer.resources.context import Refused
from tispace import leases, naming
from tispace.kube import resources as r

log = logging.getLogger("syncer.pods")
TOKEN_SECONDS = 86400
TOKEN, BINDING = "token", "binding"  # writes remembered for a while (View.done_just_now)
# Not the tenant-object mark: a token secret mirrors no tenant Secret, and its pod owns it.
TOKEN_MANAGED_BY = "tispace-token"


def token_secret_kept(secret: Obj, routes: Routes) -> Obj:
    """A token Secret's metadata (owner, renewal time) is all the syncer reads of it: the token, a
    third of its memory, stays out of the cache."""
    secret.pop("data", None)
    return secret


TOKEN_SECRETS = Watch(
    "TokenSecret", r.SECRETS, f"{naming.MANAGED_BY}={TOKEN_MANAGED_BY}", kept=token_secret_kept
)  # read by View.token_due; their renewals are found by the patrol (tokens_due)


def claims_missing(pod: Obj, super_ns: str, view: View) -> bool:
    return any(view.super("PersistentVolumeClaim", super_ns, n) is None for n in pods.claim_names(pod))


async def missing(pod: Obj, view: View, fx: Effects) -> bool:
    """No super pod: a pod with a host IP from its super pod had one and lost it, as after an
    eviction (a nodeName alone may be the tenant's own choice for a pod that never went down)."""
    if not (pod.get("status") or {}).get("hostIP"):
        return False
    await remove_lost(pod, fx)
    return True


async def remove_lost(pod: Obj, fx: Effects) -> None:
    """A super pod that vanished under a running tenant pod: the pod is reported Failed and deleted,
    as a real cluster deletes the pods of a lost node, so its owner (a ReplicaSet, a StatefulSet,
    tidb-operator v2, which never replaces a Failed pod) makes a new one. Nothing runs any more, so
    no grace is left to wait for."""
    meta = pod["metadata"]
    lost = pods.lost_status()
    await fx.write(set_status(pod, lost, r.PODS))
    await fx.write(tell(pod, "Warning", "Evicted", lost["message"], nodes.seconds_now()))
    # A 409 is a new pod of that name: its owner replaced it first.
    await fx.write(
        Write(
            "tenant",
            "delete",
            r.PODS,
            meta["name"],
            meta["namespace"],
            uid=meta["uid"],
            grace=0,
            conflict_ok=True,
        )
    )
    log.info(
        "pod %s/%s lost in the super cluster: deleted",
        meta["namespace"],
        meta["name"],
        extra={"kind": "Pod", "object": f"{meta['namespace']}/{meta['name']}"},
    )


async def refuse(pod: Obj, why: Refused, fx: Effects) -> None:
    """As a kubelet reports a pod it will not admit: Failed with the reason, and an Event."""
    if (pod.get("status") or {}).get("reason") == why.reason:
        return
    await fx.write(set_status(pod, pods.refused_status(why), r.PODS))
    await fx.write(tell(pod, "Warning", why.reason, why.message, nodes.seconds_now()))


async def rejected(pod: Obj, message: str, fx: Effects) -> None:
    """The super cluster refused the pod: its Synced condition says why."""
    condition = pods.synced_condition(False, "SyncRejected", message, nodes.seconds_now())
    await fx.write(
        set_status(pod, {"conditions": [condition]}, r.PODS, patch_type="strategic", best_effort=True)
    )


async def after_apply(pod: Obj, desired: Obj, super_pod: Obj, view: View, fx: Effects) -> None:
    if pods.needs_token(pod) and seen(super_pod, view) and view.token_due(super_pod):
        await create_token(pod, super_pod, view.ctx.root, fx)
    if debug := pods.ephemeral_patch(desired, super_pod):
        smeta = super_pod["metadata"]
        await fx.write(
            Write(
                "super",
                "patch",
                r.PODS,
                smeta["name"],
                smeta["namespace"],
                debug,
                subresource="ephemeralcontainers",
                patch_type="strategic",
            )
        )
    await bind(pod, super_pod, view, fx)


def seen(super_pod: Obj, view: View) -> bool:
    """The super pod is in the cache, not only just made: its token Secret waits for that (the
    pod's ADDED event queues it again), because the super garbage collector, whose informer sees
    the pod about as soon, otherwise meets a Secret whose owner it does not know yet and GETs the
    pod to check it: one request per pod."""
    meta = super_pod["metadata"]
    return view.super("Pod", meta["namespace"], meta["name"]) is not None


async def create_token(pod: Obj, super_pod: Obj, root: str, fx: Effects) -> None:
    """A token signed by the tenant for the pod's service account, as a super secret the pod mounts
    (the kubelet updates the mounted file when the secret changes, so a renewal reaches the pod).

    Owned by the super pod, so the super garbage collector removes it with the pod.
    """
    meta, smeta = pod["metadata"], super_pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    req = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": TOKEN_SECONDS,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        },
    }
    issued = datetime.datetime.now(datetime.UTC)
    token = await fx.write(
        Write("tenant", "create", r.SERVICEACCOUNTS, sa, meta["namespace"], req, subresource="token")
    )
    assert token is not None
    secret = token_secret(pod, super_pod, root, token, issued)
    create = Write(
        "super",
        "create",
        r.SECRETS,
        secret["metadata"]["name"],
        smeta["namespace"],
        secret,
        conflict_ok=True,
    )
    if await fx.write(create) is None:  # left from an earlier pod of that name
        await fx.write(dataclasses.replace(create, verb="replace", conflict_ok=False))
    fx.done(TOKEN, smeta["uid"])


def token_secret(pod: Obj, super_pod: Obj, root: str, token: Obj, issued: datetime.datetime) -> Obj:
    meta, smeta = pod["metadata"], super_pod["metadata"]
    expires = datetime.datetime.fromisoformat(token["status"]["expirationTimestamp"])
    name = pods.token_secret_name(meta["name"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": smeta["namespace"],
            "labels": {naming.MANAGED_BY: TOKEN_MANAGED_BY, naming.LABEL_TENANT: root},
            "annotations": {
                naming.ANN_CLUSTER: root,
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


def token_due(super_pod: Obj, secret: Obj | None, made_just_now: bool, now: datetime.datetime) -> bool:
    """The pod's token secret is missing, left from an earlier pod of that name, or due for renewal
    (a secret made moments ago that the informer does not show yet is not missing)."""
    uid = super_pod["metadata"]["uid"]
    owners = (secret or {}).get("metadata", {}).get("ownerReferences") or [{}]
    if secret is not None and owners[0].get("uid") == uid:
        return pods.token_due(secret, now)
    return not made_just_now


def ensure_vnode(node: str, super_node: Obj | None, view: View) -> Write | None:
    """The virtual node a pod is bound to, made the first time one of the tenant's pods lands there
    (bind then makes its Lease, as a kubelet registers its node and then takes its Lease)."""
    if view.tenant("Node", "", node) is not None:
        return None
    if super_node is None:
        raise NotYet(f"super node {node} not in the cache yet")
    return Write(
        "tenant", "create", r.NODES, node, None, nodes.virtual_node(super_node, view.ctx), conflict_ok=True
    )


async def bind(pod: Obj, super_pod: Obj, view: View, fx: Effects) -> None:
    """Bind the tenant pod to the virtual node of the super node its super pod was scheduled to (a pod
    that named its node is bound already, but its virtual node must exist all the same)."""
    node = super_pod["spec"].get("nodeName")
    meta = pod["metadata"]
    if not node:
        return
    if (make := ensure_vnode(node, view.super("Node", "", node), view)) and (made := await fx.write(make)):
        lease = nodes.lease(made, leases.micro_now())  # owned by the node, so it needs the node's uid
        await fx.write(
            Write("tenant", "create", r.LEASES, node, nodes.LEASE_NAMESPACE, lease, conflict_ok=True)
        )
    if pod["spec"].get("nodeName") or view.done_just_now(BINDING, meta["uid"]):
        return
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": meta["name"], "uid": meta["uid"]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    # already bound: fine
    await fx.write(
        Write(
            "tenant",
            "create",
            r.PODS,
            meta["name"],
            meta["namespace"],
            binding,
            subresource="binding",
            conflict_ok=True,
        )
    )
    fx.done(BINDING, meta["uid"])


def tokens_due(secrets: Iterable[Obj], routes: Routes, now: datetime.datetime) -> list[tuple[str, WorkKey]]:
    """The pods whose token is due for renewal (their reconcile asks the tenant for a new one)."""
    out: list[tuple[str, WorkKey]] = []
    for secret in secrets:
        if not pods.token_due(secret, now):
            continue
        meta = secret["metadata"]
        owner = (meta.get("ownerReferences") or [{}])[0].get("name", "")
        super_pod = routes.super_obj("Pod", meta["namespace"], owner)
        key = naming.tenant_key(super_pod) if super_pod else None
        tenant = routes.tenant_of_root(key[0]) if key else None
        if key and tenant:
            out.append((tenant, ("Pod", key[1], key[2])))
    return out


HOOKS = Hooks(
    missing=missing,
    wait_for=claims_missing,
    on_refused=refuse,
    on_rejected=rejected,
    after_apply=after_apply,
    watches=(TOKEN_SECRETS,),
)
