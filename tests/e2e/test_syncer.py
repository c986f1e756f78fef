"""Tenant pods run in the super cluster as Kata pods, status flows back, virtual nodes appear."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from collections import Counter

import aiohttp
import orjson
import pytest

from syncer.resources import pods
from tests.e2e.conftest import RACK_PREFIX, SyncerProc, TenantHandle
from tests.e2e.helpers import absent, event, eventually, pod, running, syncer_status
from tispace import naming, procs, tenants
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispacectl import bench

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
        },
    },
}


async def test_deployment_runs_in_the_super_cluster_and_is_mirrored(
    syncer: SyncerProc, vn_agent: procs.Component, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("sync-a")
    t.kubectl("apply", "-f", "-", stdin=json.dumps(DEPLOYMENT))
    sns = f"{t.root}-default"
    tenant_pods = await eventually(
        lambda: running(t.client, "default", 3, "app=web"), what="3 tenant pods Running"
    )
    super_pods = await eventually(lambda: running(super_client, sns, 3, "app=web"), what="3 super pods")
    assert {p["metadata"]["name"] for p in tenant_pods} == {p["metadata"]["name"] for p in super_pods}
    by_name = {p["metadata"]["name"]: p for p in super_pods}
    for tp in tenant_pods:
        sp = by_name[tp["metadata"]["name"]]
        assert sp["spec"]["runtimeClassName"] == "kata"
        assert sp["metadata"]["labels"][naming.MANAGED_BY] == "tispace"
        assert sp["metadata"]["annotations"][naming.ANN_UID] == tp["metadata"]["uid"]
        assert (
            json.loads(sp["metadata"]["annotations"][naming.ANN_OWNER_REFERENCES])[0]["kind"] == "ReplicaSet"
        )
        assert tp["status"]["podIP"] == sp["status"]["podIP"]
        assert tp["spec"]["nodeName"] == sp["spec"]["nodeName"]
        assert sp["spec"]["dnsPolicy"] == "None"
        assert sp["spec"]["dnsConfig"]["searches"][0] == "default.svc.cluster.local"

    nodes = t.kubectl("get", "nodes", "-o", "json")
    vnodes = {n["metadata"]["name"]: n for n in json.loads(nodes)["items"]}
    assert {tp["spec"]["nodeName"] for tp in tenant_pods} == set(vnodes)
    for n in vnodes.values():
        assert n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == vn_agent.port
        assert {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"] == "True"
        assert n["metadata"]["labels"]["topology.kubernetes.io/zone"] in ("zone-a", "zone-b")
    lease = await eventually(
        lambda: t.client.get_or_none(r.LEASES, next(iter(vnodes)), "kube-node-lease"), what="node lease"
    )
    assert lease["spec"]["renewTime"]

    async def scheduled_event() -> dict | None:
        items = (await t.client.list(r.EVENTS, "default"))["items"]
        return next(
            (e for e in items if e["reason"] == "Scheduled" and e["involvedObject"]["name"] in by_name), None
        )

    ev = await eventually(scheduled_event, what="super Scheduled event mirrored up")
    assert t.root not in ev["message"] and "default/" in ev["message"]

    t.kubectl("scale", "deployment", "web", "--replicas=1")
    await eventually(lambda: running(super_client, sns, 1, "app=web"), what="scaled down in super")
    t.kubectl("delete", "deployment", "web")
    await eventually(lambda: _gone(super_client, sns, "app=web"), what="super pods gone")
    await eventually(lambda: _gone(t.client, "default", "app=web"), what="tenant pods gone")

    async def no_virtual_nodes() -> bool:
        return not (await t.client.list(r.NODES))["items"]

    # A virtual node goes when the tenant has no pod left on it (after a grace period), and its Lease
    # with it: owned by the node, as a kubelet's, the tenant's garbage collector removes it.
    await eventually(no_virtual_nodes, timeout=120, what="virtual nodes removed")
    await eventually(lambda: _is(lambda: _lease_names(t.client), set()), what="their Leases removed")


async def _gone(client: Client, ns: str, label: str) -> bool:
    return not (await client.list(r.PODS, ns, label_selector=label))["items"]


async def test_forbidden_pods_are_refused_and_never_reach_the_super_cluster(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("sync-guard")
    cases = {
        "hostnet": ({"hostNetwork": True}, "HostNamespaceForbidden"),
        "hostpid": ({"hostPID": True}, "HostNamespaceForbidden"),
        "hostpath": ({"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}, "HostPathForbidden"),
        "hostport": (
            {
                "containers": [
                    {"name": "main", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 80}]}
                ]
            },
            "HostPortForbidden",
        ),
    }
    for name, (spec, _) in cases.items():
        await t.client.create(r.PODS, pod(name, **spec), "default")
    # A privileged pod is fine: it runs under Kata.
    await t.client.create(
        r.PODS,
        pod(
            "priv", containers=[{"name": "main", "image": "busybox", "securityContext": {"privileged": True}}]
        ),
        "default",
    )
    sp = await eventually(lambda: super_client.get_or_none(r.PODS, "priv", f"{t.root}-default"), what="priv")
    assert sp["spec"]["runtimeClassName"] == "kata"

    for name, (_, reason) in cases.items():

        async def refused(name: str = name, reason: str = reason) -> bool:
            p = await t.client.get(r.PODS, name, "default")
            return p["status"].get("phase") == "Failed" and p["status"].get("reason") == reason

        await eventually(refused, what=f"{name} refused")
        assert await super_client.get_or_none(r.PODS, name, f"{t.root}-default") is None

    async def events_posted() -> bool:  # the syncer patches the status first, then posts the event
        events = json.loads(t.kubectl("get", "events", "-n", "default", "-o", "json"))["items"]
        return {reason for _, reason in cases.values()} <= {e["reason"] for e in events}

    await eventually(events_posted, what="an event for each refusal")


async def test_same_names_in_two_tenants_coexist(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    a: TenantHandle = await tenant_factory("twin-a")
    b: TenantHandle = await tenant_factory("twin-b")
    for t in (a, b):
        t.kubectl("create", "namespace", "app")
        await eventually(lambda t=t: t.client.get_or_none(r.SERVICEACCOUNTS, "default", "app"), what="sa")
        await t.client.create(r.PODS, pod("same"), "app")
    for t in (a, b):
        sp = await eventually(lambda t=t: running(super_client, f"{t.root}-app", 1), what="running")
        assert sp[0]["metadata"]["annotations"][naming.ANN_CLUSTER] == t.root
    ns = await super_client.get(r.NAMESPACES, f"{a.root}-app")
    assert ns["metadata"]["labels"][naming.LABEL_TENANT_NAMESPACE] == "app"


async def test_config_secret_and_service_account_mirror_with_tenant_tokens(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("sync-data")
    sns = f"{t.root}-default"
    t.kubectl("create", "configmap", "cfg", "--from-literal=a=1")
    t.kubectl("create", "secret", "generic", "sec", "--from-literal=p=s3cret")
    t.kubectl("create", "serviceaccount", "robot")
    cm = await eventually(lambda: super_client.get_or_none(r.CONFIGMAPS, "cfg", sns), what="cm down")
    assert cm["data"] == {"a": "1"}
    sec = await eventually(lambda: super_client.get_or_none(r.SECRETS, "sec", sns), what="secret down")
    assert base64.b64decode(sec["data"]["p"]) == b"s3cret"
    sa = await eventually(lambda: super_client.get_or_none(r.SERVICEACCOUNTS, "robot", sns), what="sa down")
    assert sa["automountServiceAccountToken"] is False
    # The tenant's CA bundle lands beside the super cluster's own, never over it.
    tca = await eventually(
        lambda: super_client.get_or_none(r.CONFIGMAPS, "tenant-kube-root-ca.crt", sns), what="ca"
    )
    sca = await eventually(  # published by the super controller-manager, not the syncer
        lambda: super_client.get_or_none(r.CONFIGMAPS, "kube-root-ca.crt", sns), what="super ca"
    )
    assert tca["data"]["ca.crt"] != sca["data"]["ca.crt"]

    await t.client.patch(r.CONFIGMAPS, "cfg", {"data": {"a": "2"}}, "default")
    await eventually(lambda: _data_is(super_client, sns, {"a": "2"}), what="cm update mirrored")

    # A pod of the robot SA mounts a token signed with the tenant's key, carried on the super pod
    # itself: the syncer holds the key of a tenant TiSpace made and signs it without a TokenRequest.
    token_requests = await _token_requests(t.client)
    vault = {"path": "token", "audience": "vault", "expirationSeconds": 3600}
    await t.client.create(
        r.PODS,
        {
            **pod("withtoken"),
            "spec": {
                "serviceAccountName": "robot",
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "env": [
                            {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
                        ],
                    }
                ],
                "volumes": [  # a token for another audience, as Vault's Kubernetes auth asks for
                    {"name": "vault", "projected": {"sources": [{"serviceAccountToken": vault}]}}
                ],
            },
        },
        "default",
    )
    sp = await eventually(lambda: super_client.get_or_none(r.PODS, "withtoken", sns), what="pod down")
    env = {e["name"]: e for e in sp["spec"]["containers"][0]["env"]}
    assert (
        env["MY_NS"]["valueFrom"]["fieldRef"]["fieldPath"]
        == f"metadata.annotations['{naming.ANN_NAMESPACE}']"
    )
    assert sp["metadata"]["annotations"][naming.ANN_NAMESPACE] == "default"
    assert env["KUBERNETES_SERVICE_HOST"]["value"] == "127.0.0.1"
    # The tenant's kube-api-access volume reads the token from the annotation (a downward API
    # item the super API server accepted beside the namespace one); no token Secret is made.
    [api] = [v for v in sp["spec"]["volumes"] if v["name"].startswith("kube-api-access")]
    items = [
        i for src in api["projected"]["sources"] for i in (src.get("downwardAPI") or {}).get("items", [])
    ]
    assert {
        "path": "token",
        "fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{pods.ANN_TOKEN}']"},
    } in items
    assert await super_client.get_or_none(r.SECRETS, pods.token_secret_name("withtoken"), sns) is None
    jwt = sp["metadata"]["annotations"][pods.ANN_TOKEN]
    claims = orjson.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["kubernetes.io"]["pod"]["name"] == "withtoken"
    assert "vault" not in claims["aud"]
    vault_jwt = sp["metadata"]["annotations"][pods.token_key("vault")]
    vault_claims = orjson.loads(base64.urlsafe_b64decode(vault_jwt.split(".")[1] + "=="))
    assert vault_claims["aud"] == ["vault"] and vault_claims["sub"] == claims["sub"]
    # Each as long-lived as its source asks: an hour for Vault's; a day for kube-api-access's 3607 s
    # (which the API server would stretch to a year).
    assert vault_claims["exp"] - vault_claims["iat"] == 3600
    assert claims["exp"] - claims["iat"] == pods.TOKEN_SECONDS
    [vault_volume] = [v for v in sp["spec"]["volumes"] if v["name"] == "vault"]
    [vault_item] = vault_volume["projected"]["sources"][0]["downwardAPI"]["items"]
    assert vault_item["fieldRef"]["fieldPath"] == f"metadata.annotations['{pods.token_key('vault')}']"
    # The tenant API server takes both as its own, bound to the pod.
    tenant_pod = await t.client.get(r.PODS, "withtoken", "default")
    for token, audiences in ((jwt, []), (vault_jwt, ["vault"])):
        user = await _reviewed(t.client, token, audiences)
        assert user is not None and user["username"] == "system:serviceaccount:default:robot"
        assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [tenant_pod["metadata"]["uid"]]

    # Tokens live a day: at 80% of its life the patrol has a new one signed. Bring it due once the
    # pod is bound: a bound pod's token names its node, as the API server's TokenRequest adds it.
    async def bound() -> dict | None:
        now = await t.client.get(r.PODS, "withtoken", "default")
        return now if now["spec"].get("nodeName") else None

    node_name = (await eventually(bound, what="the tenant pod bound"))["spec"]["nodeName"]
    refresh = sp["metadata"]["annotations"][pods.ANN_TOKEN_REFRESH]
    assert datetime.datetime.fromisoformat(refresh) > datetime.datetime.now(datetime.UTC)
    due = {"metadata": {"annotations": {pods.ANN_TOKEN_REFRESH: "2020-01-01T00:00:00Z"}}}
    await super_client.patch(r.PODS, "withtoken", due, sns)

    async def renewed() -> dict | None:
        now = await super_client.get(r.PODS, "withtoken", sns)
        return now if now["metadata"]["annotations"][pods.ANN_TOKEN] != jwt else None

    async def patrolled() -> bool:
        """A patrol finds the token due once the syncer's informer shows the patch (unless its own
        periodic patrol came first and renewed it)."""
        async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{syncer.port}/patrol") as resp:
            queued = (await resp.json())["queued"]
        return queued >= 1 or await renewed() is not None

    await eventually(patrolled, what="the patrol finding the token due")
    fresh = await eventually(renewed, what="a new token")
    again = datetime.datetime.fromisoformat(fresh["metadata"]["annotations"][pods.ANN_TOKEN_REFRESH])
    assert again > datetime.datetime.now(datetime.UTC)  # due again at 80% of the new token's life
    assert fresh["metadata"]["annotations"][pods.token_key("vault")] != vault_jwt  # every audience's
    claims = orjson.loads(
        base64.urlsafe_b64decode(fresh["metadata"]["annotations"][pods.ANN_TOKEN].split(".")[1] + "==")
    )
    assert claims["kubernetes.io"]["pod"]["uid"] == tenant_pod["metadata"]["uid"]
    assert await _token_requests(t.client) == token_requests  # signed and renewed by the syncer

    # Deleting the pod invalidates its tokens, as for tokens its tenant signs (once the API
    # server's cache of reviewed tokens lets go of it).
    fresh_jwt = fresh["metadata"]["annotations"][pods.ANN_TOKEN]
    user = await _reviewed(t.client, fresh_jwt, [])
    assert user is not None and user["extra"]["authentication.kubernetes.io/node-name"] == [node_name]
    node_uid = (await t.client.get(r.NODES, node_name))["metadata"]["uid"]
    assert user["extra"]["authentication.kubernetes.io/node-uid"] == [node_uid]
    await t.client.delete(r.PODS, "withtoken", "default")
    await eventually(lambda: absent(t.client, r.PODS, "withtoken", "default"), what="tenant pod gone")

    async def refused() -> bool:
        return await _reviewed(t.client, fresh_jwt, []) is None

    await eventually(refused, what="the deleted pod's token refused")

    t.kubectl("delete", "configmap", "cfg")
    await eventually(lambda: absent(super_client, r.CONFIGMAPS, "cfg", sns), what="cm delete mirrored")


async def test_a_tenant_whose_webhook_acts_on_token_requests_signs_its_pods_tokens(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """A TokenRequest passes the tenant's admission, as upstream's does: while a webhook acts on them,
    the tenant API server signs its pods' tokens; once it is gone, the syncer signs them again."""
    t: TenantHandle = await tenant_factory("sync-tokenhook")
    sns = f"{t.root}-default"
    key = f"{t.namespace}/{t.name}"

    async def signs(want: bool) -> bool:
        served = (await syncer_status(syncer.port))["tenants"].get(key) or {}
        return served.get("signs_tokens") is want

    async def token_of(name: str) -> str | None:
        sp = await super_client.get_or_none(r.PODS, name, sns)
        return ((sp or {}).get("metadata", {}).get("annotations") or {}).get(pods.ANN_TOKEN)

    await eventually(lambda: signs(True), what="the syncer signing the tenant's pod tokens")
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["*/token"]}
    hook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "token-audit"},
        "webhooks": [
            {  # nothing serves it: ignored after a second, which is all a pod's TokenRequest pays here
                "name": "token-audit.example.com",
                "clientConfig": {"url": "https://127.0.0.1:9/audit"},
                "rules": [rule],
                "failurePolicy": "Ignore",
                "timeoutSeconds": 1,
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }
        ],
    }
    await t.client.create(r.VALIDATINGWEBHOOKS, hook)
    await eventually(lambda: signs(False), what="the tenant signing while its webhook acts on TokenRequests")
    before = await _token_requests(t.client)
    await t.client.create(r.PODS, pod("hooked"), "default")
    await eventually(lambda: token_of("hooked"), what="the hooked pod's token")
    assert await _token_requests(t.client) == before + 1  # through the tenant's admission

    await t.client.delete(r.VALIDATINGWEBHOOKS, "token-audit")
    await eventually(lambda: signs(True), what="the syncer signing again")
    await t.client.create(r.PODS, pod("unhooked"), "default")
    await eventually(lambda: token_of("unhooked"), what="the unhooked pod's token")
    assert await _token_requests(t.client) == before + 1


