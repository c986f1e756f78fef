"""The one reconcile, run in memory over every kind of the table with a fake View and fake Effects.

A new kind gets these cases by being a row: a down kind is created, left alone when in sync,
patched when changed, deleted when its tenant object goes, replaced when the tenant object was
recreated, never touched when another tenant owns the super copy, and told when refused; an up or
public kind is copied, left alone, replaced or removed.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
from typing import Any
from unittest import mock

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from syncer.engine import pods as pod_hooks
from syncer.engine import reconcile as rec
from syncer.engine.model import Direction, Later, NotYet, Obj, SyncedKind, Unsynced, Write
from syncer.kinds import DOWN_KINDS, KINDS, PUBLIC_KINDS
from syncer.resources import pods, tokens
from syncer.resources.context import TenantContext
from tispace import naming, pki
from tispace.kube.client import ApiError
from tispace.naming import RootNamespace

CTX = TenantContext(
    root=RootNamespace("t-abcdef-dev"),
    vc_name="dev",
    vc_namespace="t",
    opt_in=frozenset(k.name for k in KINDS.values() if k.opt_in),
)
OTHER = RootNamespace("t-123456-other")

SPECS: dict[str, dict[str, Any]] = {
    "ConfigMap": {"data": {"a": "1"}},
    "Secret": {"data": {"k": "dg=="}, "type": "Opaque"},
    "Pod": {
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
        "status": {"observedGeneration": 1},
    },
    "Service": {"spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}},
    "PersistentVolumeClaim": {
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    },
    "Ingress": {"spec": {"rules": [{"host": "web.example"}]}},
    "Endpoints": {"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]},
}
"""What a tenant object of each kind carries besides metadata (a new kind without a line gets none)."""


def tenant_obj(kind: SyncedKind, uid: str = "uid-1") -> Obj:
    meta: dict[str, Any] = {"name": "web", "uid": uid, "labels": {"app": "web"}, "resourceVersion": "1"}
    if kind.resource.namespaced:
        meta["namespace"] = "app"
    obj = {"apiVersion": kind.resource.api_version, "kind": kind.resource.kind, "metadata": meta}
    return {**obj, **copy.deepcopy(SPECS.get(kind.name, {}))}


class FakeView:
    def __init__(self, ctx: TenantContext = CTX) -> None:
        self.ctx = ctx
        self.tenant_objs: dict[tuple[str, str, str], Obj] = {}
        self.super_objs: dict[tuple[str, str, str], Obj] = {}
        self.listed: asyncio.Event | None = None
        """Set to an unset event: a cache still listing."""
        self.just_done: set[tuple[str, str]] = set()  # what FakeEffects.done remembered
        self.reads: list[tuple[str, str]] = []
        """(side, kind) of each object read: a real cache parses each one it hands out."""

    def tenant(self, kind: str, namespace: str, name: str) -> Obj | None:
        self.reads.append(("tenant", kind))
        return self.tenant_objs.get((kind, namespace, name))

    def super(self, kind: str, namespace: str, name: str) -> Obj | None:
        self.reads.append(("super", kind))
        return self.super_objs.get((kind, namespace, name))

    def has_tenant(self, kind: str, namespace: str, name: str) -> bool:
        return (kind, namespace, name) in self.tenant_objs

    def listing(self, kind: SyncedKind) -> asyncio.Event | None:
        return self.listed

    def namespace_taken(self, super_ns: str) -> bool:
        ns = self.super("Namespace", "", super_ns)
        return ns is not None and (naming.tenant_key(ns) or ("",))[0] != self.ctx.root

    def quota_in_force(self, super_ns: str) -> bool:
        return True

    def done_just_now(self, what: str, uid: str) -> bool:
        return (what, uid) in self.just_done


class FakeEffects:
    def __init__(self, conflicts: bool = False, view: FakeView | None = None) -> None:
        self.writes: list[Write] = []
        self.conflicts = conflicts
        """Creates find the object there (409)."""
        self.just_done = view.just_done if view else set()

    async def write(self, w: Write) -> Obj | None:
        self.writes.append(w)
        if w.verb == "create" and self.conflicts:
            if w.conflict_ok:
                return None
            raise ApiError(409, {"message": "exists"}, "POST", w.name)
        if w.verb == "create":
            assert w.body is not None
            made = copy.deepcopy(w.body)
            made.setdefault("metadata", {})["uid"] = "made-" + w.name
            return made
        return None

    def update_context(self, **changes: Any) -> None:
        pass

    def done(self, what: str, uid: str) -> None:
        self.just_done.add((what, uid))

    def on(self, side: str) -> list[tuple[str, str]]:
        return [(w.verb, w.resource.kind) for w in self.writes if w.side == side]


def super_copy(
    kind: SyncedKind, tobj: Obj, root: RootNamespace = CTX.root
) -> tuple[tuple[str, str, str], Obj]:
    assert kind.to_super is not None
    ctx = dataclasses.replace(CTX, root=root)
    sobj = kind.to_super(tobj, ctx)
    sobj["metadata"]["uid"] = "super-uid"
    sns, sname = kind.super_location(tobj["metadata"].get("namespace", ""), tobj["metadata"]["name"], CTX)
    return (kind.name, sns, sname), sobj


def key_of(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def with_tenant(kind: SyncedKind, tobj: Obj | None = None) -> FakeView:
    view = FakeView()
    tobj = tobj or tenant_obj(kind)
    view.tenant_objs[(kind.name, *key_of(tobj))] = tobj
    return view


DOWN = [pytest.param(k, id=k.name) for k in DOWN_KINDS]


@pytest.mark.parametrize("kind", DOWN)
async def test_a_new_tenant_object_is_created_in_its_super_namespace_with_our_marks(kind: SyncedKind) -> None:
    view, fx = with_tenant(kind), FakeEffects()
    await rec.reconcile(kind, key_of(tenant_obj(kind)), view, fx)
    creates = [w for w in fx.writes if w.side == "super" and w.verb == "create"]
    assert len(creates) == 1
    body = creates[0].body
    assert body is not None
    assert body["metadata"]["labels"][naming.LABEL_TENANT] == CTX.root
    assert body["metadata"]["annotations"][naming.ANN_UID] == "uid-1"
    assert creates[0].namespace == (CTX.super_ns("app") if kind.resource.namespaced else None)
    assert not [w for w in fx.writes if w.side == "super" and w.verb == "delete"]


@pytest.mark.parametrize("kind", DOWN)
async def test_a_copy_in_sync_is_left_alone_and_a_change_is_patched(kind: SyncedKind) -> None:
    tobj = tenant_obj(kind)
    view = with_tenant(kind, tobj)
    key, sobj = super_copy(kind, tobj)
    view.super_objs[key] = sobj
    fx = FakeEffects()
    await rec.reconcile(kind, key_of(tobj), view, fx)
    assert fx.writes == []

    tobj["metadata"]["labels"]["team"] = "db"
    fx = FakeEffects()
    await rec.reconcile(kind, key_of(tobj), view, fx)
    assert fx.on("super") == [("patch", kind.resource.kind)]
    assert fx.writes[0].body["metadata"]["labels"]["team"] == "db"  # type: ignore[index]


@pytest.mark.parametrize("kind", DOWN)
async def test_a_tenant_object_gone_takes_its_super_copy_with_it(kind: SyncedKind) -> None:
    tobj = tenant_obj(kind)
    view = FakeView()
    key, sobj = super_copy(kind, tobj)
    view.super_objs[key] = sobj
    fx = FakeEffects()
    await rec.reconcile(kind, key_of(tobj), view, fx)
    assert fx.on("super") == [("delete", kind.resource.kind)]
    assert fx.writes[0].uid == "super-uid"  # never a namesake made in between


@pytest.mark.parametrize("kind", DOWN)
async def test_a_tenant_object_being_deleted_deletes_down_with_its_grace(kind: SyncedKind) -> None:
    tobj = tenant_obj(kind)
    tobj["metadata"] |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 7}
    view = with_tenant(kind, tobj)
    key, sobj = super_copy(kind, tobj)
    view.super_objs[key] = sobj
    fx = FakeEffects()
    await rec.reconcile(kind, key_of(tobj), view, fx)
    assert [(w.side, w.verb, w.grace) for w in fx.writes] == [("super", "delete", 7)]

    del view.super_objs[key]  # the super copy is gone: a graceful kind finishes the tenant delete
    fx = FakeEffects()
    await rec.reconcile(kind, key_of(tobj), view, fx)
    assert fx.on("tenant") == ([("delete", kind.resource.kind)] if kind.graceful else [])


@pytest.mark.parametrize("kind", DOWN)
async def test_a_recreated_tenant_object_replaces_the_old_super_copy_first(kind: SyncedKind) -> None:
    old = tenant_obj(kind, uid="old-uid")
    view = with_tenant(kind, tenant_obj(kind, uid="new-uid"))
    key, sobj = super_copy(kind, old)
    view.super_objs[key] = sobj
    fx = FakeEffects()
    with pytest.raises(Later):
        await rec.reconcile(kind, key_of(old), view, fx)
    assert [(w.side, w.verb, w.uid, w.grace) for w in fx.writes] == [("super", "delete", "super-uid", 0)]


@pytest.mark.parametrize("kind", DOWN)
async def test_a_super_object_of_another_tenant_is_never_touched(kind: SyncedKind) -> None:
    tobj = tenant_obj(kind)
    for view in (with_tenant(kind, tobj), FakeView()):  # whether or not our tenant has that object
        key, sobj = super_copy(kind, tobj, root=OTHER)
        view.super_objs[key] = sobj
        fx = FakeEffects()
        await rec.reconcile(kind, key_of(tobj), view, fx)
        assert fx.writes == []


@pytest.mark.parametrize("kind", [pytest.param(k, id=k.name) for k in DOWN_KINDS if k.resource.namespaced])
async def test_nothing_is_made_in_a_super_namespace_another_tenant_owns(kind: SyncedKind) -> None:
    view = with_tenant(kind)
    ns = KINDS["Namespace"]
    _, foreign = super_copy(ns, tenant_obj(ns) | {"metadata": {"name": "app", "uid": "x"}}, root=OTHER)
    view.super_objs[("Namespace", "", CTX.super_ns("app"))] = foreign
    fx = FakeEffects()
    await rec.reconcile(kind, key_of(tenant_obj(kind)), view, fx)
    assert fx.on("super") == []
    assert [w.body["reason"] for w in fx.writes] == ["NamespaceTaken"]  # type: ignore[index]


@pytest.mark.parametrize("kind", DOWN)
async def test_a_refusal_by_the_super_cluster_is_told_to_the_tenant(kind: SyncedKind) -> None:
    view, fx = with_tenant(kind), FakeEffects()
    err = ApiError(422, {"message": "spec.x: Invalid value"}, "POST", "web")
    await rec.rejected(kind, key_of(tenant_obj(kind)), view, fx, err)
    event = fx.writes[0]
    assert (event.side, event.verb, event.resource.kind, event.best_effort) == (
        "tenant",
        "create",
        "Event",
        True,
    )
    assert event.body is not None and event.body["reason"] == "SyncRejected"
    assert "spec.x: Invalid value" in event.body["message"]
    assert event.body["involvedObject"]["uid"] == "uid-1"


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
async def test_nothing_is_done_on_half_listed_caches(kind: SyncedKind) -> None:
    view, fx = with_tenant(kind) if kind.direction is Direction.DOWN else FakeView(), FakeEffects()
    view.listed = asyncio.Event()
    with pytest.raises(Unsynced) as waits:
        await rec.reconcile(kind, ("app", "web"), view, fx)
    assert waits.value.listed is view.listed
    assert fx.writes == []


async def test_a_kind_a_tenant_did_not_opt_into_is_removed_from_the_super_cluster() -> None:
    kind = next(k for k in DOWN_KINDS if k.opt_in)
    tobj = tenant_obj(kind)
    view = with_tenant(kind, tobj)
    view.ctx = dataclasses.replace(CTX, opt_in=frozenset())
    key, sobj = super_copy(kind, tobj)
    view.super_objs[key] = sobj
    fx = FakeEffects()
    await rec.reconcile(kind, key_of(tobj), view, fx)
    assert fx.on("super") == [("delete", kind.resource.kind)]


REFUSED = {
    "Pod": {"spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox:1"}]}},
    "Ingress": {"spec": {"ingressClassName": "private"}},
    "PersistentVolumeClaim": {"spec": {"storageClassName": "private", "resources": {}}},
}
"""Objects of the kinds whose translation refuses some (host access, classes not shared)."""


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_a_refused_translation_is_told_to_the_tenant_and_nothing_goes_down(name: str) -> None:
    kind = KINDS[name]
    tobj = tenant_obj(kind) | copy.deepcopy(REFUSED[name])
    view, fx = with_tenant(kind, tobj), FakeEffects()
    await rec.reconcile(kind, key_of(tobj), view, fx)
    assert fx.on("super") == []
    events = [w.body for w in fx.writes if w.resource.kind == "Event"]
    assert len(events) == 1 and events[0] is not None and events[0]["type"] == "Warning"
    if kind.hooks.on_refused:  # a pod is reported Failed with the reason, as a kubelet does
        status = [w.body for w in fx.writes if w.subresource == "status"]
        assert status and status[0]["status"]["phase"] == "Failed"  # type: ignore[index]


# --- public and up kinds ---------------------------------------------------------------------------
def shared_class(kind: SyncedKind, **extra: Any) -> Obj:
    return {
        "apiVersion": kind.resource.api_version,
        "kind": kind.resource.kind,
        "metadata": {"name": "fast", "uid": "s-uid", "labels": {naming.LABEL_PUBLIC: "true"}},
        "provisioner": "rbd.csi.ceph.com",
        "driverName": "rbd.csi.ceph.com",
        "value": 1000,
        "handler": "kata",
        "spec": {"controller": "nginx"},
        **extra,
    }


PUBLIC = [pytest.param(k, id=k.name) for k in PUBLIC_KINDS]


@pytest.mark.parametrize("kind", PUBLIC)
async def test_a_shared_class_is_copied_left_alone_replaced_when_stale_and_removed(kind: SyncedKind) -> None:
    assert kind.to_tenant is not None
    view = FakeView()
    source = shared_class(kind)
    view.super_objs[(kind.name, "", "fast")] = source
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "fast"), view, fx)
    assert fx.on("tenant") == [("create", kind.resource.kind)]
    copy_ = fx.writes[0].body
    assert copy_ is not None and copy_["metadata"]["labels"][naming.LABEL_PUBLIC] == "true"

    view.tenant_objs[(kind.name, "", "fast")] = copy_ | {"metadata": copy_["metadata"] | {"uid": "t-uid"}}
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "fast"), view, fx)
    assert fx.writes == []

    view.super_objs[(kind.name, "", "fast")]["metadata"]["annotations"] = {
        "storageclass.kubernetes.io/is-default-class": "true",
        "ingressclass.kubernetes.io/is-default-class": "true",
    }
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "fast"), view, fx)
    assert fx.on("tenant") == [("delete", kind.resource.kind), ("create", kind.resource.kind)]

    del view.super_objs[(kind.name, "", "fast")]
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "fast"), view, fx)
    assert [(w.verb, w.uid) for w in fx.writes] == [("delete", "t-uid")]


@pytest.mark.parametrize("kind", PUBLIC)
async def test_a_tenant_class_of_the_same_name_is_reported_not_overwritten(kind: SyncedKind) -> None:
    view = FakeView()
    view.super_objs[(kind.name, "", "fast")] = shared_class(kind)
    with pytest.raises(ApiError, match="the tenant has its own"):
        await rec.reconcile(kind, ("", "fast"), view, FakeEffects(conflicts=True))


def super_node(name: str = "n1", zone: str = "a") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": "n-uid", "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {"capacity": {"cpu": "8"}, "conditions": [{"type": "Ready", "status": "True"}]},
    }


async def test_a_selected_super_node_is_a_virtual_node_that_follows_it() -> None:
    kind = KINDS["Node"]
    view = FakeView(dataclasses.replace(CTX, node_selector={}))
    view.super_objs[("Node", "", "n1")] = super_node()
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "n1"), view, fx)
    assert fx.on("tenant") == [("create", "Node")]
    vnode = fx.writes[0].body
    assert vnode is not None
    view.tenant_objs[("Node", "", "n1")] = vnode

    fx = FakeEffects()
    await rec.reconcile(kind, ("", "n1"), view, fx)
    assert fx.writes == []

    view.super_objs[("Node", "", "n1")] = super_node(zone="b")
    view.super_objs[("Node", "", "n1")]["status"]["capacity"] = {"cpu": "16"}
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "n1"), view, fx)
    assert [(w.verb, w.subresource) for w in fx.writes] == [("patch", "status"), ("patch", None)]

    del view.super_objs[("Node", "", "n1")]  # idle nodes are the node loop's to remove
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "n1"), view, fx)
    assert fx.writes == []


async def test_an_unselected_super_node_is_not_made_in_a_tenant_on_demand() -> None:
    view = FakeView()
    view.super_objs[("Node", "", "n1")] = super_node()
    fx = FakeEffects()
    await rec.reconcile(KINDS["Node"], ("", "n1"), view, fx)
    assert fx.writes == []


def synced_pair(view: FakeView, kind_name: str) -> tuple[str, str, str]:
    """A tenant object of the kind and its super copy in the caches; returns the super key."""
    kind = KINDS[kind_name]
    tobj = tenant_obj(kind)
    view.tenant_objs[(kind_name, *key_of(tobj))] = tobj
    key, sobj = super_copy(kind, tobj)
    view.super_objs[key] = sobj
    return key


async def test_a_scheduled_pod_is_bound_once_though_the_tenant_cache_shows_it_late() -> None:
    kind = KINDS["Pod"]
    view = FakeView()
    key = synced_pair(view, "Pod")
    view.super_objs[key]["spec"]["nodeName"] = "node-1"
    view.super_objs[("Node", "", "node-1")] = {"metadata": {"name": "node-1"}}
    view.tenant_objs[("Node", "", "node-1")] = {"metadata": {"name": "node-1"}}
    tkey = ("app", "web")

    def bindings(fx: FakeEffects) -> list[str]:
        return [w.name for w in fx.writes if w.subresource == "binding"]

    fx = FakeEffects(view=view)
    await rec.reconcile(kind, tkey, view, fx)
    assert bindings(fx) == ["web"]
    # another super update re-queues the pod before the tenant informer shows spec.nodeName
    fx = FakeEffects(view=view)
    await rec.reconcile(kind, tkey, view, fx)
    assert bindings(fx) == []
    # a restarted syncer remembers nothing: the pod, still unbound in its cache, is bound
    view.just_done.clear()
    fx = FakeEffects(view=view)
    await rec.reconcile(kind, tkey, view, fx)
    assert bindings(fx) == ["web"]


async def test_a_pod_bound_where_its_tenant_has_the_node_reads_no_node() -> None:
    """Nearly every pod lands on a node its tenant has already: whether it does is asked of the cache
    without parsing the node, and the super node is read only to make a virtual node."""
    view = FakeView()
    key = synced_pair(view, "Pod")
    view.super_objs[key]["spec"]["nodeName"] = "n1"
    view.super_objs[("Node", "", "n1")] = super_node()
    view.tenant_objs[("Node", "", "n1")] = {"metadata": {"name": "n1"}}
    fx = FakeEffects(view=view)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert [(w.resource.kind, w.subresource) for w in fx.writes if w.verb == "create"] == [("Pod", "binding")]
    assert [r for r in view.reads if r[1] == "Node"] == []


async def test_a_pod_on_a_new_node_makes_its_virtual_node_and_lease_before_binding() -> None:
    """As a kubelet registers its node and takes its Lease: both made with the first pod there, so
    the first renewal patches a Lease that exists."""
    view = FakeView()
    key = synced_pair(view, "Pod")
    view.super_objs[key]["spec"]["nodeName"] = "n1"
    view.super_objs[("Node", "", "n1")] = super_node()
    fx = FakeEffects(view=view)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    made = [(w.verb, w.resource.kind, w.namespace, w.name, w.subresource) for w in fx.writes[:3]]
    assert made == [
        ("create", "Node", None, "n1", None),
        ("create", "Lease", "kube-node-lease", "n1", None),
        ("create", "Pod", "app", "web", "binding"),
    ]
    lease = fx.writes[1].body
    assert lease["spec"]["holderIdentity"] == "n1" and lease["spec"]["renewTime"]
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "made-n1"  # the uid the node came back with
    assert all(w.conflict_ok for w in fx.writes[:2])  # made by another worker a moment before: fine


async def test_a_node_another_worker_made_a_moment_before_gets_no_second_lease() -> None:
    """Its maker made its Lease; without the node's uid this one could not own one anyway."""
    view = FakeView()
    key = synced_pair(view, "Pod")
    view.super_objs[key]["spec"]["nodeName"] = "n1"
    view.super_objs[("Node", "", "n1")] = super_node()
    fx = FakeEffects(view=view, conflicts=True)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert [w.resource.kind for w in fx.writes if w.verb == "create"][:2] == ["Node", "Pod"]


