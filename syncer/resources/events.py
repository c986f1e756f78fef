"""Events of synced pods, services and claims, as the tenant sees them. Pure.

Written in the legacy core/v1 form (first/last timestamps), whatever form the super
component used, and with the super namespace replaced by the tenant's in the message.
"""

from __future__ import annotations

from typing import Any

MUTABLE = ("count", "lastTimestamp", "message")
UP_KINDS = ("Pod", "Service", "PersistentVolumeClaim")
"""Kinds whose super events a tenant sees (a claim's provisioning, a service's load balancer)."""


def to_tenant(super_event: dict[str, Any], tenant_obj: dict[str, Any]) -> dict[str, Any]:
    """Same name as the super event (so repeats update one object), about the tenant object."""
    meta = tenant_obj["metadata"]
    involved = super_event.get("involvedObject") or {}
    when = super_event.get("lastTimestamp") or super_event.get("eventTime") or meta.get("creationTimestamp")
    when = when[:19] + "Z" if when else None
    message = str(super_event.get("message", "")).replace(
        f"{involved.get('namespace')}/", f"{meta['namespace']}/"
    )
    ref = {
        "apiVersion": "v1",
        "kind": involved.get("kind", "Pod"),
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta["uid"],
    }
    if involved.get("fieldPath"):
        ref["fieldPath"] = involved["fieldPath"]
    source = (super_event.get("source") or {}).get("component") or super_event.get("reportingComponent")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": super_event["metadata"]["name"], "namespace": meta["namespace"]},
        "involvedObject": ref,
        "reason": super_event.get("reason", ""),
        "message": message,
        "type": super_event.get("type", "Normal"),
        "count": super_event.get("count") or ((super_event.get("series") or {}).get("count", 1)),
        "firstTimestamp": (super_event.get("firstTimestamp") or when),
        "lastTimestamp": when,
        "source": {"component": source or "tispace"},
    }
