"""Pod rules: what a tenant pod becomes in the super cluster, and what comes back up. Pure."""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

from syncer.resources import simple, volumes
from syncer.resources.context import (
    POD_OWNED,
    Refused,
    TenantContext,
    api_time,
    copied,
    meta_patch,
    super_meta,
)
from tispace import naming

DEFAULT_SCHEDULER = "default-scheduler"
ANN_SCHEDULER = f"{naming.GROUP}/schedulerName"
ANN_TOKEN = f"{naming.GROUP}/token"
"""On a super pod: the token its tenant signed for it, mounted by a downward API item (as vcluster
does): the token costs the super cluster no Secret, no watch event and no garbage collection. A
token for another audience is under its own key (token_key)."""
ANN_TOKEN_REFRESH = f"{naming.GROUP}/token-refresh"
"""On a super pod: when the syncer asks the tenant for a new token."""
ANN_GENERATION = f"{naming.GROUP}/generation"
"""On a super pod: the tenant pod's metadata.generation its spec carries (status.observedGeneration up)."""
TOKEN_KEY = "token"
_TOKEN_KEY = rf"{re.escape(ANN_TOKEN)}(?:\.[0-9a-f]+)?"  # token_key's: the default, or an audience's
_TOKEN_KEY_RE = re.compile(_TOKEN_KEY)
_TOKEN_FIELD = re.compile(rf"metadata\.annotations\['({_TOKEN_KEY})'\]")
_META_OWNED = (*POD_OWNED, ANN_TOKEN)
"""The token annotations (ANN_TOKEN is a prefix of ANN_TOKEN_REFRESH) are the syncer's on the super
pod alone: not in the desired pod, never removed by a patch."""
# Fields the tenant API server fills for its own cluster that must not reach the super one. The
# overhead is its RuntimeClass admission's, for the tenant's class: the super one sets it for the
# class the super pod runs with, and refuses a pod with an overhead it did not compute.
_DROP_SPEC = ("priority", "priorityClassName", "preemptionPolicy", "nodeName", "serviceAccount", "overhead")
# Downward API fields whose super value would leak the super cluster: read the tenant's from our marks.
_DOWNWARD = {
    "metadata.namespace": f"metadata.annotations['{naming.ANN_NAMESPACE}']",
    "metadata.uid": f"metadata.annotations['{naming.ANN_UID}']",
}
# Volume sources a tenant pod may use. The others (nfs, iscsi, rbd, inline csi, flexVolume, ...) are
# mounted by the super node's host, outside the tenant's VM, with whatever the tenant wrote in them.
ALLOWED_VOLUMES = frozenset(
    {
        "emptyDir",
        "configMap",
        "secret",
        "projected",
        "downwardAPI",
        "persistentVolumeClaim",
        "ephemeral",
        "image",
    }
)
_STATUS_UP = (
    "phase",
    "conditions",
    "message",
    "reason",
    "podIP",
    "podIPs",
    "startTime",
    "containerStatuses",
    "initContainerStatuses",
    "ephemeralContainerStatuses",
    "qosClass",
    "resize",
    "resourceClaimStatuses",
)


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *spec.get("initContainers", []),
        *spec.get("containers", []),
        *spec.get("ephemeralContainers", []),
    ]