class TokenEffects(FakeEffects):
    """The tenant signs a token that lives as long as asked; a Secret is there unless `gone`; the
    super cluster refuses pod creates and patches when `refused`."""

    def __init__(self, view: FakeView, gone: bool = False, refused: bool = False) -> None:
        super().__init__(view=view)
        self.gone = gone
        self.refused = refused

    async def write(self, w: Write) -> Obj | None:
        if w.subresource == "token":
            self.writes.append(w)
            seconds = w.body["spec"]["expirationSeconds"]  # type: ignore[index]
            expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
            return {"status": {"token": "signed", "expirationTimestamp": expires.isoformat()}}
        if w.resource.plural == "secrets":
            self.writes.append(w)
            if w.verb == "replace" and self.gone:
                raise ApiError(404, {"message": "not found"}, "PUT", w.name)
            return w.body
        if w.verb == "patch" and self.refused:
            raise ApiError(429, {"message": "slow down"}, "PATCH", w.name)
        if w.verb == "create" and w.resource.plural == "pods" and self.refused:
            self.writes.append(w)
            raise ApiError(403, {"message": "exceeded quota"}, "POST", w.name)
        return await super().write(w)


@pytest.fixture(autouse=True)
def no_tokens_signed_before() -> None:
    """Tokens kept for a pod's retried create are kept by tenant pod uid, the same in every test."""
    pod_hooks.MINTED.clear()
    pod_hooks.SIGNED.clear()


