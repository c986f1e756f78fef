"""The TiSpace API: VirtualCluster and ClusterVersion, as CRDs built from one schema.

`config/crd/*.yaml` are generated from here (`python -m tispace.api config/crd`) and a test
checks they match, so the YAML an admin applies and the fields the code reads cannot drift.
Field names follow the retired kubernetes-sigs VirtualCluster API, so its users can move over.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from tispace.naming import GROUP

VERSION = "v1alpha1"


class Phase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    UPDATING = "Updating"
    ERROR = "Error"
    TERMINATING = "Terminating"


PROVISIONERS = ("process", "native", "import")
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
DEFAULT_PKI_DAYS = 365


def _s(description: str, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **kw}


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": {"type": "string"}}


_CONDITION = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
    },
}

_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_PATTERN = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"
"""A Kubernetes quantity, as upstream CRDs validate resource.Quantity: nonsense is refused when the
VirtualCluster is written, not later by the super cluster's quota admission."""

_QUANTITIES = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,  # beside anyOf, as for resource.Quantity: a structural schema
        "x-kubernetes-int-or-string": True,
    },
}

NODE_MODES = ("onDemand", "selector")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

VIRTUALCLUSTER_SPEC = {
    "type": "object",
    "required": ["clusterVersionName"],
    "properties": {
        "clusterVersionName": _s("ClusterVersion that templates this tenant's control plane.", minLength=1),
        "clusterDomain": _s(
            "DNS domain of the tenant's services.",
            default=DEFAULT_CLUSTER_DOMAIN,
            pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        ),
        "pkiExpireDays": {
            "type": "integer",
            "minimum": 1,
            "maximum": 3650,
            "default": DEFAULT_PKI_DAYS,
            "description": "Validity of the tenant's certificates.",
        },
        "transparentMetaPrefixes": _strings("Label/annotation prefixes copied down even when opaque."),
        "opaqueMetaPrefixes": _strings("Label/annotation prefixes never copied to the super cluster."),
        "serviceCidr": _s("Service CIDR of the tenant API server (defaults to the super cluster's)."),
        "provisioner": _s("How the control plane runs.", enum=list(PROVISIONERS), default="process"),
        "owner": _s("Identity of the developer who owns this cluster."),
        "importKubeconfigSecret": _s("For provisioner=import: secret (key `kubeconfig`) in this namespace."),
        "resourceQuota": {
            "type": "object",
            "description": "ResourceQuota hard limits for every super namespace of this tenant.",
            "properties": {"hard": _QUANTITIES},
        },
        "optInKinds": {
            "type": "array",
            "description": "Kinds synced down only when asked for (Ingress needs a shared IngressClass).",
            "items": {"type": "string", "enum": ["Ingress"]},
            "x-kubernetes-list-type": "set",
        },
        "nodes": {
            "type": "object",
            "description": "Which super nodes the tenant sees as its nodes. onDemand: a node appears "
            "when one of the tenant's pods lands on it and goes when none is left. selector: every super "
            "node matching the selector is a node from the start (an empty selector: all), as conformance "
            "tests and charts that read capacity or zones expect. Unset: the syncer's --nodes default.",
            "properties": {
                "mode": _s("onDemand or selector.", enum=list(NODE_MODES)),
                "selector": {
                    "type": "object",
                    "description": "A label selector over super nodes (mode selector).",
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "matchExpressions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["key", "operator"],
                                "properties": {
                                    "key": _s("Label key.", minLength=1),
                                    "operator": _s("How the key is matched.", enum=list(SELECTOR_OPERATORS)),
                                    "values": {"type": "array", "items": {"type": "string"}},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.operator in ['Exists', 'DoesNotExist'] ? "
                                        "!has(self.values) || size(self.values) == 0 : "
                                        "has(self.values) && size(self.values) > 0",
                                        "message": "In and NotIn take values, Exists and DoesNotExist none",
                                    }
                                ],
                            },
                        },
                    },
                },
            },
        },
        "syncConcurrency": {
            "type": "integer",
            "minimum": 0,
            "maximum": 1000,
            "default": 0,
            "description": "Most of this tenant's objects the syncer reconciles at once "
            "(0: the syncer's --tenant-concurrency).",
        },
        "syncRate": {
            "type": "number",
            "minimum": 0,
            "maximum": 10000,
            "default": 0,
            "description": "Most of this tenant's objects the syncer reconciles per second (0: no limit).",
        },
        "syncWeight": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "default": 1,
            "description": "Share of the syncer's downward workers under contention.",
        },
    },
    "x-kubernetes-validations": [
        {
            "rule": "self.provisioner != 'import' || has(self.importKubeconfigSecret)",
            "message": "provisioner import needs importKubeconfigSecret",
        },
    ],
}

