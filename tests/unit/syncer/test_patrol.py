"""The patroller finds missing, changed and orphaned super objects, and keys due by the clock, from the
caches alone."""

import dataclasses
import datetime
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest

from syncer.engine import patrol
from syncer.engine.informer import Informer
from syncer.engine.tenant import TenantRuntime
from syncer.kinds import DOWN_KINDS, KINDS
from syncer.resources import pods
from syncer.resources.context import TenantContext
from tispace import kubeconfig, naming
from tispace.kube.client import Client
from tispace.naming import RootNamespace

CTX = TenantContext(root=RootNamespace("t-abcdef-dev"), vc_name="dev", vc_namespace="t")
NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


def cm(name: str, data: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "app", "uid": name},
        "data": data,
    }


Caches = tuple[TenantRuntime, dict[str, Informer]]


@pytest.fixture
async def caches() -> AsyncIterator[Caches]:
    """One tenant's caches and the super caches, listed (never connected: filled by hand)."""
    client = Client(kubeconfig.Credentials(server="http://127.0.0.1:1", ca_pem=b""))
    t = TenantRuntime("t/dev", CTX, client, 1, lambda *_: None, KINDS.values())
    supers = {k: Informer(client, KINDS[k].resource, lambda *_: None) for k in KINDS}
    for inf in [*t.informers.values(), *supers.values()]:
        inf.synced.set()
    yield t, supers
    await client.close()


async def test_drift_kinds_are_found_and_queued(caches: Caches) -> None:
    t, supers = caches
    tcm = t.informers["ConfigMap"].cache
    scm = supers["ConfigMap"].cache
    tcm[("app", "same")] = cm("same", {"a": "1"})
    scm[("t-abcdef-dev-app", "same")] = KINDS["ConfigMap"].to_super(cm("same", {"a": "1"}), CTX)
    tcm[("app", "missing")] = cm("missing", {})
    tcm[("app", "changed")] = cm("changed", {"a": "new"})
    scm[("t-abcdef-dev-app", "changed")] = KINDS["ConfigMap"].to_super(cm("changed", {"a": "old"}), CTX)
    scm[("t-abcdef-dev-app", "orphan")] = KINDS["ConfigMap"].to_super(cm("orphan", {}), CTX)
    foreign = {"metadata": {"name": "foreign", "namespace": "t-abcdef-dev-app", "labels": {"x": "y"}}}
    scm[("t-abcdef-dev-app", "foreign")] = foreign

    keys, counts = patrol.drift(DOWN_KINDS, t, supers, patrol.owned(DOWN_KINDS, supers, NOW)[0])
    assert sorted(keys) == [
        ("ConfigMap", "app", "changed"),
        ("ConfigMap", "app", "missing"),
        ("ConfigMap", "app", "orphan"),
    ]
    assert counts == {"missing": 1, "changed": 1, "orphan": 1}

    queued: list = []
    recorded: list = []
    assert (
        patrol.patrol(
            DOWN_KINDS, [t], supers, lambda n, k: queued.append((n, k)), lambda *a: recorded.append(a)
        )
        == 3
    )
    assert {n for n, _ in queued} == {"t/dev"} and len(recorded) == 3

    # Pairs found in sync are remembered by their cached JSON and skipped next time;
    # any change on either side is looked at again.
    def changed(cache: MutableMapping, key: tuple[str, str], **fields: Any) -> None:
        """As a watch event does: the cached object replaced by its new version."""
        obj = cache[key]
        obj["metadata"]["resourceVersion"] = fields.pop("rv", obj["metadata"].get("resourceVersion"))
        cache[key] = obj | fields

    owned, _ = patrol.owned(DOWN_KINDS, supers, NOW)
    changed(tcm, ("app", "same"), rv="5")
    changed(scm, ("t-abcdef-dev-app", "same"), rv="9")
    first: patrol.Verified = {}
    patrol.drift(DOWN_KINDS, t, supers, owned, {}, first)
    assert list(first) == [("t/dev", "ConfigMap", "app", "same")]

    # Unchanged on both sides: not translated again (here a translation would fail).
    def untranslatable(obj: dict, ctx: TenantContext) -> dict:
        raise AssertionError(f"{obj['metadata']['name']} translated again")

    del tcm[("app", "changed")]
    strict = [dataclasses.replace(KINDS["ConfigMap"], to_super=untranslatable)]
    second: patrol.Verified = {}
    keys, _ = patrol.drift(strict, t, supers, owned, first, second)
    assert ("ConfigMap", "app", "same") not in keys and second == first
    changed(scm, ("t-abcdef-dev-app", "same"), data={"a": "tampered"})  # same rv: looked at all the same
    keys, _ = patrol.drift(DOWN_KINDS, t, supers, owned, second, {})
    assert ("ConfigMap", "app", "same") in keys

    # Nothing happens while any cache is still listing.
    supers["Pod"].synced.clear()
    assert patrol.patrol(DOWN_KINDS, [t], supers, lambda *_: None, lambda *_: None) == 0
    assert naming.tenant_key(foreign) is None


async def test_pods_whose_token_is_due_are_queued_in_sync_or_not(caches: Caches) -> None:
    """The patrol reads every super pod's owner anyway: the same read finds tokens due for renewal
    (a pod in sync is otherwise never reconciled again)."""
    t, supers = caches
    token = {"serviceAccountToken": {"path": "token"}}
    for name, refresh in [
        ("due", "2026-12-06T11:59:00Z"),
        ("fresh", "2026-12-07T07:00:00Z"),
        ("plain", None),
    ]:
        volumes = [{"name": "api", "projected": {"sources": [token]}}] if refresh else []
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "app", "uid": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "volumes": volumes},
        }
        t.informers["Pod"].cache[("app", name)] = pod
        sobj = KINDS["Pod"].to_super(pod, CTX)
        if refresh:
            sobj["metadata"]["annotations"] |= {pods.ANN_TOKEN: "-", pods.ANN_TOKEN_REFRESH: refresh}
        supers["Pod"].cache[("t-abcdef-dev-app", name)] = sobj

    other = dataclasses.replace(CTX, root=RootNamespace("t-123456-other"), vc_name="other")
    mounted = {
        **pod,
        "spec": {**pod["spec"], "volumes": [{"name": "api", "projected": {"sources": [token]}}]},
    }
    theirs = KINDS["Pod"].to_super(mounted, other)  # another tenant's, due too: never queued for this one
    theirs["metadata"]["annotations"] |= {
        pods.ANN_TOKEN: "-",
        pods.ANN_TOKEN_REFRESH: "2026-12-06T11:00:00Z",
    }
    supers["Pod"].cache[("t-123456-other-app", "plain")] = theirs

    _, due = patrol.owned(DOWN_KINDS, supers, NOW)
    assert due == {CTX.root: [("Pod", "app", "due")], other.root: [("Pod", "app", "plain")]}
    keys, counts = patrol.drift(DOWN_KINDS, t, supers, patrol.owned(DOWN_KINDS, supers, NOW)[0])
    assert keys == [] and not counts  # in sync: only the clock brings "due" back
    queued: list = []
    patrol.patrol(DOWN_KINDS, [t], supers, lambda n, k: queued.append((n, k)), lambda *_: None, now=NOW)
    assert [k for n, k in queued if k[0] == "Pod"] == [("Pod", "app", "due")]  # once, for this tenant
    assert not [k for _, k in queued if k[2] in ("fresh", "plain")]
