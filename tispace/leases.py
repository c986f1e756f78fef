"""Leases as locks: who holds one, taking it when free, giving it back. Shared by syncer sharding
and vc_manager's leader election.

A Lease is live while its resourceVersion keeps changing, judged on this process's own monotonic
clock as client-go's leader election does, so clock skew between holders does not matter. Every
write is conditional on the resourceVersion last seen: when two processes try at once, one wins.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from tispace import naming
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client


def dns_label(text: str) -> str:
    """`text` made a DNS label (identities and Lease names)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:63].rstrip("-") or "replica"


def default_identity() -> str:
    """Host and pid: unique per process, and a Deployment's pod name is its host name."""
    return dns_label(f"{socket.gethostname()}-{os.getpid()}")


def micro_now() -> str:
    """A Lease's renewTime: RFC 3339 with microseconds."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease(
    name: str, holder: str, duration: float, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**labels, naming.MANAGED_BY: "tispace"}}
    if annotations:
        meta["annotations"] = annotations
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
class _Seen:
    resource_version: str
    at: float


@dataclass
class LeaseView:
    """What this process knows of the Leases in one namespace, and when it saw each change."""

    client: Client
    namespace: str
    identity: str
    duration: float
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def observe(self, obj: dict[str, Any], now: float | None = None) -> bool:
        """Record the Lease; True while it is live (changed within its duration)."""
        now = time.monotonic() if now is None else now
        name, rv = obj["metadata"]["name"], obj["metadata"]["resourceVersion"]
        self.objects[name] = obj
        seen = self._seen.get(name)
        if seen is None or seen.resource_version != rv:
            seen = self._seen[name] = _Seen(rv, now)
        return now - seen.at < float(obj["spec"].get("leaseDurationSeconds") or self.duration)

    async def refresh(self, label_selector: str) -> list[dict[str, Any]]:
        """List the Leases matching the selector and observe each (forgetting the vanished)."""
        items = (await self.client.list(r.LEASES, self.namespace, label_selector=label_selector))["items"]
        names = {o["metadata"]["name"] for o in items}
        self._seen = {k: v for k, v in self._seen.items() if k in names}
        self.objects = {k: v for k, v in self.objects.items() if k in names}
        return items

    def holder(self, name: str) -> str | None:
        """Who holds the Lease now (None: free, expired or unknown)."""
        obj = self.objects.get(name)
        if obj is None or not obj["spec"].get("holderIdentity"):
            return None
        return obj["spec"]["holderIdentity"] if self.observe(obj) else None

    async def take(self, body: dict[str, Any]) -> bool:
        """Take or renew the Lease `body` describes; False when another live holder has it."""
        name = body["metadata"]["name"]
        if self.holder(name) not in (None, self.identity):
            return False
        current = self.objects.get(name)
        try:
            if current is None:
                obj = await self.client.create(r.LEASES, body, self.namespace)
            else:
                body = {
                    **body,
                    "metadata": {
                        **body["metadata"],
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    },
                }
                obj = await self.client.patch(r.LEASES, name, body, self.namespace)
        except ApiError as e:
            if e.status == 409:  # another process wrote it first; look again next time
                fresh = await self.client.get_or_none(r.LEASES, name, self.namespace)
                if fresh is not None:
                    self.observe(fresh)
                return False
            raise
        self.observe(obj)  # our own write: a new resourceVersion, seen now
        return True

    async def give_back(self, name: str) -> None:
        """Free the Lease at once, so the next holder does not wait for it to expire."""
        current = self.objects.pop(name, None)
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


async def hold(view: LeaseView, name: str, labels: dict[str, str]) -> None:
    """Wait until this process holds the Lease (leader election's acquire)."""
    while True:
        current = await view.client.get_or_none(r.LEASES, name, view.namespace)
        if current is not None:
            view.observe(current)
        if await view.take(lease(name, view.identity, view.duration, labels)):
            return
        await asyncio.sleep(view.duration / 3)


async def keep(view: LeaseView, name: str, labels: dict[str, str]) -> None:
    """Renew the held Lease; return when another holder took it or renewing failed for 2/3 of the
    duration (by then it may expire for the others: the caller must stop acting as holder)."""
    renewed = time.monotonic()
    while time.monotonic() - renewed < view.duration * 2 / 3:
        await asyncio.sleep(view.duration / 3)
        try:
            if not await view.take(lease(name, view.identity, view.duration, labels)):
                return
            renewed = time.monotonic()
        except (ApiError, OSError, TimeoutError):
            continue