VIRTUALCLUSTER_STATUS = {
    "type": "object",
    "properties": {
        "phase": _s("Lifecycle phase.", enum=[p.value for p in Phase]),
        "reason": _s("Why the phase is what it is (set on Error)."),
        "message": _s("Human-readable detail."),
        "clusterNamespace": _s("Root namespace of the tenant in the super cluster."),
        "apiServerEndpoint": _s("URL of the tenant API server."),
        "dnsEndpoint": _s("host:port of the tenant DNS server, where the manager's host can reach it."),
        "observedGeneration": {"type": "integer", "format": "int64"},
        "conditions": {
            "type": "array",
            "items": _CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    },
}

_COMPONENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "image": _s("Container image (provisioner native)."),
        "replicas": {"type": "integer", "minimum": 1, "default": 1},
        "extraArgs": _strings("Extra command-line flags."),
        "resources": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}

CLUSTERVERSION_SPEC = {
    "type": "object",
    "required": ["kubernetesVersion"],
    "properties": {
        "kubernetesVersion": _s(
            "Version of the tenant control plane, e.g. v1.36.3.", pattern=r"^v\d+\.\d+\.\d+$"
        ),
        "etcd": {
            **_COMPONENT,
            "properties": {
                **_COMPONENT["properties"],
                "shared": {
                    "type": "boolean",
                    "default": True,
                    "description": "Share the super etcd under a per-tenant prefix instead of running one.",
                },
                "storageSize": _s("Volume size of a dedicated etcd.", default="10Gi"),
            },
        },
        "apiServer": _COMPONENT,
        "controllerManager": _COMPONENT,
        "dns": {
            **_COMPONENT,
            "description": "The tenant DNS add-on (CoreDNS) the native provisioner installs.",
        },
    },
}


def _crd(
    kind: str,
    plural: str,
    scope: str,
    spec: dict[str, Any],
    status: dict[str, Any] | None,
    columns: list[dict[str, Any]],
    short: list[str],
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": props}},
        "additionalPrinterColumns": columns,
    }
    if status is not None:
        props["status"] = status
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
                "shortNames": short,
                "categories": ["tispace"],
            },
            "versions": [version],
        },
    }


def crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD manifest."""
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    return {
        "virtualclusters.yaml": _crd(
            "VirtualCluster",
            "virtualclusters",
            "Namespaced",
            VIRTUALCLUSTER_SPEC,
            VIRTUALCLUSTER_STATUS,
            [
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Version", "type": "string", "jsonPath": ".spec.clusterVersionName"},
                {"name": "Owner", "type": "string", "jsonPath": ".spec.owner"},
                {
                    "name": "Namespace",
                    "type": "string",
                    "jsonPath": ".status.clusterNamespace",
                    "priority": 1,
                },
                age,
            ],
            ["vc"],
        ),
        "clusterversions.yaml": _crd(
            "ClusterVersion",
            "clusterversions",
            "Cluster",
            CLUSTERVERSION_SPEC,
            None,
            [{"name": "Kubernetes", "type": "string", "jsonPath": ".spec.kubernetesVersion"}, age],
            ["cv"],
        ),
    }


def render(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, crd in crds().items():
        (out_dir / name).write_text(dump(crd))


def dump(obj: dict[str, Any]) -> str:
    return (
        "# Generated by `python -m tispace.api config/crd`; edit tispace/api.py instead.\n"
        + yaml.safe_dump(obj, sort_keys=False, width=120)
    )


if __name__ == "__main__":
    render(Path(sys.argv[1]))
