"""Syncer replicas split the tenants among themselves; Leases are the membership and the locks.

Every replica renews a member Lease. The live members rank each tenant by rendezvous hashing
(highest random weight), a consistent hash: a replica joining or leaving moves only the
tenants it gains or loses. Before serving a tenant a replica takes that tenant's Lease, so two
replicas never serve one tenant at once, even while their views of the membership differ. A
killed replica's tenants are taken over within one lease duration plus one renew period.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from tispace import naming
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispace.leases import LeaseView, dns_label, lease

LABEL_ROLE = f"{naming.GROUP}/syncer-lease"
"""`member` (one per replica) or `tenant` (one per served tenant)."""
ANN_TENANT = f"{naming.GROUP}/tenant-key"
"""On a tenant Lease: the tenant it locks (`namespace/name` of the VirtualCluster)."""


def score(member: str, tenant: str) -> int:
    digest = hashlib.blake2b(f"{member}\x00{tenant}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(tenant: str, members: Iterable[str]) -> str | None:
    """The member that should serve `tenant` (None without members)."""
    return max(members, key=lambda m: (score(m, tenant), m), default=None)


def member_lease_name(identity: str) -> str:
    return f"syncer-{identity}"


def tenant_lease_name(tenant: str) -> str:
    """A DNS name per tenant key (`namespace/name`), stable across replicas."""
    digest = hashlib.blake2b(tenant.encode(), digest_size=5).hexdigest()
    return f"tenant-{dns_label(tenant.replace('/', '-'))[:40]}-{digest}"


class Shard:
    """One replica's view of the others, and the tenant Leases it holds."""

    def __init__(self, client: Client, namespace: str, identity: str, duration: float = 15.0) -> None:
        self.client = client
        self.namespace = namespace
        self.identity = identity
        self.duration = duration
        self.members: set[str] = set()
        self.leases = LeaseView(client, namespace, identity, duration)

    @property
    def renew_period(self) -> float:
        return self.duration / 3

    async def heartbeat(self) -> None:
        """Renew this replica's member Lease and refresh the view of members and tenant locks."""
        name = member_lease_name(self.identity)
        body = lease(name, self.identity, self.duration, {LABEL_ROLE: "member"})
        await self.client.patch(r.LEASES, name, body, self.namespace, patch_type="apply", force=True)
        self.members = {self.identity}
        for obj in await self.leases.refresh(LABEL_ROLE):
            live = self.leases.observe(obj)
            holder = obj["spec"].get("holderIdentity")
            if obj["metadata"]["labels"].get(LABEL_ROLE) == "member" and live and holder:
                self.members.add(holder)

    def mine(self, tenant: str) -> bool:
        return owner(tenant, self.members) == self.identity

    async def acquire(self, tenant: str) -> bool:
        """Take or renew the tenant's Lease; False when another live replica holds it."""
        body = lease(
            tenant_lease_name(tenant),
            self.identity,
            self.duration,
            {LABEL_ROLE: "tenant"},
            {ANN_TENANT: tenant},
        )
        return await self.leases.take(body)

    async def release(self, tenant: str) -> None:
        await self.leases.give_back(tenant_lease_name(tenant))

    async def leave(self) -> None:
        """Graceful shutdown: the others see this member gone on their next heartbeat."""
        try:
            await self.client.delete(r.LEASES, member_lease_name(self.identity), self.namespace)
        except ApiError as e:
            if e.status != 404:
                raise
