"""A VirtualCluster as the manager sees it: identity, spec defaults, and status conditions."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from tispace import api, naming


@dataclass(frozen=True)
class Tenant:
    name: str
    namespace: str
    uid: str
    spec: dict[str, Any]
    version: dict[str, Any]
    """Spec of the ClusterVersion the tenant names."""

    @property
    def root(self) -> naming.RootNamespace:
        return naming.root_namespace(self.namespace, self.name, self.uid)

    @property
    def provisioner(self) -> str:
        return str(self.spec.get("provisioner") or "process")

    @property
    def cluster_domain(self) -> str:
        return str(self.spec.get("clusterDomain") or api.DEFAULT_CLUSTER_DOMAIN)

    @property
    def pki_days(self) -> int:
        return int(self.spec.get("pkiExpireDays") or api.DEFAULT_PKI_DAYS)

    @property
    def shared_etcd(self) -> bool:
        return bool((self.version.get("etcd") or {}).get("shared", True))

    def extra_args(self, component: str) -> list[str]:
        return list((self.version.get(component) or {}).get("extraArgs") or [])

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]], ctype: str, ok: bool, reason: str, message: str, at: str
) -> list[dict[str, Any]]:
    """Conditions with `ctype` set; lastTransitionTime moves only when the status changes."""
    status = "True" if ok else "False"
    old = next((c for c in conditions if c["type"] == ctype), None)
    keep = old is not None and old["status"] == status
    new = {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": old["lastTransitionTime"] if keep and old else at,
    }
    return [c for c in conditions if c["type"] != ctype] + [new]
