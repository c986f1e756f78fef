"""Syncer replicas split the tenants among themselves; Leases are the membership and the locks.

Every replica renews a member Lease. The live members rank each tenant by rendezvous hashing
(highest random weight), a consistent hash: a replica joining or leaving moves only the
tenants it gains or loses. Before serving a tenant a replica takes that tenant's Lease, so two
replicas never serve one tenant at once, even while their views of the membership differ.

Liveness is judged as client-go's leader election judges it: by when this replica last saw a
Lease's resourceVersion change, on its own monotonic clock, so clock skew between replicas does
not matter. A killed replica's tenants are therefore taken over within one lease duration plus
one renew period.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from syncer.resources.nodes import micro_now
from tispace import naming
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client

log = logging.getLogger("syncer.shard")

LABEL_ROLE = f"{naming.GROUP}/syncer-lease"
"""`member` (one per replica) or `tenant` (one per served tenant)."""
ANN_TENANT = f"{naming.GROUP}/tenant-key"
"""On a tenant Lease: the tenant it locks (`namespace/name` of the VirtualCluster)."""


def default_identity() -> str:
    """Host and pid: unique per process, and a Deployment's pod name is its host name."""
    return dns_label(f"{socket.gethostname()}-{os.getpid()}")


def dns_label(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:63].rstrip("-") or "syncer"


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


def lease(name: str, role: str, holder: str, duration: float, tenant: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {LABEL_ROLE: role, naming.MANAGED_BY: "tispace-syncer"}}
    if tenant:
        meta["annotations"] = {ANN_TENANT: tenant}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": max(1, round(duration)),
            "renewTime": micro_now(),
        },
    }


@dataclass
class Seen:
    """When this replica last saw a Lease change (monotonic seconds)."""

    resource_version: str
    at: float


@dataclass
class Shard:
    """One replica's view of the others, and the tenant Leases it holds."""

    client: Client
    namespace: str
    identity: str = field(default_factory=default_identity)
    duration: float = 15.0
    members: set[str] = field(default_factory=set)
    _seen: dict[str, Seen] = field(default_factory=dict)
    _leases: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def renew_period(self) -> float:
        return self.duration / 3

    def _live(self, obj: dict[str, Any], now: float) -> bool:
        name, rv = obj["metadata"]["name"], obj["metadata"]["resourceVersion"]
        seen = self._seen.get(name)
        if seen is None or seen.resource_version != rv:
            seen = self._seen[name] = Seen(rv, now)
        return now - seen.at < float(obj["spec"].get("leaseDurationSeconds") or self.duration)

    async def heartbeat(self) -> None:
        """Renew this replica's member Lease and refresh the view of members and tenant locks."""
        name = member_lease_name(self.identity)
        body = lease(name, "member", self.identity, self.duration)
        await self.client.patch(r.LEASES, name, body, self.namespace, patch_type="apply", force=True)
        listing = await self.client.list(r.LEASES, self.namespace, label_selector=LABEL_ROLE)
        now = time.monotonic()
        items = listing["items"]
        self._seen = {k: v for k, v in self._seen.items() if k in {o["metadata"]["name"] for o in items}}
        self.members = {self.identity}
        self._leases = {}
        for obj in items:
            role = obj["metadata"]["labels"].get(LABEL_ROLE)
            if role == "member" and self._live(obj, now) and obj["spec"].get("holderIdentity"):
                self.members.add(obj["spec"]["holderIdentity"])
            elif role == "tenant":
                self._live(obj, now)
                self._leases[obj["metadata"]["name"]] = obj

    def mine(self, tenant: str) -> bool:
        return owner(tenant, self.members) == self.identity

    def holder(self, tenant: str) -> str | None:
        """Who holds the tenant's Lease now (None: free or expired)."""
        obj = self._leases.get(tenant_lease_name(tenant))
        if obj is None or not obj["spec"].get("holderIdentity"):
            return None
        return obj["spec"]["holderIdentity"] if self._live(obj, time.monotonic()) else None

    async def acquire(self, tenant: str) -> bool:
        """Take or renew the tenant's Lease; False when another live replica holds it."""
        name = tenant_lease_name(tenant)
        holder = self.holder(tenant)
        if holder not in (None, self.identity):
            return False
        body = lease(name, "tenant", self.identity, self.duration, tenant)
        current = self._leases.get(name)
        try:
            if current is None:
                obj = await self.client.create(r.LEASES, body, self.namespace)
            else:  # the resourceVersion makes the write conditional: one winner when two try
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                obj = await self.client.patch(r.LEASES, name, body, self.namespace)
        except ApiError as e:
            if e.status == 409:
                return False
            raise
        self._leases[name] = obj
        self._seen[name] = Seen(obj["metadata"]["resourceVersion"], time.monotonic())
        return True

    async def release(self, tenant: str) -> None:
        """Free the tenant's Lease at once, so its next owner does not wait for it to expire."""
        name = tenant_lease_name(tenant)
        current = self._leases.pop(name, None)
        if current is None or current["spec"].get("holderIdentity") != self.identity:
            return
        patch = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "spec": {"holderIdentity": None},
        }
        try:
            await self.client.patch(r.LEASES, name, patch, self.namespace)
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    async def leave(self) -> None:
        """Graceful shutdown: the others see this member gone on their next heartbeat."""
        try:
            await self.client.delete(r.LEASES, member_lease_name(self.identity), self.namespace)
        except ApiError as e:
            log.warning("member lease not removed: %s", e)
