"""Each program's super-cluster permissions, as data: least privilege, one service account each.

`config/rbac/*.yaml` are generated from here (`python -m tispace.rbac config/rbac`), `tispace up`
applies the same objects and runs the programs with their service accounts' tokens, so every e2e
test proves the rules suffice; a `kubectl auth can-i` matrix test proves they allow no more.
Cluster-wide verbs on namespaced kinds are unavoidable where tenants' super namespaces come and go.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tispace import binaries, kubeconfig, tenantpki

NAMESPACE = "tispace-system"
PORTAL_NAMESPACE = "tispace-portal"
"""Where the portal creates VirtualClusters."""
READ = ["get", "list", "watch"]
WRITE = [*READ, "create", "update", "patch", "delete"]


def rule(
    groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        out["resourceNames"] = names
    return out


@dataclass(frozen=True)
class Program:
    name: str
    why: str
    cluster_rules: list[dict[str, Any]]
    namespace_rules: list[dict[str, Any]] = field(default_factory=list)
    """Rules inside tispace-system only."""


PROGRAMS = [
    Program(
        "vc-manager",
        "owns VirtualClusters; creates each tenant's root namespace and what lives in it",
        [
            rule(["tenancy.x-k8s.io"], ["virtualclusters", "clusterversions"], [*READ, "update", "patch"]),
            rule(["tenancy.x-k8s.io"], ["virtualclusters/status"], ["get", "update", "patch"]),
            rule([""], ["namespaces"], [*READ, "create", "delete", "patch"]),
            rule([""], ["secrets", "services", "serviceaccounts", "configmaps", "resourcequotas"], WRITE),
            rule(["apps"], ["statefulsets"], WRITE),
            rule(["networking.k8s.io"], ["networkpolicies"], WRITE),  # a native control plane's fences
            rule([""], ["events"], ["create", "patch"]),
            rule(["events.k8s.io"], ["events"], ["create", "patch"]),
            rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], READ),
        ],
        [rule(["coordination.k8s.io"], ["leases"], WRITE)],  # leader election among replicas
    ),
    Program(
        "syncer",
        "writes tenant copies into the tenants' super namespaces and reads what flows back up; "
        "never RBAC, nodes, CRDs or VirtualCluster writes",
        [
            rule(["tenancy.x-k8s.io"], ["virtualclusters"], READ),
            rule(
                [""],
                [
                    "namespaces",
                    "configmaps",
                    "secrets",
                    "serviceaccounts",
                    "pods",
                    "services",
                    "endpoints",
                    "persistentvolumeclaims",
                    "resourcequotas",  # VirtualCluster spec.resourceQuota on each super namespace
                ],
                WRITE,
            ),
            rule(["networking.k8s.io"], ["ingresses"], WRITE),
            rule([""], ["pods/ephemeralcontainers"], ["patch"]),  # kubectl debug in a tenant
            rule([""], ["persistentvolumes"], [*READ, "patch"]),
            rule([""], ["nodes", "events"], READ),
            rule(["storage.k8s.io"], ["storageclasses", "volumeattributesclasses"], READ),
            rule(["scheduling.k8s.io"], ["priorityclasses"], READ),
            rule(["node.k8s.io"], ["runtimeclasses"], READ),
            rule(["networking.k8s.io"], ["ingressclasses"], READ),
        ],
        [rule(["coordination.k8s.io"], ["leases"], WRITE)],
    ),
    Program(
        "vn-agent",
        "finds tenants' CAs and streams synced pods' logs, exec, attach and port-forward; writes nothing",
        [
            rule(["tenancy.x-k8s.io"], ["virtualclusters"], READ),
            rule([""], ["secrets", "pods", "nodes"], ["get", "list"]),
            rule([""], ["pods/log"], ["get"]),
            rule([""], ["pods/exec", "pods/attach", "pods/portforward"], ["get", "create"]),
            rule([""], ["nodes/proxy", "nodes/stats"], ["get"]),
        ],
    ),
    Program(
        "portal",
        "creates and deletes developers' VirtualClusters (ownership is the portal's check), reads "
        "each tenant's admin kubeconfig and CA to act inside it, and pods for the admin view's usage",
        [
            rule(["tenancy.x-k8s.io"], ["virtualclusters"], [*READ, "create", "delete"]),
            rule(["tenancy.x-k8s.io"], ["clusterversions"], READ),
            # Only the two secrets it needs, by name, in whichever root namespace.
            rule([""], ["secrets"], ["get"], names=[tenantpki.ADMIN_KUBECONFIG, tenantpki.ROOT_CA]),
            rule([""], ["namespaces"], ["get"]),
            rule([""], ["pods"], ["list"]),
        ],
    ),
]


def objects(program: Program) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole(+Binding) and, where needed, Role(+Binding) in tispace-system."""
    role_name = f"tispace:{program.name}"
    subject = [{"kind": "ServiceAccount", "name": program.name, "namespace": NAMESPACE}]
    rbac = "rbac.authorization.k8s.io/v1"
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": program.name, "namespace": NAMESPACE},
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": role_name},
            "rules": program.cluster_rules,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role_name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
            "subjects": subject,
        },
    ]
    if program.namespace_rules:
        meta = {"name": role_name, "namespace": NAMESPACE}
        out += [
            {"apiVersion": rbac, "kind": "Role", "metadata": meta, "rules": program.namespace_rules},
            {
                "apiVersion": rbac,
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
                "subjects": subject,
            },
        ]
    return out


def all_objects() -> list[dict[str, Any]]:
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        for n in (NAMESPACE, PORTAL_NAMESPACE)
    ]
    return [*namespaces, *(o for p in PROGRAMS for o in objects(p))]


def files() -> dict[str, str]:
    """config/rbac: one file per program, the namespace, and the kustomization listing them."""
    header = "# Generated by `python -m tispace.rbac config/rbac`; edit tispace/rbac.py instead.\n"
    namespaces = "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in all_objects()[:2])
    out = {"namespace.yaml": header + namespaces}
    for p in PROGRAMS:
        docs = "---\n".join(yaml.safe_dump(o, sort_keys=False, width=120) for o in objects(p))
        out[f"{p.name}.yaml"] = f"{header}# {p.name}: {p.why}.\n{docs}"
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(out),
    }
    out["kustomization.yaml"] = header + yaml.safe_dump(kustomization, sort_keys=False)
    return out


def token_kubeconfig(
    cluster_kubeconfig: Path, program: str, path: Path, hours: int = 24 * 365, namespace: str = NAMESPACE
) -> Path:
    """A kubeconfig that acts as a service account of that cluster (a bound token, `hours` long):
    a TiSpace program's in the super cluster, or an operator's in a tenant."""
    token = subprocess.run(
        [
            binaries.path("kubectl"),
            f"--kubeconfig={cluster_kubeconfig}",
            "create",
            "token",
            program,
            f"--namespace={namespace}",
            f"--duration={hours}h",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    creds = kubeconfig.load(cluster_kubeconfig)
    config = kubeconfig.build(name=program, server=creds.server, ca_pem=creds.ca_pem, user=token)
    return kubeconfig.write(path, config)


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.yaml"):
        old.unlink()
    for name, text in files().items():
        (out_dir / name).write_text(text)
