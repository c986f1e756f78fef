"""Virtual nodes: what a tenant sees of the super nodes that run its pods. Pure."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from syncer.resources.context import TenantContext, api_time
from tispace import naming

LABEL_VIRTUAL = f"{naming.GROUP}/virtual-node"
COPIED_LABEL_PREFIXES = (
    "kubernetes.io/",
    "topology.kubernetes.io/",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/",
)
BETA_LABELS = {"kubernetes.io/arch": "beta.kubernetes.io/arch", "kubernetes.io/os": "beta.kubernetes.io/os"}
"""Written by a kubelet next to the stable ones, and reconciled to them by the node lifecycle
controller: set from the start, they cost no controller patch per new node."""
LEASE_SECONDS = 240
"""A virtual node's Lease is renewed every quarter of this (vnodes.RENEW_PERIOD, 60 s), as a kubelet
with `nodeLeaseDurationSeconds: 240` does, and tenant controller-managers mark a node Unknown after
180 s without a renewal (their --node-monitor-grace-period, vc_manager's tuning): three missed
renewals. A kubelet's defaults (a 40 s Lease, renewed every 10 s, a 50 s grace) cost every tenant a
write per node every 10 s, the largest share of tenant requests at scale (20 tenants x 100 nodes:
200 writes/s; PATCH leases were 4.1 of 11.5 tenant requests per pod at 20 x 250 with 20 s). A
virtual node's health is its super node's conditions, which the syncer copies up as they change and
the node controller acts on at once; the Lease only tells that the syncer is alive, and a longer
grace keeps a syncer's restart from making every node Unknown."""
LEASE_NAMESPACE = "kube-node-lease"


def selects(selector: dict[str, Any] | None, super_node: dict[str, Any]) -> bool:
    """Whether a tenant's node selector (spec.nodes) takes this super node from the start; None
    (nodes on demand) takes none, an empty selector takes all. Label selector rules as upstream."""
    if selector is None:
        return False
    have = super_node["metadata"].get("labels") or {}
    if any(have.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in have and have[key] in values,
            "NotIn": key not in have or have[key] not in values,
            "Exists": key in have,
            "DoesNotExist": key not in have,
        }.get(op, False)
        if not ok:
            return False
    return True


def selector_of(spec_nodes: dict[str, Any] | None, default: dict[str, Any] | None) -> dict[str, Any] | None:
    """The node selector of a VirtualCluster's spec.nodes, or the syncer's default when it is unset."""
    if not spec_nodes or "mode" not in spec_nodes:
        return default
    if spec_nodes["mode"] == "onDemand":
        return None
    return dict(spec_nodes.get("selector") or {})


def labels(super_node: dict[str, Any], ctx: TenantContext) -> dict[str, str]:
    """Topology and admin-chosen labels (ctx.node_label_prefixes); nothing that names super-cluster
    internals."""
    prefixes = COPIED_LABEL_PREFIXES + ctx.node_label_prefixes
    out = {k: v for k, v in (super_node["metadata"].get("labels") or {}).items() if k.startswith(prefixes)}
    out.update({beta: out[stable] for stable, beta in BETA_LABELS.items() if stable in out})
    out[LABEL_VIRTUAL] = "true"
    return out


def label_patch(
    super_node: dict[str, Any], vnode: dict[str, Any], ctx: TenantContext
) -> dict[str, Any] | None:
    """A merge patch bringing the virtual node's copied labels to the super node's (a zone or rack
    relabelled by the admin); labels the tenant set itself are left alone."""
    prefixes = COPIED_LABEL_PREFIXES + ctx.node_label_prefixes + (LABEL_VIRTUAL, *BETA_LABELS.values())
    want = labels(super_node, ctx)
    have = {k: v for k, v in (vnode["metadata"].get("labels") or {}).items() if k.startswith(prefixes)}
    if want == have:
        return None
    return {"metadata": {"labels": {**{k: None for k in have if k not in want}, **want}}}


def status(super_node: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    """The virtual node's status. Its kubelet is vn_agent: at `ctx.vn_agent_host`, or, when that is
    empty (vn_agent as a DaemonSet), at the super node's own InternalIP."""
    st = super_node.get("status") or {}
    name = super_node["metadata"]["name"]
    own = {a["type"]: a["address"] for a in st.get("addresses", [])}.get("InternalIP", "")
    return {
        "capacity": st.get("capacity", {}),
        "allocatable": st.get("allocatable", {}),
        "conditions": st.get("conditions", []),
        "nodeInfo": st.get("nodeInfo", {}),
        "phase": st.get("phase", "Running"),
        "addresses": [
            {"type": "InternalIP", "address": ctx.vn_agent_host or own},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": ctx.vn_agent_port}},
    }


def virtual_node(super_node: dict[str, Any], ctx: TenantContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": super_node["metadata"]["name"], "labels": labels(super_node, ctx)},
        "spec": {},
        "status": status(super_node, ctx),
    }


def status_differs(want: dict[str, Any], node: dict[str, Any]) -> bool:
    """Conditions' heartbeat times change constantly; compare what a scheduler or user reads."""
    have = node.get("status") or {}

    def cond(st: dict[str, Any]) -> list[tuple[str, str]]:
        return sorted((c["type"], c["status"]) for c in st.get("conditions", []))

    keys = ("capacity", "allocatable", "addresses", "daemonEndpoints", "nodeInfo")
    return cond(want) != cond(have) or any(want.get(k) != have.get(k) for k in keys)


def seconds_now() -> str:
    """RFC 3339 in whole seconds, as Event and condition times want."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lease(node: dict[str, Any], now: str) -> dict[str, Any]:
    """A virtual node's Lease, owned by its Node as a kubelet's is: the tenant's garbage collector
    removes it with the node (unowned, the Leases of removed on-demand nodes piled up)."""
    name, uid = node["metadata"]["name"], node["metadata"]["uid"]
    owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
    }


def made_at(node: dict[str, Any]) -> datetime.datetime | None:
    """When the node was made, if the API server said so readably (a node made on demand gets its
    Lease then); a garbled time reads as None, so the node's Lease is renewed, not the round ended."""
    return api_time(node["metadata"].get("creationTimestamp"))


def lease_ages(leases: Iterable[dict[str, Any]], now: datetime.datetime) -> dict[str, float]:
    """Seconds since each Lease's renewTime, by name: 0 for one ahead of `now` (another clock wrote
    it); a Lease without a readable, zoned renewTime is left out (renewed as if never)."""
    ages = {}
    for lease in leases:
        if (renewed := api_time((lease.get("spec") or {}).get("renewTime"))) is not None:
            ages[lease["metadata"]["name"]] = max(0.0, (now - renewed).total_seconds())
    return ages
