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

from cachetools import TTLCache

from syncer.engine.model import (
    Effects,
    Hooks,
    NotYet,
    Obj,
    Routes,
    View,
    Write,
    set_status,
    tell,
)
from syncer.engine.tenant import bound_node
from syncer.resources import nodes, pods
from syncer.resources.context import Refused
from tispace import leases, naming
from tispace.kube import resources as r
from tispace.kube.client import ApiError

log = logging.getLogger("syncer.pods")
TOKEN, BINDING = "token", "binding"  # writes remembered for a while (View.done_just_now)
# Not the tenant-object mark: a token secret mirrors no tenant Secret, and its pod owns it.
TOKEN_MANAGED_BY = "tispace-token"
TOKEN_KEPT = "-"
"""What the super cache holds of a pod's token."""


def token_dropped(super_pod: Obj, routes: Routes) -> Obj:
    """The super cache keeps a pod's token renewal time, and a mark where its token is (a kilobyte per
    pod): a token removed from the pod is seen, and renewed."""
    annotations = super_pod["metadata"].get("annotations") or {}
    for key in annotations:
        if pods.is_token_key(key):
            annotations[key] = TOKEN_KEPT
    return super_pod


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


MINTED: TTLCache[str, dict[str, str]] = TTLCache(maxsize=10_000, ttl=600)
"""Token annotations signed for a tenant pod (by uid) whose super create has not succeeded yet: a
create the super cluster refuses (over quota, say) is retried for as long as it is refused, and
each attempt would otherwise have the tenant sign another token. Reused until its renewal time,
for ten minutes at most; dropped once the pod is made."""


SIGNED: TTLCache[str, str] = TTLCache(maxsize=10_000, ttl=60)
"""The service account uid a token the syncer signed in the last minute names, by tenant pod uid. An
account deleted and made again just before its pod came may not be in the cache yet, and a token
naming the old uid is refused: the pod's next reconciles compare, and a new token is signed."""


def signed_for_another_account(pod: Obj, view: View) -> bool:
    """The syncer signed the pod's token moments ago for an account the cache now shows made again."""
    signed = SIGNED.get(pod["metadata"]["uid"])
    if signed is None:
        return False
    sa = pod["spec"].get("serviceAccountName") or "default"
    account = view.tenant("ServiceAccount", pod["metadata"]["namespace"], sa)
    return account is not None and account["metadata"]["uid"] != signed


async def prepare(pod: Obj, desired: Obj, view: View, fx: Effects) -> Obj:
    """A pod that mounts a token is made with it: the tenant signs it first."""
    if not pods.needs_token(pod):
        return desired
    uid, now = pod["metadata"]["uid"], datetime.datetime.now(datetime.UTC)
    annotations = MINTED.get(uid)  # kept from its signing, not from each retry
    if annotations is None or pods.refresh_passed(annotations, now):  # a short-lived token may be due
        annotations = MINTED[uid] = await new_token(pod, view, fx)
    meta = desired["metadata"]
    return {**desired, "metadata": {**meta, "annotations": {**meta["annotations"], **annotations}}}


async def after_apply(pod: Obj, desired: Obj, super_pod: Obj, view: View, fx: Effects) -> None:
    smeta = super_pod["metadata"]
    MINTED.pop(pod["metadata"]["uid"], None)
    now = datetime.datetime.now(datetime.UTC)
    due = (
        pods.token_due(super_pod, now)
        or pods.token_outlives_sources(pod, super_pod, now)
        or signed_for_another_account(pod, view)
    )
    if due and not view.done_just_now(TOKEN, smeta["uid"]):
        await renew_token(pod, super_pod, view, fx)
    if debug := pods.ephemeral_patch(desired, super_pod):
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


async def new_token(pod: Obj, view: View, fx: Effects, legacy: bool = False) -> dict[str, str]:
    """Tokens for the pod's service account, bound to the pod, one per audience its token sources ask
    for, as long-lived as they ask (pods.token_lifetimes), as the super pod's token annotations (the
    kubelet rewrites a downward API file when they change, so a renewal reaches the running pod). A
    `legacy` pod's Secret holds one token, the API server's. The syncer signs them with the tenant's
    key when it holds it, has seen the service account (its uid is in the token) and the probe showed
    the API server signs that long; else the tenant signs them, a TokenRequest each."""
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    issued = datetime.datetime.now(datetime.UTC)
    signer = view.ctx.token_signer
    account = view.tenant("ServiceAccount", meta["namespace"], sa) if signer is not None else None
    node = token_node(pod, view) if account is not None else None
    tokens = {}
    for audience, seconds in pods.token_lifetimes(pod, legacy).items():
        lifetime = signer.lifetime(seconds) if signer is not None and account is not None else None
        if signer is not None and account is not None and lifetime is not None:
            tokens[audience] = signer.token_request(audience, account, pod, lifetime, issued, node)
            SIGNED[meta["uid"]] = account["metadata"]["uid"]
            continue
        spec: Obj = {
            "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        }
        if audience:
            spec["audiences"] = [audience]
        req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        token = await fx.write(
            Write("tenant", "create", r.SERVICEACCOUNTS, sa, meta["namespace"], req, subresource="token")
        )
        assert token is not None
        tokens[audience] = token
    return pods.token_annotations(tokens, issued)


def token_node(pod: Obj, view: View) -> dict[str, str] | None:
    """The node a bound pod's token names, as the API server's TokenRequest adds it: its name and uid,
    the name alone when the tenant has no such node."""
    name = bound_node(pod)
    if name is None:
        return None
    node = view.tenant("Node", "", name)
    return {"name": name, "uid": node["metadata"]["uid"]} if node is not None else {"name": name}


async def renew_token(pod: Obj, super_pod: Obj, view: View, fx: Effects) -> None:
    """A new token on the super pod. A pod made when tokens were Secrets reads it from its Secret,
    written first (replaced, as it is there; owned by the super pod, so the super garbage collector
    removes it): the pod's new renewal time is the last write, so a failure before it is retried."""
    smeta = super_pod["metadata"]
    legacy = pods.mounts_token_secret(super_pod)  # its Secret holds one token, the API server's
    annotations = await new_token(pod, view, fx, legacy)
    patched: dict[str, str | None] = dict(annotations)
    if legacy:
        secret = token_secret(pod, super_pod, view.ctx.root, annotations[pods.ANN_TOKEN])
        replace = Write("super", "replace", r.SECRETS, secret["metadata"]["name"], smeta["namespace"], secret)
        try:
            await fx.write(replace)
        except ApiError as e:
            if e.status != 404:
                raise
            await fx.write(dataclasses.replace(replace, verb="create"))
        # The token is in the Secret; one an earlier syncer also put on the pod comes off.
        patched = {pods.ANN_TOKEN_REFRESH: annotations[pods.ANN_TOKEN_REFRESH], pods.ANN_TOKEN: None}
    patch = {"metadata": {"uid": smeta["uid"], "annotations": patched}}  # never a namesake's
    # settled: its echo would only find the token renewed
    await fx.write(Write("super", "patch", r.PODS, smeta["name"], smeta["namespace"], patch, settled=True))
    fx.done(TOKEN, smeta["uid"])


def token_secret(pod: Obj, super_pod: Obj, root: str, token: str) -> Obj:
    meta, smeta = pod["metadata"], super_pod["metadata"]
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
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": smeta["name"], "uid": smeta["uid"]}
            ],
        },
        "data": {pods.TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def ensure_vnode(node: str, view: View) -> Write | None:
    """The virtual node a pod is bound to, made the first time one of the tenant's pods lands there
    (bind then makes its Lease, as a kubelet registers its node and then takes its Lease). Only then
    is the super node read: a read parses it, and nearly every pod lands where its tenant has a node."""
    if view.has_tenant("Node", "", node):
        return None
    if (super_node := view.super("Node", "", node)) is None:
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
    if (make := ensure_vnode(node, view)) and (made := await fx.write(make)):
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
            settled=True,  # its echo would find the pod bound: the status comes with the super pod's
        )
    )
    fx.done(BINDING, meta["uid"])


HOOKS = Hooks(
    missing=missing,
    wait_for=claims_missing,
    on_refused=refuse,
    on_rejected=rejected,
    prepare=prepare,
    after_apply=after_apply,
    due=pods.token_due,
)
