"""Virtual nodes' heartbeat: every node's Lease renewed, idle on-demand nodes removed.

A virtual node's status comes from its super node (the Node row of the table); what a kubelet
does on its own, the Lease, is done here for every tenant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from syncer.engine.informer import Informer
from syncer.engine.model import Obj
from syncer.engine.tenant import TenantRuntime
from syncer.resources import nodes
from tispace import leases
from tispace.kube import resources as r
from tispace.kube.client import ApiError

log = logging.getLogger("syncer.nodes")
NODE_PERIOD = nodes.LEASE_SECONDS / 4
RENEWALS_IN_FLIGHT = 16
"""Lease writes in flight per tenant: a few pooled connections carry a tenant's hundred nodes in
under a second (seven round trips, so even at a second each under load the Leases stay fresh); a
hundred at once opened a hundred connections, and TLS handshakes, every round."""
VNODE_GRACE = 30.0
"""An on-demand node without pods stays this long (a pod replaced right away keeps it)."""


def selected(t: TenantRuntime, super_node: Obj | None) -> bool:
    return super_node is not None and nodes.selects(t.ctx.node_selector, super_node)


async def node_loop(tenants: Mapping[str, TenantRuntime], super_nodes: Informer) -> None:
    """Renew every virtual node's Lease; remove nodes no tenant pod uses any more. All of them side
    by side: one after another, 20 tenants of 90 nodes each took longer than a Lease lasts on a busy
    machine, every node went NotReady, and the tenants' node controllers and the syncer fought over
    their status."""
    while True:
        started, now = time.monotonic(), leases.micro_now()
        served = [t for t in list(tenants.values()) if t.informers["Node"].synced.is_set()]
        await asyncio.gather(*(_tend_all(t, now, tenants, super_nodes) for t in served))
        took = time.monotonic() - started
        await asyncio.sleep(max(0.0, NODE_PERIOD - took))  # a slow round eats into the wait, not on top


async def _tend_all(
    t: TenantRuntime, now: str, tenants: Mapping[str, TenantRuntime], super_nodes: Informer
) -> None:
    """Every virtual node of one tenant, a few at a time."""
    busy = t.pods_per_node()
    slots = asyncio.Semaphore(RENEWALS_IN_FLIGHT)

    async def tend(name: str) -> None:
        async with slots:
            await _tend(t, name, busy[name], now, tenants, super_nodes)

    await asyncio.gather(*(tend(name) for _, name in list(t.informers["Node"].cache)))


async def _tend(
    t: TenantRuntime,
    name: str,
    pods: int,
    now: str,
    tenants: Mapping[str, TenantRuntime],
    super_nodes: Informer,
) -> None:
    """One virtual node (with `pods` bound to it): removed after a grace when idle, else its Lease renewed."""
    if tenants.get(t.name) is not t:
        return  # no longer served (its client is closed)
    try:
        if pods == 0 and not selected(t, super_nodes.get("", name)):
            idle = t.vnode_idle_since.setdefault(name, time.monotonic())
            if time.monotonic() - idle > VNODE_GRACE:
                await t.client.delete(r.NODES, name)
                t.vnode_idle_since.pop(name, None)
                return
        else:
            t.vnode_idle_since.pop(name, None)
        await renew_lease(t, name, now)
    except Exception as e:  # noqa: BLE001 - one node's trouble must not stop the others' leases
        if tenants.get(t.name) is t:  # else the tenant stopped mid-write (its client closed): no news
            log.warning(
                "virtual node %s: %s", name, e, extra={"tenant": t.name, "kind": "Node", "object": name}
            )


async def renew_lease(t: TenantRuntime, name: str, now: str) -> None:
    spec = {"renewTime": now, "holderIdentity": name, "leaseDurationSeconds": nodes.LEASE_SECONDS}
    try:
        await t.client.patch(r.LEASES, name, {"spec": spec}, "kube-node-lease")
    except ApiError as e:
        if e.status != 404:
            raise
        await t.client.create(r.LEASES, nodes.lease(name, now), "kube-node-lease")