def token_pod(view: FakeView) -> Obj:
    tobj = tenant_obj(KINDS["Pod"])
    token = {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
    tobj["spec"]["volumes"] = [{"name": "api", "projected": {"sources": [token]}}]
    view.tenant_objs[("Pod", "app", "web")] = tobj
    return tobj


def steps(fx: FakeEffects) -> list[tuple[str, str, str, str | None]]:
    return [(w.side, w.verb, w.resource.plural, w.subresource) for w in fx.writes]


async def test_a_pod_is_made_with_its_tenant_signed_token_and_no_secret() -> None:
    kind = KINDS["Pod"]
    view = FakeView()
    token_pod(view)
    fx = TokenEffects(view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert steps(fx) == [("tenant", "create", "serviceaccounts", "token"), ("super", "create", "pods", None)]
    made = fx.writes[1].body
    assert made is not None
    assert made["metadata"]["annotations"][pods.ANN_TOKEN] == "signed"
    assert not pods.token_due(made, datetime.datetime.now(datetime.UTC))  # renewed at 80% of its life
    assert made["metadata"]["labels"][naming.LABEL_TENANT] == CTX.root

    # Its ADDED event: the cache holds it without the token, which no patch takes away.
    view.super_objs[("Pod", CTX.super_ns("app"), "web")] = pod_hooks.token_dropped(
        {**made, "metadata": {**made["metadata"], "uid": "super-uid"}}, view
    )
    fx = TokenEffects(view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert fx.writes == []


@pytest.mark.parametrize("legacy", [False, True], ids=["annotation", "made-with-a-secret"])
async def test_a_due_token_is_renewed_once_on_the_super_pod(legacy: bool) -> None:
    """A pod made when tokens were Secrets mounts its Secret (a pod's volumes cannot change): that
    Secret gets the new token too, replaced since it is there."""
    kind = KINDS["Pod"]
    view = FakeView()
    key, sobj = super_copy(kind, token_pod(view))
    annotations = sobj["metadata"]["annotations"]
    if legacy:
        name = pods.token_secret_name("web")
        token_item = {"key": "token", "path": "token"}
        sobj["spec"]["volumes"][0]["projected"]["sources"] = [
            {"secret": {"name": name, "items": [token_item]}}
        ]
    else:
        annotations |= {pods.ANN_TOKEN: "old", pods.ANN_TOKEN_REFRESH: "2026-01-01T00:00:00Z"}
    view.super_objs[key] = sobj
    fx = TokenEffects(view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    # The pod's new renewal time is the last write: a failed Secret write is retried.
    secret = [("super", "replace", "secrets", None)] if legacy else []
    token, patch = ("tenant", "create", "serviceaccounts", "token"), ("super", "patch", "pods", None)
    assert steps(fx) == [token, *secret, patch]
    renewed = fx.writes[-1]
    assert renewed.settled  # its echo would only find the token renewed
    assert renewed.body == {  # never a namesake's
        "metadata": {
            "uid": "super-uid",
            "annotations": {  # a Secret's token is not also on its pod: one put there before comes off
                pods.ANN_TOKEN: None if legacy else "signed",
                pods.ANN_TOKEN_REFRESH: mock.ANY,
            },
        }
    }
    if legacy:
        assert fx.writes[1].body["data"] == {"token": "c2lnbmVk"}  # type: ignore[index]
        assert fx.writes[1].body["metadata"]["ownerReferences"][0]["uid"] == "super-uid"  # type: ignore[index]

    fx = TokenEffects(view)  # queued again before the cache shows the renewal: not signed twice
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert fx.writes == []


ISSUER = "https://kubernetes.default.svc.cluster.local"


def signing_view() -> tuple[FakeView, bytes]:
    """A tenant whose key the syncer holds, and the key's public half."""
    private, public = pki.new_keypair()
    key = serialization.load_pem_private_key(private, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signer = tokens.Signer(key, ISSUER, (ISSUER,), longest=86400)
    return FakeView(dataclasses.replace(CTX, token_signer=signer)), public


async def test_a_pod_of_a_tenant_whose_key_the_syncer_holds_gets_tokens_it_signs_itself() -> None:
    view, public = signing_view()
    tobj = token_pod(view)
    tobj["spec"]["volumes"][0]["projected"]["sources"].append(
        {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 600}}
    )
    account = {"metadata": {"name": "default", "namespace": "app", "uid": "sa-uid"}}
    view.tenant_objs[("ServiceAccount", "app", "default")] = account
    fx = TokenEffects(view)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert steps(fx) == [("super", "create", "pods", None)]  # no TokenRequest
    annotations = fx.writes[0].body["metadata"]["annotations"]  # type: ignore[index]
    for audience in ("", "vault"):
        found = jwt.decode(
            annotations[pods.token_key(audience)], public, ["ES256"], audience=audience or ISSUER
        )
        assert found["sub"] == "system:serviceaccount:app:default"
        assert found["kubernetes.io"]["pod"] == {"name": "web", "uid": "uid-1"}
        assert found["kubernetes.io"]["serviceaccount"] == {"name": "default", "uid": "sa-uid"}
        assert found["exp"] - found["iat"] == (pods.TOKEN_SECONDS if not audience else 600)
    # renewed when the shorter one is due, as the tenant's tokens are
    refresh = datetime.datetime.fromisoformat(annotations[pods.ANN_TOKEN_REFRESH])
    assert refresh - datetime.datetime.now(datetime.UTC) < datetime.timedelta(seconds=600)


async def test_a_pod_whose_service_account_the_syncer_has_not_seen_has_its_tenant_sign() -> None:
    """The token names the account's uid, which only the cache (or the tenant) knows."""
    view, _ = signing_view()
    token_pod(view)
    fx = TokenEffects(view)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert steps(fx) == [("tenant", "create", "serviceaccounts", "token"), ("super", "create", "pods", None)]


async def test_a_renewed_token_of_a_bound_pod_names_its_node_as_the_api_server_would() -> None:
    view, public = signing_view()
    key, sobj = super_copy(KINDS["Pod"], token_pod(view))
    sobj["metadata"]["annotations"] |= {pods.ANN_TOKEN: "old", pods.ANN_TOKEN_REFRESH: "2026-01-01T00:00:00Z"}
    view.super_objs[key] = sobj
    view.tenant_objs[("Pod", "app", "web")]["spec"]["nodeName"] = "vn-1"
    view.tenant_objs[("Node", "", "vn-1")] = {"metadata": {"name": "vn-1", "uid": "node-uid"}}
    view.tenant_objs[("ServiceAccount", "app", "default")] = {
        "metadata": {"name": "default", "namespace": "app", "uid": "sa-uid"}
    }
    fx = TokenEffects(view)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert steps(fx) == [("super", "patch", "pods", None)]
    token = fx.writes[0].body["metadata"]["annotations"][pods.ANN_TOKEN]  # type: ignore[index]
    found = jwt.decode(token, public, ["ES256"], audience=ISSUER)
    assert found["kubernetes.io"]["node"] == {"name": "vn-1", "uid": "node-uid"}


async def test_a_token_asked_for_longer_than_the_probe_reached_is_signed_by_the_tenant() -> None:
    view, _ = signing_view()  # the probe reached a day
    tobj = token_pod(view)
    tobj["spec"]["volumes"][0]["projected"]["sources"].append(
        {"serviceAccountToken": {"path": "long", "audience": "long", "expirationSeconds": 2 * 86400}}
    )
    view.tenant_objs[("ServiceAccount", "app", "default")] = {
        "metadata": {"name": "default", "namespace": "app", "uid": "sa-uid"}
    }
    fx = TokenEffects(view)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert steps(fx) == [("tenant", "create", "serviceaccounts", "token"), ("super", "create", "pods", None)]
    assert fx.writes[0].body["spec"]["audiences"] == ["long"]  # type: ignore[index]


async def test_a_token_signed_for_an_account_the_cache_then_shows_made_again_is_signed_anew() -> None:
    """The account was deleted and made again just before the pod came, and the cache had the old
    one: the token names its old uid, which the API server refuses."""
    view, public = signing_view()
    token_pod(view)
    account = {"metadata": {"name": "default", "namespace": "app", "uid": "old-uid"}}
    view.tenant_objs[("ServiceAccount", "app", "default")] = account
    fx = TokenEffects(view)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    made = fx.writes[0].body
    assert made is not None
    key = ("Pod", CTX.super_ns("app"), "web")
    view.super_objs[key] = pod_hooks.token_dropped(
        {**made, "metadata": {**made["metadata"], "uid": "super-uid"}}, view
    )

    fx = TokenEffects(view)  # the cache still shows the old account: nothing to do
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert fx.writes == []
    view.tenant_objs[("ServiceAccount", "app", "default")] = {
        "metadata": {**account["metadata"], "uid": "new-uid"}
    }
    fx = TokenEffects(view)
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert steps(fx) == [("super", "patch", "pods", None)]
    token = fx.writes[0].body["metadata"]["annotations"][pods.ANN_TOKEN]  # type: ignore[index]
    assert (
        jwt.decode(token, public, ["ES256"], audience=ISSUER)["kubernetes.io"]["serviceaccount"]["uid"]
        == "new-uid"
    )
    fx = TokenEffects(view)  # signed for the account the cache shows: once
    await rec.reconcile(KINDS["Pod"], ("app", "web"), view, fx)
    assert fx.writes == []


async def test_a_pod_gets_a_token_per_audience_its_sources_ask_for() -> None:
    kind = KINDS["Pod"]
    view = FakeView()
    tobj = token_pod(view)
    audience = {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 600}}
    tobj["spec"]["volumes"][0]["projected"]["sources"].append(audience)
    fx = TokenEffects(view)
    before = datetime.datetime.now(datetime.UTC)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    asked = [
        (w.body["spec"].get("audiences"), w.body["spec"]["expirationSeconds"])  # type: ignore[index]
        for w in fx.writes
        if w.subresource == "token"
    ]
    assert asked == [(None, pods.TOKEN_SECONDS), (["vault"], 600)]
    made = fx.writes[-1].body
    assert made is not None
    annotations = made["metadata"]["annotations"]
    assert {pods.ANN_TOKEN, pods.token_key("vault")} <= annotations.keys()
    # Both renewed when the shorter is at 80% of its life.
    assert not pods.refresh_passed(annotations, before + datetime.timedelta(seconds=470))
    assert pods.refresh_passed(annotations, before + datetime.timedelta(seconds=482))


async def test_a_token_signed_for_longer_than_its_source_asks_is_renewed() -> None:
    """A pod whose token an earlier syncer signed for a day while its source asks for ten minutes."""
    kind = KINDS["Pod"]
    view = FakeView()
    tobj = token_pod(view)
    tobj["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] = 600
    key, sobj = super_copy(kind, tobj)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=19)
    sobj["metadata"]["annotations"] |= {
        pods.ANN_TOKEN: "day-long",
        pods.ANN_TOKEN_REFRESH: later.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    view.super_objs[key] = sobj
    fx = TokenEffects(view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert steps(fx) == [("tenant", "create", "serviceaccounts", "token"), ("super", "patch", "pods", None)]
    assert fx.writes[0].body["spec"]["expirationSeconds"] == 600  # type: ignore[index]


async def test_a_refused_pod_create_is_retried_with_the_token_already_signed() -> None:
    kind = KINDS["Pod"]
    view = FakeView()
    token_pod(view)
    for _ in range(2):
        fx = TokenEffects(view, refused=True)
        with pytest.raises(ApiError):
            await rec.reconcile(kind, ("app", "web"), view, fx)
    assert steps(fx) == [("super", "create", "pods", None)]  # the second attempt: no new token
    kept = pod_hooks.MINTED["uid-1"]
    pod_hooks.MINTED["uid-1"] = {**kept, pods.ANN_TOKEN_REFRESH: "2020-01-01T00:00:00Z"}
    fx = TokenEffects(view, refused=True)
    with pytest.raises(ApiError):  # a kept token that is due is not reused: a short one may expire
        await rec.reconcile(kind, ("app", "web"), view, fx)
    assert steps(fx) == [("tenant", "create", "serviceaccounts", "token"), ("super", "create", "pods", None)]
    fx = TokenEffects(view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert steps(fx) == [("super", "create", "pods", None)]
    assert "uid-1" not in pod_hooks.MINTED  # made: the next token is a renewal's


async def test_a_renewal_that_fails_after_the_secret_is_retried_and_a_missing_secret_is_made() -> None:
    kind = KINDS["Pod"]
    view = FakeView()
    key, sobj = super_copy(kind, token_pod(view))
    item = {"key": "token", "path": "token"}
    sobj["spec"]["volumes"][0]["projected"]["sources"] = [
        {"secret": {"name": "tispace-token-web", "items": [item]}}
    ]
    view.super_objs[key] = sobj
    fx = TokenEffects(view, gone=True, refused=True)
    with pytest.raises(ApiError):  # the Secret written (made: it was gone), the pod's patch refused
        await rec.reconcile(kind, ("app", "web"), view, fx)
    assert [(w.verb, w.resource.plural) for w in fx.writes if w.side == "super"] == [
        ("replace", "secrets"),
        ("create", "secrets"),
    ]
    fx = TokenEffects(view)  # the retry renews again: the pod still shows no renewal time
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert steps(fx)[-1] == ("super", "patch", "pods", None)


async def test_a_status_just_written_is_not_written_again_before_the_cache_shows_it() -> None:
    kind = KINDS["Pod"]
    view = FakeView()
    key = synced_pair(view, "Pod")
    view.super_objs[key]["status"] = {"phase": "Running", "podIP": "10.244.0.9"}
    tkey = ("app", "web")

    def status_writes(fx: FakeEffects) -> list[Obj]:
        return [w.body["status"] for w in fx.writes if w.subresource == "status"]  # type: ignore[index]

    fx = FakeEffects(view=view)
    await rec.reconcile(kind, tkey, view, fx)
    assert status_writes(fx) == [{"phase": "Running", "podIP": "10.244.0.9"}]
    fx = FakeEffects(view=view)  # an event of the tenant pod, before its informer shows the write
    await rec.reconcile(kind, tkey, view, fx)
    assert status_writes(fx) == []
    view.super_objs[key]["status"]["phase"] = "Succeeded"  # a new status is written at once
    fx = FakeEffects(view=view)
    await rec.reconcile(kind, tkey, view, fx)
    assert status_writes(fx) == [{"phase": "Succeeded", "podIP": "10.244.0.9"}]


async def test_only_writes_whose_echo_finds_nothing_to_do_are_settled() -> None:
    """A settled write's own watch event queues nothing (caches.JustDone): the last status write, the
    super delete of a pod being deleted, a pod's create (its reconcile goes on with the answer) and
    its binding (the status comes up with the super pod's events); a create that ends its reconcile
    is not."""
    kind = KINDS["Pod"]
    view = FakeView()
    tobj = tenant_obj(kind)
    view.tenant_objs[("Pod", "app", "web")] = tobj
    fx = FakeEffects(view=view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert [(w.side, w.verb, w.settled) for w in fx.writes] == [("super", "create", True)]
    cm = KINDS["ConfigMap"]
    fx = FakeEffects()
    await rec.reconcile(cm, ("app", "web"), with_tenant(cm), fx)  # its echo is where it is compared
    assert [(w.side, w.verb, w.settled) for w in fx.writes] == [("super", "create", False)]

    view = FakeView()
    key = synced_pair(view, "Pod")
    view.super_objs[key]["spec"]["nodeName"] = "node-1"
    view.super_objs[key]["status"] = {"phase": "Running"}
    view.super_objs[("Node", "", "node-1")] = {"metadata": {"name": "node-1"}}
    view.tenant_objs[("Node", "", "node-1")] = {"metadata": {"name": "node-1"}}
    fx = FakeEffects(view=view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert [(w.subresource, w.settled) for w in fx.writes] == [("binding", True), ("status", True)]

    tobj = view.tenant_objs[("Pod", "app", "web")]
    tobj["metadata"] |= {"deletionTimestamp": "2026-12-06T00:00:00Z", "deletionGracePeriodSeconds": 30}
    fx = FakeEffects(view=view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert [(w.side, w.verb, w.settled) for w in fx.writes] == [("super", "delete", True)]

    del view.super_objs[key]  # its DELETED event is always heard: the tenant pod is finished
    fx = FakeEffects(view=view)
    await rec.reconcile(kind, ("app", "web"), view, fx)
    assert [(w.side, w.verb, w.settled) for w in fx.writes] == [("tenant", "delete", False)]


def bound_volume(view: FakeView) -> Obj:
    """A tenant claim, its super copy, and the super PV bound to it."""
    key = synced_pair(view, "PersistentVolumeClaim")
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv-1", "uid": "pv-uid"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": "rbd", "volumeHandle": "h"},
            "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {"namespace": key[1], "name": key[2], "uid": "super-uid"},
        },
    }
    view.super_objs[("PersistentVolume", "", "pv-1")] = pv
    return pv


async def test_a_volume_bound_to_a_tenant_claim_comes_up_follows_and_goes() -> None:
    kind = KINDS["PersistentVolume"]
    view = FakeView()
    pv = bound_volume(view)
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "pv-1"), view, fx)
    assert fx.on("tenant") == [("create", "PersistentVolume")]
    tenant_pv = fx.writes[0].body
    assert tenant_pv is not None and tenant_pv["spec"]["claimRef"]["uid"] == "uid-1"
    view.tenant_objs[("PersistentVolume", "", "pv-1")] = tenant_pv | {
        "metadata": tenant_pv["metadata"] | {"uid": "tpv"}
    }

    pv["spec"]["capacity"] = {"storage": "2Gi"}  # resized in the super cluster
    view.tenant_objs[("PersistentVolume", "", "pv-1")]["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "pv-1"), view, fx)
    assert [(w.side, w.verb) for w in fx.writes] == [("tenant", "patch"), ("super", "patch")]
    assert fx.writes[0].body == {"spec": {"capacity": {"storage": "2Gi"}}}
    assert fx.writes[1].body == {"spec": {"persistentVolumeReclaimPolicy": "Retain"}}

    del view.super_objs[("PersistentVolume", "", "pv-1")]
    fx = FakeEffects()
    await rec.reconcile(kind, ("", "pv-1"), view, fx)
    assert [(w.verb, w.uid) for w in fx.writes] == [("delete", "tpv")]


async def test_a_tenant_own_volume_is_never_touched() -> None:
    view = FakeView()
    bound_volume(view)
    view.tenant_objs[("PersistentVolume", "", "pv-1")] = {
        "metadata": {"name": "pv-1", "uid": "own"},
        "spec": {},
    }
    fx = FakeEffects()
    await rec.reconcile(KINDS["PersistentVolume"], ("", "pv-1"), view, fx)
    assert fx.writes == []


async def test_an_event_about_a_synced_pod_comes_up_and_a_repeat_updates_it() -> None:
    kind = KINDS["Event"]
    view = FakeView()
    key = synced_pair(view, "Pod")
    event = {
        "metadata": {"name": "web.1", "namespace": key[1]},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": key[1]},
        "reason": "Pulled",
        "message": f"pulled for {key[1]}/web",
        "count": 1,
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    view.super_objs[("Event", key[1], "web.1")] = event
    fx = FakeEffects()
    view.reads.clear()
    await rec.reconcile(kind, (key[1], "web.1"), view, fx)
    assert [(w.verb, w.namespace) for w in fx.writes] == [("create", "app")]
    assert fx.writes[0].body["message"] == "pulled for app/web"  # type: ignore[index]
    assert view.reads.count(("tenant", "Pod")) == 1  # locating the event only asks whether it is cached

    event["count"] = 2
    fx = FakeEffects(conflicts=True)
    await rec.reconcile(kind, (key[1], "web.1"), view, fx)
    assert [w.verb for w in fx.writes] == ["create", "patch"]
    assert fx.writes[1].body["count"] == 2  # type: ignore[index]


async def test_an_event_about_another_tenant_object_stays_in_the_super_cluster() -> None:
    view = FakeView()
    pod_kind = KINDS["Pod"]
    key, super_pod = super_copy(pod_kind, tenant_obj(pod_kind), root=OTHER)
    view.super_objs[key] = super_pod
    event = {"metadata": {"name": "e", "namespace": key[1]}, "involvedObject": {"kind": "Pod", "name": "web"}}
    view.super_objs[("Event", key[1], "e")] = event
    fx = FakeEffects()
    await rec.reconcile(KINDS["Event"], (key[1], "e"), view, fx)
    assert fx.writes == []


async def test_a_quota_not_in_force_holds_back_namespaced_creates() -> None:
    kind = KINDS["ConfigMap"]
    view = with_tenant(kind)
    view.quota_in_force = lambda super_ns: False  # type: ignore[method-assign]
    with pytest.raises(NotYet):
        await rec.reconcile(kind, ("app", "web"), view, FakeEffects())
