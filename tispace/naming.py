"""Names and ownership marks of tenant objects in the super cluster.

Pure functions: everything the syncer, the manager and vn_agent need to agree on about
which super object belongs to which tenant object. The mapping is injective (two tenants
never share a super name), keeps object names (so StatefulSet pod names and per-pod DNS keep
working) and is reversible through annotations, not by parsing names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, NewType

TenantNamespace = NewType("TenantNamespace", str)
SuperNamespace = NewType("SuperNamespace", str)
RootNamespace = NewType("RootNamespace", str)

GROUP = "tenancy.x-k8s.io"
MAX_NAME = 63
MANAGED_BY = f"{GROUP}/managed-by"
MANAGED_BY_VALUE = "tispace"
MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_VALUE}"

ANN_CLUSTER = f"{GROUP}/cluster"
ANN_UID = f"{GROUP}/uid"
ANN_NAMESPACE = f"{GROUP}/namespace"
ANN_NAME = f"{GROUP}/name"
ANN_VC_NAME = f"{GROUP}/vcname"
ANN_VC_NAMESPACE = f"{GROUP}/vcnamespace"
ANN_OWNER_REFERENCES = f"{GROUP}/ownerReferences"
LABEL_TENANT = f"{GROUP}/tenant"
LABEL_TENANT_NAMESPACE = f"{GROUP}/tenant-namespace"
LABEL_PUBLIC = f"{GROUP}/public"
"""On a super class (storage, priority, runtime, ingress): shared read-only with every tenant."""
PUBLIC_SELECTOR = f"{LABEL_PUBLIC}=true"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Room for "-" + 5 hex in the hashed form, and the root stays shorter than a namespace.
_HASHED_PREFIX = MAX_NAME - 6


class InvalidName(ValueError):
    """A name that cannot be mapped; the message says what to change."""


def is_dns1123_label(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(_DNS1123_LABEL.match(name))


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def root_namespace(vc_namespace: str, vc_name: str, vc_uid: str) -> RootNamespace:
    """`<ns>-<6 hex of sha256(uid)>-<name>`: the tenant's home in the super cluster.

    The uid makes a recreated VirtualCluster of the same name a different tenant, so it
    never inherits the old one's objects.
    """
    root = f"{vc_namespace}-{_hex(vc_uid, 6)}-{vc_name}"
    if len(root) > MAX_NAME:
        raise InvalidName(
            f"root namespace {root!r} would be {len(root)} characters (max {MAX_NAME}): "
            f"the VirtualCluster's namespace and name together must be at most {MAX_NAME - 8} characters"
        )
    return RootNamespace(root)


def vc_root(vc: dict[str, Any]) -> RootNamespace:
    """The root namespace of a VirtualCluster object (as read from the API: it carries its uid)."""
    meta = vc["metadata"]
    return root_namespace(meta["namespace"], meta["name"], meta["uid"])


def super_namespace(root: RootNamespace, tenant_ns: TenantNamespace) -> SuperNamespace:
    """Tenant namespace `N` of root `R` -> `R-N`, hashed to 63 characters when longer.

    The hash covers the full name, so two long names that share a prefix stay distinct.
    """
    full = f"{root}-{tenant_ns}"
    if len(full) <= MAX_NAME:
        return SuperNamespace(full)
    return SuperNamespace(f"{full[:_HASHED_PREFIX].rstrip('-')}-{_hex(full, 5)}")


def owner_annotations(
    *, root: RootNamespace, vc_name: str, vc_namespace: str, tenant_obj: dict[str, Any]
) -> dict[str, str]:
    """The marks that say which tenant object a super object mirrors."""
    meta = tenant_obj["metadata"]
    ann = {
        ANN_CLUSTER: root,
        ANN_UID: meta.get("uid", ""),
        ANN_NAME: meta["name"],
        ANN_VC_NAME: vc_name,
        ANN_VC_NAMESPACE: vc_namespace,
    }
    if meta.get("namespace"):
        ann[ANN_NAMESPACE] = meta["namespace"]
    return ann


def tenant_key(super_obj: dict[str, Any]) -> tuple[RootNamespace, str, str] | None:
    """(root, tenant namespace, tenant name) of a super object, or None when it is not ours.

    A super object without every mark is never treated as a tenant's: the syncer must not
    modify or delete what it did not create.
    """
    meta = super_obj.get("metadata", {})
    if (meta.get("labels") or {}).get(MANAGED_BY) != MANAGED_BY_VALUE:
        return None
    ann = meta.get("annotations") or {}
    if not ann.get(ANN_CLUSTER) or not ann.get(ANN_UID) or not ann.get(ANN_NAME):
        return None
    return RootNamespace(ann[ANN_CLUSTER]), ann.get(ANN_NAMESPACE, ""), ann[ANN_NAME]


def filter_meta(
    values: dict[str, str] | None, *, opaque: tuple[str, ...], transparent: tuple[str, ...] = ()
) -> dict[str, str]:
    """Labels or annotations to copy down: opaque prefixes stay in the tenant, ours never leak in.

    A transparent prefix wins over an opaque one (an admin may opt a sub-prefix back in).
    """
    out = {}
    for k, v in (values or {}).items():
        if k.startswith(f"{GROUP}/"):
            continue
        if any(k.startswith(p) for p in opaque) and not any(k.startswith(p) for p in transparent):
            continue
        out[k] = v
    return out
