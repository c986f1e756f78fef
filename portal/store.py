"""The portal's I/O: VirtualClusters in the super cluster, dev instances inside each tenant.

Ownership is checked here: `cluster()` answers a cluster that is not the caller's exactly like
one that does not exist, and everything that acts on a cluster takes the object it returned.
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cachetools import TTLCache

from portal import model
from portal.settings import Settings
from tispace import api, kubeconfig, naming, tenants
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client


class NotFound(Exception):
    """No such cluster or instance of this owner (whether it exists for someone else is not said)."""


class Store:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.super = client
        self.s = settings
        self._admin: TTLCache[str, kubeconfig.Credentials] = TTLCache(maxsize=1024, ttl=300)
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        """One per owner: a quota check and the create it allows happen together."""

    async def versions(self) -> list[str]:
        return sorted(v["metadata"]["name"] for v in (await self.super.list(r.CLUSTERVERSIONS))["items"])

    async def clusters(self, owner: str) -> list[dict[str, Any]]:
        items = (await self.super.list(r.VIRTUALCLUSTERS, self.s.namespace))["items"]
        return sorted(
            (vc for vc in items if vc["spec"].get("owner") == owner), key=lambda vc: vc["metadata"]["name"]
        )

    async def cluster(self, owner: str, name: str) -> dict[str, Any]:
        vc = await self.super.get_or_none(r.VIRTUALCLUSTERS, name, self.s.namespace)
        if vc is None or vc["spec"].get("owner") != owner:
            raise NotFound(f"you have no cluster named {name!r}")
        return vc

    async def create_cluster(self, vc: dict[str, Any]) -> None:
        await self.super.create(r.VIRTUALCLUSTERS, vc, self.s.namespace)

    async def delete_cluster(self, vc: dict[str, Any]) -> None:
        # The uid precondition: never delete a same-named successor made after the owner's check.
        meta = vc["metadata"]
        await self.super.delete(r.VIRTUALCLUSTERS, meta["name"], self.s.namespace, uid=meta["uid"])

    async def user_kubeconfig(self, vc: dict[str, Any]) -> dict[str, Any]:
        """A kubeconfig of the cluster's owner (the caller, as `cluster()` checked)."""
        return await tenants.user_kubeconfig(self.super, vc, vc["spec"]["owner"])

    @asynccontextmanager
    async def tenant(self, vc: dict[str, Any]) -> AsyncIterator[Client]:
        """A client of the tenant's API server as its admin (the portal acts for the owner)."""
        uid = vc["metadata"]["uid"]
        creds = self._admin.get(uid)
        if creds is None:
            creds = self._admin[uid] = kubeconfig.credentials(
                await tenants.admin_kubeconfig_of(self.super, vc)
            )
        async with Client(creds, name=vc["metadata"]["name"], attempts=2) as client:
            yield client

    async def instances(self, vc: dict[str, Any]) -> list[dict[str, Any]]:
        """The portal's StatefulSets in the tenant, each with its pod (or None) under `pod`."""
        if (vc.get("status") or {}).get("phase") != api.Phase.RUNNING:
            return []
        selector = f"{model.MANAGED_BY}={model.PORTAL}"
        async with self.tenant(vc) as t:
            sets = (await t.list(r.STATEFULSETS, model.INSTANCE_NAMESPACE, label_selector=selector))["items"]
            pods = (await t.list(r.PODS, model.INSTANCE_NAMESPACE, label_selector=selector))["items"]
        by_instance = {p["metadata"]["labels"].get(model.INSTANCE): p for p in pods}
        return [
            {**s, "pod": by_instance.get(s["metadata"]["name"])}
            for s in sorted(sets, key=lambda s: s["metadata"]["name"])
        ]

    async def instance(self, vc: dict[str, Any], name: str) -> dict[str, Any]:
        for inst in await self.instances(vc):
            if inst["metadata"]["name"] == name:
                return inst
        raise NotFound(f"cluster {vc['metadata']['name']!r} has no instance named {name!r}")

    async def owned_instances(self, owner: str) -> dict[str, list[dict[str, Any]]]:
        """The owner's dev instances in all their clusters, by cluster name; a cluster that ran and now
        does not (Error, Updating) may hold some, so nothing is counted as free until it runs again."""
        owned = await self.clusters(owner)
        for vc in owned:
            phase = (vc.get("status") or {}).get("phase") or api.Phase.PENDING
            if phase not in (api.Phase.RUNNING, api.Phase.PENDING, api.Phase.PROVISIONING):
                raise model.FormError(
                    f"cluster {vc['metadata']['name']} is {phase}: its instances cannot be counted for your "
                    "quota until it runs again (or is deleted)"
                )
        sets = await asyncio.gather(*(self.instances(vc) for vc in owned))
        return {vc["metadata"]["name"]: found for vc, found in zip(owned, sets, strict=True)}

    async def create_instance(
        self, vc: dict[str, Any], service: dict[str, Any], statefulset: dict[str, Any]
    ) -> None:
        """The StatefulSet, then its Service owned by it: a failed half is undone, and whatever is
        left would go with the StatefulSet."""
        ns = model.INSTANCE_NAMESPACE
        async with self.tenant(vc) as t:
            made = await t.create(r.STATEFULSETS, statefulset, ns)
            owned = copy.deepcopy(service)
            owned["metadata"]["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": made["metadata"]["name"],
                    "uid": made["metadata"]["uid"],
                }
            ]
            try:
                await t.create(r.SERVICES, owned, ns)
            except ApiError:
                await t.delete(r.STATEFULSETS, made["metadata"]["name"], ns)
                raise

    async def delete_instance(self, vc: dict[str, Any], name: str) -> None:
        """The StatefulSet (its claim goes with it: retention policy Delete) and the SSH Service of an
        instance `instance()` found."""
        async with self.tenant(vc) as t:
            for res in (r.STATEFULSETS, r.SERVICES):
                await t.delete(res, name, model.INSTANCE_NAMESPACE)

    async def every_cluster(self) -> list[dict[str, Any]]:
        """The admin view: every VirtualCluster (any namespace, portal-made or not) with its usage."""
        vcs = (await self.super.list(r.VIRTUALCLUSTERS))["items"]
        pods = (await self.super.list(r.PODS, label_selector=naming.LABEL_TENANT))["items"]
        by_root: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in pods:
            by_root[p["metadata"]["labels"][naming.LABEL_TENANT]].append(p)
        rows = []
        for vc in sorted(vcs, key=lambda v: (v["metadata"]["namespace"], v["metadata"]["name"])):
            count, cpu, memory = model.pod_usage(by_root.get(naming.vc_root(vc), []))
            rows.append({"vc": vc, "pods": count, "cpu": cpu, "memory": memory})
        return rows
