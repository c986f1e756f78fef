"""Virtual nodes' heartbeat: every node's Lease renewed, idle on-demand nodes removed.

A virtual node's status comes from its super node (the Node row of the table); what a kubelet
does on its own, the Lease, is done here for every tenant.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
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
NODE_PERIOD = 20.0
"""How often each tenant's nodes are looked at: idle ones removed, Leases due renewed."""
RENEW_PERIOD = nodes.LEASE_SECONDS / 4
"""A Lease is renewed when this much has passed since its last renewal, as a kubelet renews at a
quarter of its Lease's duration."""
RENEWALS_IN_FLIGHT = 16
"""Lease writes in flight per tenant: a few pooled connections carry a tenant's hundred nodes in
under a second (seven round trips, so even at a second each under load the Leases stay fresh); a
hundred at once opened a hundred connections, and TLS handshakes, every round."""
LEASE_READ_TIMEOUT = 10.0
"""How long a tenant's first round waits for its Leases (read_renewals); without them it renews every
Lease, which costs writes, never a node."""
VNODE_GRACE = 30.0
"""An on-demand node without pods stays this long (a pod replaced right away keeps it)."""


def selected(t: TenantRuntime, name: str, super_nodes: Informer) -> bool:
    """Whether the tenant's node selector takes the super node; a tenant with nodes on demand takes
    none, and its round reads no super node (each read parses one)."""
    if t.ctx.node_selector is None:
        return False
    super_node = super_nodes.get("", name)
    return super_node is not None and nodes.selects(t.ctx.node_selector, super_node)


async def node_loop(tenants: Mapping[str, TenantRuntime], super_nodes: Informer) -> None:
    """Every NODE_PERIOD: renew the virtual nodes' Leases that are due; remove nodes no tenant pod
    uses any more.

    Each tenant's round runs on its own: a tenant whose API server hangs holds back only its own
    next round, never another tenant's Leases (waiting for every round made one frozen tenant
    stall all the others' renewals for minutes, long enough for their node controllers to mark
    every node NotReady). Within a tenant, RENEWALS_IN_FLIGHT at a time."""
    rounds: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            now = leases.micro_now()
            for t in list(tenants.values()):
                running = rounds.get(t.name)
                if t.informers["Node"].synced.is_set() and (running is None or running.done()):
                    rounds[t.name] = asyncio.create_task(_tend_all(t, now, tenants, super_nodes))
            for name in rounds.keys() - tenants.keys():  # tenants no longer served
                rounds.pop(name).cancel()
            await asyncio.sleep(NODE_PERIOD)
    finally:
        for task in rounds.values():
            task.cancel()


async def _tend_all(
    t: TenantRuntime, now: str, tenants: Mapping[str, TenantRuntime], super_nodes: Informer
) -> None:
    """Every virtual node of one tenant, a few at a time."""
    if not t.renewals_read:
        try:
            async with asyncio.timeout(LEASE_READ_TIMEOUT):
                await read_renewals(t)
        except Exception as e:  # noqa: BLE001 - any failure: every Lease renewed now, read next round
            if tenants.get(t.name) is not t:
                return  # no longer served (its client is closed)
            log.warning(
                "virtual node Leases not read: %s: %s",
                type(e).__name__,
                e,
                extra={"tenant": t.name, "kind": "Lease"},
            )
    slots = asyncio.Semaphore(RENEWALS_IN_FLIGHT)

    async def tend(name: str) -> None:
        async with slots:  # counted now: a relist during the round replaces the pod cache and its counts
            await _tend(t, name, t.pods_per_node().get(name, 0), now, tenants, super_nodes)

    # By name: a node is read (parsed) only when its Lease is written, or its last renewal is not known.
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
        on_demand = not selected(t, name, super_nodes)
        if pods == 0 and on_demand:
            idle = t.vnode_idle_since.setdefault(name, time.monotonic())
            if time.monotonic() - idle > VNODE_GRACE:
                await t.client.delete(r.NODES, name)
                t.vnode_idle_since.pop(name, None)
                t.lease_renewed.pop(name, None)
                return
        else:
            t.vnode_idle_since.pop(name, None)
        # due within half a round: a round's own lateness must not push a renewal a whole round back
        due = RENEW_PERIOD - NODE_PERIOD / 2
        last = t.lease_renewed.get(name)
        if last is not None and time.monotonic() - last < due:
            return  # not due (most rounds): the node is not read
        if (node := t.informers["Node"].cache.get(("", name))) is None:
            return  # gone from the tenant since the round began
        if time.monotonic() - last_renewal(t, node, on_demand) >= due:
            await renew_lease(t, node, now)
            t.lease_renewed[name] = time.monotonic()
    except Exception as e:  # noqa: BLE001 - one node's trouble must not stop the others' leases
        if tenants.get(t.name) is t:  # else the tenant stopped mid-write (its client closed): no news
            log.warning(
                "virtual node %s: %s", name, e, extra={"tenant": t.name, "kind": "Node", "object": name}
            )


async def read_renewals(t: TenantRuntime) -> None:
    """When each virtual node's Lease was last renewed, read in one list when a tenant is first served
    here: a restarted syncer renewed every Lease in its first node round, 2,000 writes to the tenants
    at once at 20 x 250 while each Lease had minutes left, and its renewals stayed bunched after."""
    listed = await t.client.list(r.LEASES, nodes.LEASE_NAMESPACE)
    now, names = time.monotonic(), {key[1] for key in t.informers["Node"].cache}
    for name, age in nodes.lease_ages(listed["items"], datetime.datetime.now(datetime.UTC)).items():
        if name in names:
            t.lease_renewed.setdefault(name, now - age)
    t.renewals_read = True


def last_renewal(t: TenantRuntime, node: Obj, on_demand: bool) -> float:
    """When the node's Lease was last written, on the monotonic clock: by this process (or as its
    renewTime said when the tenant was first served, read_renewals); else, for a node made on
    demand, when it was made (the pod's binding makes its Lease with it: renewed again at once, each
    new node cost a write); else never (a selected node is made without one)."""
    if (renewed := t.lease_renewed.get(node["metadata"]["name"])) is not None:
        return renewed
    if not on_demand or (made := nodes.made_at(node)) is None:
        return -math.inf
    age = min(max(0.0, time.time() - made.timestamp()), RENEW_PERIOD)  # an API server's clock ahead
    return time.monotonic() - age


async def renew_lease(t: TenantRuntime, node: Obj, now: str) -> None:
    """The whole Lease as a merge patch: its owner is set on Leases made before they had one."""
    lease = nodes.lease(node, now)
    try:
        await t.client.patch(r.LEASES, lease["metadata"]["name"], lease, nodes.LEASE_NAMESPACE)
    except ApiError as e:
        if e.status != 404:
            raise
        await t.client.create(r.LEASES, lease, nodes.LEASE_NAMESPACE)