async def _token_requests(tenant: Client) -> int:
    return bench.request_counts(await tenant.get_text("/metrics"))["POST serviceaccounts/token"]


async def _reviewed(tenant: Client, token: str, audiences: list[str]) -> dict | None:
    """The user a TokenReview in the tenant finds for the token, or None when it is refused."""
    spec = {"token": token, "audiences": audiences}
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
    status = (await tenant.create(r.TOKENREVIEWS, review))["status"]
    return status["user"] if status.get("authenticated") else None


async def _data_is(client: Client, ns: str, data: dict) -> bool:
    return (await client.get(r.CONFIGMAPS, "cfg", ns)).get("data") == data


async def test_a_pod_lost_in_the_super_cluster_is_deleted_so_its_owner_replaces_it(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """As a real cluster deletes the pods of a lost node: owners that never replace a Failed pod
    (tidb-operator v2 makes bare pods) see it gone and make a new one."""
    t: TenantHandle = await tenant_factory("sync-evict")
    t.kubectl("create", "deployment", "one", "--image=nginx")
    sns = f"{t.root}-default"
    await eventually(lambda: running(t.client, "default", 1, "app=one"), what="tenant pod Running")
    [first] = await eventually(lambda: running(super_client, sns, 1, "app=one"), what="super pod")
    name = first["metadata"]["name"]
    await super_client.delete(r.PODS, name, sns, grace_period=0)
    await eventually(lambda: absent(t.client, r.PODS, name, "default"), what="lost tenant pod deleted")

    await eventually(
        lambda: event(t.client, "default", "Evicted", name), what="Evicted event on the lost pod"
    )

    async def replaced() -> bool:
        pods = (await t.client.list(r.PODS, "default", label_selector="app=one"))["items"]
        return any(
            p["metadata"]["name"] != first["metadata"]["name"] and p["status"].get("phase") == "Running"
            for p in pods
        )

    await eventually(replaced, what="ReplicaSet replaced the pod")


async def test_objects_without_tispace_marks_are_never_touched(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("sync-foreign")
    sns = f"{t.root}-default"
    await eventually(lambda: super_client.get_or_none(r.NAMESPACES, sns), what="super ns")
    foreign = {"metadata": {"name": "mine", "labels": {"owner": "admin"}}, "data": {"keep": "me"}}
    await super_client.create(r.CONFIGMAPS, foreign, sns)
    t.kubectl("create", "configmap", "mine", "--from-literal=tenant=value")
    # The tenant object is not mirrored over the foreign one; the foreign one survives a tenant delete.
    t.kubectl("delete", "configmap", "mine")
    t.kubectl("create", "configmap", "probe", "--from-literal=x=1")
    await eventually(
        lambda: super_client.get_or_none(r.CONFIGMAPS, "probe", sns), what="later changes synced"
    )
    kept = await super_client.get(r.CONFIGMAPS, "mine", sns)
    assert kept["data"] == {"keep": "me"} and naming.MANAGED_BY not in kept["metadata"].get("labels", {})


async def test_patrol_and_metrics_endpoints(syncer: SyncerProc, tenant_factory) -> None:
    await tenant_factory("sync-patrol")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{syncer.port}/patrol") as resp:
            result = await resp.json()
        assert resp.status == 200 and result["queued"] >= 0
        assert result["seconds"] >= 0 and result["cpu_seconds"] >= 0
        async with s.get(f"http://127.0.0.1:{syncer.port}/metrics") as resp:
            text = await resp.text()
        assert "tispace_syncer_patrol_seconds" in text and "tispace_syncer_sync_seconds_bucket" in text

        async def serving() -> bool:  # the syncer starts on a tenant when its own watch sees it Running
            async with s.get(f"http://127.0.0.1:{syncer.port}/status") as resp:
                return "default/sync-patrol" in (await resp.json())["tenants"]

        await eventually(serving, what="the syncer serving the tenant")


async def test_a_tenants_limits_are_each_super_namespaces_quota_and_follow_the_virtualcluster(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    hard = {"pods": "2", "requests.storage": "5Gi"}
    t: TenantHandle = await tenant_factory("sync-limits", resourceQuota={"hard": hard})
    t.kubectl("create", "namespace", "team")
    for i in range(3):  # at once: held back until the new super namespace's quota is in force
        await t.client.create(r.PODS, pod(f"p{i}"), "team")
    sns = f"{t.root}-team"

    async def quota(expect: dict | None) -> bool:
        """The quota as expected, and counted: admission ignores a quota whose status.hard is still empty."""
        q = await super_client.get_or_none(r.RESOURCEQUOTAS, "tenant-quota", sns)
        if not expect:
            return q is None
        return (
            q is not None
            and q["spec"].get("hard") == expect
            and (q.get("status") or {}).get("hard") == expect
        )

    await eventually(lambda: quota(hard), what="the tenant's quota on its new super namespace")
    p2 = await eventually(lambda: _rejected_pod(t, "team"), what="the third refused by the quota")
    assert "exceeded quota: tenant-quota" in p2
    await eventually(lambda: running(super_client, sns, 2), what="two pods admitted, not three")
    await super_client.delete(r.RESOURCEQUOTAS, "tenant-quota", sns)  # drift: repaired
    await eventually(lambda: quota(hard), what="the quota made again after a delete by hand")

    vc = f"/apis/tenancy.x-k8s.io/v1alpha1/namespaces/default/virtualclusters/{t.name}"
    with pytest.raises(ApiError) as bad:  # not a quantity: refused when written, not by quota admission
        await super_client.request(
            "PATCH",
            vc,
            body={"spec": {"resourceQuota": {"hard": {"pods": "lots"}}}},
            content_type="application/merge-patch+json",
        )
    assert bad.value.status == 422 and "lots" in bad.value.message
    await super_client.request(
        "PATCH",
        vc,
        body={"spec": {"resourceQuota": {"hard": {"pods": "3"}}}},
        content_type="application/merge-patch+json",
    )
    await eventually(lambda: quota({**hard, "pods": "3"}), what="raised limits applied")  # a merge patch
    await eventually(lambda: running(super_client, sns, 3), timeout=120, what="the third pod admitted later")
    await super_client.request(
        "PATCH", vc, body={"spec": {"resourceQuota": None}}, content_type="application/merge-patch+json"
    )
    await eventually(lambda: quota(None), what="the quota gone with the limits")


async def _rejected_pod(t: TenantHandle, ns: str) -> str | None:
    for p in (await t.client.list(r.PODS, ns))["items"]:
        for c in (p.get("status") or {}).get("conditions") or []:
            if c["type"] == pods.SYNCED and c["status"] == "False":
                return str(c.get("message"))
    return None


async def test_super_rejections_reach_the_tenant_and_grace_periods_are_carried(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("sync-quota")
    t.kubectl("create", "namespace", "tight")
    sns = f"{t.root}-tight"
    await eventually(lambda: super_client.get_or_none(r.NAMESPACES, sns), what="super namespace")
    quota = {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "1"}}}
    await super_client.create(r.RESOURCEQUOTAS, quota, sns)

    async def quota_counted() -> bool:
        q = await super_client.get(r.RESOURCEQUOTAS, "pods", sns)
        return (q.get("status") or {}).get("hard", {}).get("pods") == "1"

    await eventually(quota_counted, what="quota active")
    await t.client.create(r.PODS, pod("first", terminationGracePeriodSeconds=30), "tight")
    await eventually(lambda: running(super_client, sns, 1), what="first pod admitted")
    await t.client.create(r.PODS, pod("second"), "tight")

    async def rejected() -> dict | None:
        p = await t.client.get(r.PODS, "second", "tight")
        conds = {c["type"]: c for c in p["status"].get("conditions") or []}
        return conds.get(pods.SYNCED)

    cond = await eventually(rejected, what="Synced=False condition on the refused pod")
    assert (
        cond["status"] == "False" and cond["reason"] == "SyncRejected" and "exceeded quota" in cond["message"]
    )
    events = (await t.client.list(r.EVENTS, "tight"))["items"]
    ev = next(e for e in events if e["involvedObject"]["name"] == "second" and e["reason"] == "SyncRejected")
    assert ev["type"] == "Warning" and "exceeded quota" in ev["message"]
    assert (await t.client.get(r.PODS, "second", "tight"))["status"].get("phase") == "Pending"

    # The queue went on, and once the quota allows it the pod goes down after all.
    await super_client.delete(r.RESOURCEQUOTAS, "pods", sns)
    await eventually(lambda: running(t.client, "tight", 2), timeout=120, what="second pod admitted later")

    # A tenant delete with a grace period: the super pod gets the same one (seen on a watch,
    # since KWOK removes a terminating pod at once).
    listed = await super_client.list(r.PODS, sns)

    async def super_grace() -> int:
        async for ev in super_client.watch(
            r.PODS, sns, resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=60
        ):
            meta = ev["object"]["metadata"]
            if meta.get("name") == "first" and meta.get("deletionTimestamp"):
                return int(meta["deletionGracePeriodSeconds"])
        raise AssertionError("super pod never terminating")

    watcher = asyncio.create_task(super_grace())
    await asyncio.sleep(0.5)
    await t.client.delete(r.PODS, "first", "tight", grace_period=17)
    assert await asyncio.wait_for(watcher, 60) == 17


async def test_deleting_a_tenant_removes_every_super_namespace_it_had(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("sync-gone")
    t.kubectl("create", "namespace", "extra")
    await t.client.create(r.PODS, pod("left"), "extra")
    await eventually(lambda: running(super_client, f"{t.root}-extra", 1), what="pod in the super cluster")
    await super_client.delete(r.VIRTUALCLUSTERS, "sync-gone", "default")
    await tenants.wait_gone(super_client, "sync-gone", "default")
    left = await super_client.list(r.NAMESPACES, label_selector=f"{naming.LABEL_TENANT}={t.root}")
    assert left["items"] == []
    assert await super_client.get_or_none(r.NAMESPACES, t.root) is None


async def test_a_super_namespace_of_another_tenant_is_never_written_into(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    t: TenantHandle = await tenant_factory("sync-foreign")
    sns = f"{t.root}-taken"
    other = {
        "metadata": {
            "name": sns,
            "labels": {naming.MANAGED_BY: "tispace", naming.LABEL_TENANT: "default-000000-other"},
            "annotations": {
                naming.ANN_CLUSTER: "default-000000-other",
                naming.ANN_UID: "other-uid",
                naming.ANN_NAME: "x",
            },
        }
    }
    await super_client.create(r.NAMESPACES, other)
    t.kubectl("create", "namespace", "taken")
    t.kubectl("create", "configmap", "cfg", "-n", "taken", "--from-literal=a=b")

    async def warned() -> dict | None:
        items = (await t.client.list(r.EVENTS, "taken"))["items"]
        return next((e for e in items if e["reason"] == "NamespaceTaken"), None)

    ev = await eventually(warned, what="NamespaceTaken event")
    assert sns in ev["message"]
    assert await super_client.get_or_none(r.CONFIGMAPS, "cfg", sns) is None
    ns = await super_client.get(r.NAMESPACES, sns)
    assert ns["metadata"]["labels"][naming.LABEL_TENANT] == "default-000000-other"
    await super_client.delete(r.NAMESPACES, sns)


async def test_admin_chosen_node_labels_reach_virtual_nodes_and_follow_changes(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """Location labels an admin picks (tidb-operator spreads by them) are on the virtual nodes."""
    t: TenantHandle = await tenant_factory("racks")
    key = f"{RACK_PREFIX}rack"
    await super_client.patch(r.NODES, "node-3", {"metadata": {"labels": {key: "r1"}}})
    try:
        await t.client.create(r.PODS, pod("racked", nodeName="node-3"), "default")

        async def rack() -> str | None:
            node = await t.client.get_or_none(r.NODES, "node-3")
            return ((node or {}).get("metadata", {}).get("labels") or {}).get(key)

        assert await eventually(rack, what="rack label on the virtual node") == "r1"
        await super_client.patch(r.NODES, "node-3", {"metadata": {"labels": {key: "r2"}}})
        assert await eventually(lambda: _is(rack, "r2"), what="relabelled")
    finally:
        await super_client.patch(r.NODES, "node-3", {"metadata": {"labels": {key: None}}})


async def _is(check, value: object) -> bool:
    return await check() == value


ZONE = "topology.kubernetes.io/zone"


async def _node_names(client: Client) -> set[str]:
    return {n["metadata"]["name"] for n in (await client.list(r.NODES))["items"]}


async def _lease_names(client: Client) -> set[str]:
    return {n["metadata"]["name"] for n in (await client.list(r.LEASES, "kube-node-lease"))["items"]}


async def test_tenants_see_the_super_nodes_they_select_from_the_start(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """spec.nodes: tools that look at nodes first (conformance, charts reading zones) find them."""
    supers = (await super_client.list(r.NODES))["items"]
    zone_a = {n["metadata"]["name"] for n in supers if n["metadata"]["labels"].get(ZONE) == "zone-a"}
    assert zone_a and zone_a != {n["metadata"]["name"] for n in supers}
    selector = {"matchLabels": {ZONE: "zone-a"}}
    some: TenantHandle = await tenant_factory("nodes-zone", nodes={"mode": "selector", "selector": selector})
    every: TenantHandle = await tenant_factory("nodes-all", nodes={"mode": "selector"})
    await eventually(lambda: _is(lambda: _node_names(some.client), zone_a), what="zone-a nodes, no pod yet")
    everything = await _node_names(super_client)
    await eventually(lambda: _is(lambda: _node_names(every.client), everything), what="every node")

    node = sorted(zone_a)[0]
    vnode = await some.client.get(r.NODES, node)
    assert vnode["metadata"]["labels"][ZONE] == "zone-a" and not vnode["spec"].get("unschedulable")
    assert {c["type"]: c["status"] for c in vnode["status"]["conditions"]}["Ready"] == "True"
    assert vnode["status"]["capacity"]["cpu"]
    await eventually(lambda: some.client.get_or_none(r.LEASES, node, "kube-node-lease"), what="node lease")
    # A node deleted in the tenant is made again (it is the super cluster's, not the tenant's).
    some.kubectl("delete", "node", node)
    await eventually(lambda: some.client.get_or_none(r.NODES, node), what="deleted node back")
    # Back to nodes on demand: the nodes without the tenant's pods go after the idle grace.
    await super_client.patch(
        r.VIRTUALCLUSTERS, "nodes-zone", {"spec": {"nodes": {"mode": "onDemand"}}}, "default"
    )
    await eventually(lambda: _is(lambda: _node_names(some.client), set()), what="idle nodes removed")
    await eventually(lambda: _is(lambda: _lease_names(some.client), set()), what="their Leases removed")


async def test_a_pod_costs_the_super_cluster_its_create_and_no_patch(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """Counted on both API servers (apiserver_request_total), as the bench reports them: on the way
    to Running a tenant pod costs the super cluster its create (its token rides on it: no Secret),
    never a pod patch (zone and region labels are each API server's own), and its tenant one
    binding and at most two status writes: no TokenRequest, the syncer signs with the tenant's key."""
    t: TenantHandle = await tenant_factory("sync-cost")
    first = pod("warm")  # the namespace and a virtual node exist before counting
    await t.client.create(r.PODS, first, "default")
    await eventually(lambda: running(t.client, "default", 1, "app=warm"), what="the first pod Running")
    n = 8

    async def counts() -> tuple[Counter[str], Counter[str]]:
        return (
            bench.request_counts(await super_client.get_text("/metrics")),
            bench.request_counts(await t.client.get_text("/metrics")),
        )

    async def settled() -> bool:
        st = await asyncio.to_thread(bench.syncer_call, syncer.port, "/status")
        return st.get("queue") == 0 and bool(await running(t.client, "default", n, "app=cost"))

    super_before, tenant_before = await counts()
    for i in range(n):
        body = {**pod(f"cost-{i}"), "metadata": {"name": f"cost-{i}", "labels": {"app": "cost"}}}
        await t.client.create(r.PODS, body, "default")
    await eventually(settled, what=f"{n} pods Running and the syncer idle")
    super_after, tenant_after = await counts()
    up, down = tenant_after - tenant_before, super_after - super_before
    assert down["POST pods"] == n and down["POST secrets"] == 0
    assert down["PATCH pods"] <= 1  # another test's leftover may still settle; two per pod before
    assert up["POST pods/binding"] == n and up["POST serviceaccounts/token"] == 0
    assert up["PATCH pods/status"] <= 2 * n  # scheduled, then running: as a kubelet writes them


async def test_a_new_virtual_node_costs_the_tenant_its_create_and_its_lease(
    syncer: SyncerProc, tenant_factory
) -> None:
    """As a kubelet registers: the node, then its Lease, both before the first pod there is bound; and
    no not-ready taint for the tenant's node controller to take off again (a GET and a PATCH per node)."""
    t: TenantHandle = await tenant_factory("sync-vnode")
    before = bench.request_counts(await t.client.get_text("/metrics"))
    await t.client.create(r.PODS, pod("first"), "default")
    [made] = await eventually(lambda: running(t.client, "default", 1, "app=first"), what="the pod Running")
    node = made["spec"]["nodeName"]
    lease = await t.client.get(r.LEASES, node, "kube-node-lease")
    # the tenant's node controller has seen the node (it would have untainted it by now)
    await eventually(lambda: event(t.client, "default", "RegisteredNode", node), what="RegisteredNode")
    spent = bench.request_counts(await t.client.get_text("/metrics")) - before
    assert not (await t.client.get(r.NODES, node))["spec"].get("taints")
    assert spent["POST nodes"] == 1 and spent["POST leases"] == 1
    # Untainting is a GET and a PATCH. One GET may be the garbage collector's, which looks a Lease's
    # owner up when the Lease reaches it before the node does, as with a kubelet's Lease (seen once,
    # on a machine running a Go build beside the suite).
    assert spent["PATCH nodes"] == 0 and spent["GET nodes"] <= 1
    [owner] = lease["metadata"]["ownerReferences"]  # the garbage collector removes it with the node
    assert (owner["kind"], owner["uid"]) == ("Node", (await t.client.get(r.NODES, node))["metadata"]["uid"])


async def test_a_pod_spec_update_reaches_the_super_pod_and_its_generation_comes_back_observed(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """What a running pod's spec may change upstream (activeDeadlineSeconds, added tolerations,
    images) reaches its super pod, and the tenant pod reports status.observedGeneration as a 1.34+
    kubelet does (upstream conformance: "Pods Generation", 500 updates)."""
    t: TenantHandle = await tenant_factory("sync-generation")
    await t.client.create(r.PODS, pod("gen", activeDeadlineSeconds=5000), "default")
    [made] = await eventually(lambda: running(t.client, "default", 1, "app=gen"), what="pod Running")
    assert made["status"]["observedGeneration"] == made["metadata"]["generation"] == 1
    sns = f"{t.root}-default"
    for seconds in range(4999, 4989, -1):  # ten updates, as fast as the API server takes them
        await t.client.patch(r.PODS, "gen", {"spec": {"activeDeadlineSeconds": seconds}}, "default")
    extra = {"key": "example.com/maintenance", "operator": "Exists", "effect": "NoSchedule"}
    await t.client.patch(
        r.PODS, "gen", {"spec": {"tolerations": [*made["spec"]["tolerations"], extra]}}, "default"
    )
    generation = (await t.client.get(r.PODS, "gen", "default"))["metadata"]["generation"]
    assert generation == 12

    async def observed() -> bool:
        p = await t.client.get(r.PODS, "gen", "default")
        return p["status"].get("observedGeneration") == generation

    await eventually(observed, what=f"observedGeneration {generation}")
    spec = (await super_client.get(r.PODS, "gen", sns))["spec"]
    assert spec["activeDeadlineSeconds"] == 4990 and extra in spec["tolerations"]