def refusal(pod: dict[str, Any]) -> Refused | None:
    """Why this pod must not run in the super cluster, or None.

    Host namespaces, host paths and host ports would reach outside the tenant's VM.
    """
    spec = pod.get("spec", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            return Refused("HostNamespaceForbidden", f"spec.{field} is not allowed in a TiSpace cluster")
    for vol in spec.get("volumes", []):
        if "hostPath" in vol:
            return Refused("HostPathForbidden", f"volume {vol['name']!r}: hostPath volumes are not allowed")
        if forbidden := sorted(set(vol) - {"name"} - ALLOWED_VOLUMES):
            return Refused(
                "VolumeTypeForbidden",
                f"volume {vol['name']!r}: {forbidden[0]} volumes are not allowed (the super node's host "
                "would mount them); use a PersistentVolumeClaim",
            )
    for c in _containers(spec):
        for p in c.get("ports", []):
            if p.get("hostPort"):
                return Refused(
                    "HostPortForbidden", f"container {c['name']!r}: hostPort {p['hostPort']} is not allowed"
                )
    return None


def token_secret_name(pod_name: str) -> str:
    """The Secret a super pod made before tokens were annotations mounts its token from (renewed
    there until the pod is replaced: a pod's volumes cannot change)."""
    return f"tispace-token-{pod_name}"[:253]


def token_key(audience: str) -> str:
    """The annotation of a pod's token for `audience` ("": the tenant API server's own)."""
    if not audience:
        return ANN_TOKEN
    return f"{ANN_TOKEN}.{hashlib.blake2b(audience.encode(), digest_size=8).hexdigest()}"


def is_token_key(key: str) -> bool:
    """Asked of every annotation of every super pod event (nine a pod): the prefix first."""
    return key.startswith(ANN_TOKEN) and _TOKEN_KEY_RE.fullmatch(key) is not None


TOKEN_SECONDS = 86400
"""The life of the token a pod's default API access source gets (the service account admission
plugin's 3607 s, which the API server stretches to a year for the kubelet and has it renewed hourly):
a day, renewed at 80% of it."""
_STRETCHED = 3607
_DEFAULT_SECONDS = 3600  # the API's default for a source's expirationSeconds
_MAX_REFRESH = datetime.timedelta(hours=24)  # the kubelet renews a token at least daily
_SKEW = datetime.timedelta(minutes=1)  # a renewal time later than the sources allow by more is stale


def token_lifetimes(pod: dict[str, Any], legacy: bool = False) -> dict[str, int]:
    """The audiences the tenant pod's token sources ask for, each once ("": the API server's), with
    the seconds its token lives: the shortest any of its sources asks for, so no token outlives what
    a source asked (the default API access source's TOKEN_SECONDS aside). A `legacy` super pod (one
    that mounts its token from a Secret) holds one token, the API server's."""
    lives: dict[str, int] = {}
    for src in _sources(pod):
        if (tok := src.get("serviceAccountToken")) is not None:
            audience = tok.get("audience") or ""
            seconds = tok.get("expirationSeconds") or _DEFAULT_SECONDS
            if seconds == _STRETCHED:  # the API server would sign it for a year for its own audiences
                seconds = TOKEN_SECONDS if not audience else _DEFAULT_SECONDS
            lives[audience] = min(lives.get(audience, seconds), seconds)
    if legacy:
        return {"": lives.get("", TOKEN_SECONDS)}
    return lives


def token_annotations(tokens: dict[str, dict[str, Any]], issued: datetime.datetime) -> dict[str, str]:
    """A super pod's token annotations from the TokenRequests' answers, by audience: renewed when the
    first of them is due."""
    expires = min(
        datetime.datetime.fromisoformat(t["status"]["expirationTimestamp"]) for t in tokens.values()
    )
    return {
        **{token_key(audience): t["status"]["token"] for audience, t in tokens.items()},
        ANN_TOKEN_REFRESH: token_refresh_at(issued, expires),
    }


def _sources(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        src
        for vol in pod.get("spec", {}).get("volumes", [])
        for src in (vol.get("projected") or {}).get("sources", [])
    ]


def _mounted_token_keys(super_pod: dict[str, Any]) -> set[str]:
    """The token annotations the super pod's downward API items read."""
    return {
        m.group(1)
        for src in _sources(super_pod)
        for item in (src.get("downwardAPI") or {}).get("items", [])
        if (m := _TOKEN_FIELD.fullmatch(item.get("fieldRef", {}).get("fieldPath", "")))
    }


def _reads_token_secret(super_pod: dict[str, Any]) -> bool:
    name = token_secret_name(super_pod["metadata"]["name"])
    return any(
        (src.get("secret") or {}).get("name") == name
        and any(item.get("key") == TOKEN_KEY for item in src["secret"].get("items", []))
        for src in _sources(super_pod)
    )


def mounts_token_secret(super_pod: dict[str, Any]) -> bool:
    """A super pod made when tokens were Secrets: its token source became that Secret's, with the
    token key (a tenant Secret of that name mounted in a pod of this syncer is not one)."""
    return not _mounted_token_keys(super_pod) and _reads_token_secret(super_pod)


def token_refresh_at(issued: datetime.datetime, expires: datetime.datetime) -> str:
    """When a pod's token is renewed: at 80% of its life or after a day, as the kubelet renews
    projected tokens."""
    return (issued + _renewed_after(expires - issued)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _renewed_after(life: datetime.timedelta) -> datetime.timedelta:
    return min(life * 0.8, _MAX_REFRESH)


def _refresh_time(annotations: dict[str, str]) -> datetime.datetime | None:
    """The renewal time in a pod's token annotations; None when missing, garbled or without a zone."""
    return api_time(annotations.get(ANN_TOKEN_REFRESH))


def refresh_passed(annotations: dict[str, str], now: datetime.datetime) -> bool:
    """Whether the renewal time in a pod's token annotations has come (or cannot be read)."""
    at = _refresh_time(annotations)
    return at is None or now >= at


def token_due(super_pod: dict[str, Any], now: datetime.datetime) -> bool:
    """Whether a super pod that mounts a token needs a new one: at its renewal time, or without a
    readable one (a pod made when tokens were Secrets has none), or without its token."""
    annotations = super_pod["metadata"].get("annotations") or {}
    if keys := _mounted_token_keys(super_pod):  # read once: the patrol asks of every super pod
        if not keys <= annotations.keys():
            return True  # a token was taken off the pod
    elif not _reads_token_secret(super_pod):
        return False  # it mounts no token
    return refresh_passed(annotations, now)


def token_outlives_sources(pod: dict[str, Any], super_pod: dict[str, Any], now: datetime.datetime) -> bool:
    """Whether the super pod's token is renewed later than the tenant pod's sources allow: signed for
    longer than they ask, as a syncer that gave every token a day did."""
    at = _refresh_time(super_pod["metadata"].get("annotations") or {})
    if at is None:
        return False  # due anyway, or never renewed
    if not (lives := token_lifetimes(pod, legacy=mounts_token_secret(super_pod))):
        return False  # no token
    return at > now + _renewed_after(datetime.timedelta(seconds=min(lives.values()))) + _SKEW


def _env(container: dict[str, Any], ctx: TenantContext) -> list[dict[str, Any]]:
    """Tenant env first, with the tenant API server as `kubernetes` and downward API remapped."""
    env = []
    for e in container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("fieldRef")
        if ref and ref.get("fieldPath") in _DOWNWARD:
            e = {**e, "valueFrom": {"fieldRef": {**ref, "fieldPath": _DOWNWARD[ref["fieldPath"]]}}}
        env.append(e)
    names = {e["name"] for e in env}
    api = {
        "KUBERNETES_SERVICE_HOST": ctx.api_host,
        "KUBERNETES_SERVICE_PORT": str(ctx.api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(ctx.api_port),
        "KUBERNETES_PORT": f"tcp://{ctx.api_host}:{ctx.api_port}",
    }
    env += [{"name": k, "value": v} for k, v in api.items() if k not in names]
    return env


def _volumes(vols: list[dict[str, Any]], ctx: TenantContext) -> list[dict[str, Any]]:
    """Translated in place and returned: `vols` is the super pod's own copy."""
    for vol in vols:
        claim = (vol.get("ephemeral") or {}).get("volumeClaimTemplate")
        if claim:  # the super cluster makes this claim: its class is mapped as a synced claim's is
            claim.setdefault("spec", {})["storageClassName"] = volumes.super_class(claim, ctx)
        sources = (vol.get("projected") or {}).get("sources", [])
        for cm in [vol.get("configMap"), *(src.get("configMap") for src in sources)]:
            if cm and cm.get("name"):
                cm["name"] = simple.configmap_super_name(cm["name"])
        for src in sources:
            tok = src.pop("serviceAccountToken", None)
            if tok is not None:  # the tenant-signed token, which the syncer writes on the super pod
                field = f"metadata.annotations['{token_key(tok.get('audience') or '')}']"
                src["downwardAPI"] = {"items": [{"path": tok["path"], "fieldRef": {"fieldPath": field}}]}
            ref = (src.get("downwardAPI") or {}).get("items", [])
            for item in ref:
                fr = item.get("fieldRef")
                if fr and fr.get("fieldPath") in _DOWNWARD:
                    fr["fieldPath"] = _DOWNWARD[fr["fieldPath"]]
        for item in (vol.get("downwardAPI") or {}).get("items", []):
            fr = item.get("fieldRef")
            if fr and fr.get("fieldPath") in _DOWNWARD:
                fr["fieldPath"] = _DOWNWARD[fr["fieldPath"]]
    return vols


def claim_names(pod: dict[str, Any]) -> list[str]:
    """Claims the pod mounts (the super pod must not reach the scheduler before its claims exist)."""
    return [
        vol["persistentVolumeClaim"]["claimName"]
        for vol in pod.get("spec", {}).get("volumes", [])
        if "persistentVolumeClaim" in vol
    ]


def needs_token(pod: dict[str, Any]) -> bool:
    return any("serviceAccountToken" in src for src in _sources(pod))


def _pin_to_node(spec: dict[str, Any], node: str) -> None:
    """Require the node by affinity, as the DaemonSet controller does, instead of copying nodeName:
    the super scheduler still checks the node's taints and room, so a tenant cannot place a pod on
    a node the admin keeps for others by naming it."""
    pin = {"key": "metadata.name", "operator": "In", "values": [node]}
    affinity = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    terms = (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
    affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{**t, "matchFields": [*t.get("matchFields", []), pin]} for t in terms or [{}]]
    }


def to_super(pod: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    """The super pod for a tenant pod; raises Refused for what must not run."""
    if (why := refusal(pod)) is not None:
        raise why
    meta = pod["metadata"]
    spec = copied(pod["spec"])
    for f in _DROP_SPEC:
        spec.pop(f, None)
    out_meta = super_meta(pod, ctx, namespace=ctx.super_ns(meta["namespace"]), owned=POD_OWNED)
    if pod["spec"].get("nodeName"):  # a pod that names its (virtual = super) node
        _pin_to_node(spec, pod["spec"]["nodeName"])
    out_meta["annotations"][ANN_GENERATION] = str(meta.get("generation", 1))
    scheduler = spec.get("schedulerName", DEFAULT_SCHEDULER)
    if scheduler != DEFAULT_SCHEDULER:
        out_meta["annotations"][ANN_SCHEDULER] = scheduler
    spec["schedulerName"] = ctx.scheduler_policy.get(scheduler, DEFAULT_SCHEDULER)
    if ctx.runtime_class:
        spec["runtimeClassName"] = ctx.runtime_class
    else:  # a super cluster without Kata: the tenant's own choice cannot name a super class either
        spec.pop("runtimeClassName", None)
    spec["automountServiceAccountToken"] = False
    if spec.get("dnsPolicy", "ClusterFirst") in ("ClusterFirst", "ClusterFirstWithHostNet"):
        spec["dnsPolicy"] = "None"
        ns = meta["namespace"]
        d = ctx.cluster_domain
        spec["dnsConfig"] = {
            "nameservers": [ctx.dns_ip],
            "searches": [f"{ns}.svc.{d}", f"svc.{d}", d],
            "options": [{"name": "ndots", "value": "5"}, *(spec.get("dnsConfig") or {}).get("options", [])],
        }
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key, []):
            c["env"] = _env(c, ctx)
    spec["volumes"] = _volumes(spec.get("volumes", []), ctx)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": out_meta, "spec": spec}


def patch_down(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any] | None:
    """What may change on a running pod, as upstream allows it: metadata, the images of its
    containers, init containers and sidecars (a strategic merge patch: containers are merged by
    name, the rest of each is kept), activeDeadlineSeconds and added tolerations (the super pod's
    own, from its admission, are kept: a pod's tolerations may only grow)."""
    patch = meta_patch(desired, actual, _META_OWNED) or {}
    want, have_spec = desired["spec"], actual["spec"]
    spec: dict[str, Any] = {}
    for key in ("containers", "initContainers"):
        have = {c["name"]: c.get("image") for c in have_spec.get(key, [])}
        changed = [
            {"name": c["name"], "image": c["image"]}
            for c in want.get(key, [])
            if c["name"] in have and have[c["name"]] != c.get("image")
        ]
        if changed:
            spec[key] = changed
    if want.get("activeDeadlineSeconds") != have_spec.get("activeDeadlineSeconds"):
        spec["activeDeadlineSeconds"] = want.get("activeDeadlineSeconds")
    tolerations = have_spec.get("tolerations") or []
    if added := [t for t in want.get("tolerations") or [] if t not in tolerations]:
        spec["tolerations"] = [*tolerations, *added]
    if spec:
        patch["spec"] = spec
    return patch or None


def ephemeral_patch(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any] | None:
    """Ephemeral containers the tenant added (`kubectl debug`) and the super pod lacks: a strategic
    merge patch for its `ephemeralcontainers` subresource (the only way to add them; never removed)."""
    have = {c["name"] for c in actual["spec"].get("ephemeralContainers", [])}
    new = [c for c in desired["spec"].get("ephemeralContainers", []) if c["name"] not in have]
    return {"spec": {"ephemeralContainers": new}} if new else None


def status_up(super_pod: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    """The tenant pod's status from the super pod's; the node address is vn_agent's."""
    st = super_pod.get("status") or {}
    out = {k: st[k] for k in _STATUS_UP if k in st}
    if st.get("hostIP"):
        out["hostIP"] = ctx.vn_agent_host
        out["hostIPs"] = [{"ip": ctx.vn_agent_host}]
    if (generation := observed_generation(super_pod)) is not None:
        out["observedGeneration"] = generation
    return out


def observed_generation(super_pod: dict[str, Any]) -> int | None:
    """The tenant generation whose spec the super kubelet has seen, as a kubelet reports its own:
    the one the super pod carries, once a kubelet has synced the pod (its startTime) and observed
    the super pod's generation (one that reports none, as KWOK, observes on arrival). Not before:
    a pod not yet on a kubelet has no observedGeneration, and reporting it would cost a status write."""
    meta, st = super_pod.get("metadata") or {}, super_pod.get("status") or {}
    carried = (meta.get("annotations") or {}).get(ANN_GENERATION)
    generation = meta.get("generation", 1)
    if carried is None or "startTime" not in st or st.get("observedGeneration", generation) < generation:
        return None
    return int(carried)


def status_differs(want: dict[str, Any], tenant_pod: dict[str, Any]) -> bool:
    """Conditions compare without their times, which are each API server's own, and without a true
    PodScheduled: the tenant's binding writes it (the super pod's only says the same). Writing a
    scheduled but not yet running pod's status for those alone cost up to one write per pod."""
    have = tenant_pod.get("status") or {}
    return _conditions(want) != _conditions(have) or any(
        have.get(k) != v for k, v in want.items() if k != "conditions"
    )


def _conditions(status: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return sorted(
        (c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", ""))
        for c in status.get("conditions") or []
        if (c.get("type"), c.get("status")) != ("PodScheduled", "True")
    )


def status_patch(
    super_pod: dict[str, Any], tenant_pod: dict[str, Any], ctx: TenantContext
) -> dict[str, Any] | None:
    """The tenant pod's new status, or None when it already shows the super pod's."""
    want = status_up(super_pod, ctx)
    return want if want and status_differs(want, tenant_pod) else None


def finished(pod: dict[str, Any]) -> bool:
    """Succeeded, failed or refused: never made again in the super cluster."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def refused_status(why: Refused) -> dict[str, Any]:
    """How a kubelet reports a pod it will not admit: Failed, with the reason."""
    return {"phase": "Failed", "reason": why.reason, "message": why.message}


def lost_status() -> dict[str, Any]:
    """A super pod that vanished under a running tenant pod: reported like an eviction."""
    return {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The pod was deleted or evicted in the super cluster; its controller will replace it.",
    }


SYNCED = f"{naming.GROUP}/Synced"


def synced_condition(ok: bool, reason: str, message: str, at: str) -> dict[str, Any]:
    """The pod condition that says whether the pod reached the super cluster, and if not, why."""
    return {
        "type": SYNCED,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }
