"""What the portal's forms mean: validation, quota arithmetic and the objects they become.

Pure functions; the handlers in `web` do the I/O. Every limit is checked here, server-side,
whatever the browser sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from portal.settings import Quota
from tispace import naming, tenants

MANAGED_BY = "app.kubernetes.io/managed-by"
PORTAL = "tispace-portal"
INSTANCE = "app.kubernetes.io/instance"
INSTANCE_NAMESPACE = "default"
"""Dev instances live in the tenant's `default` namespace, where a developer looks first."""
MAX_PODS = 1000
MAX_STORAGE_GIB = 10_000
_IMAGE = re.compile(r"^[a-z0-9]+([._/:@-][a-zA-Z0-9_]+)*$")
_SSH_KEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n]*)?$")
_SUFFIX: dict[str, Decimal | int] = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_INSTANCE_NAME = 52
"""A StatefulSet's pods carry `controller-revision-hash: <name>-<10 characters>`, a 63-character label."""
GIB = 2**30


class FormError(ValueError):
    """Input the portal refuses; the message says what to change."""


@dataclass(frozen=True)
class ClusterRequest:
    name: str
    version: str
    max_pods: int
    max_storage_gib: int


@dataclass(frozen=True)
class InstanceRequest:
    name: str
    image: str
    cpu: Decimal
    memory_gib: int
    disk_gib: int
    ssh_key: str = ""


@dataclass(frozen=True)
class Usage:
    """Dev instance resources, summed."""

    cpu: Decimal = Decimal(0)
    memory_gib: float = 0
    disk_gib: float = 0
    count: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.cpu + other.cpu,
            self.memory_gib + other.memory_gib,
            self.disk_gib + other.disk_gib,
            self.count + other.count,
        )


def max_cluster_name(namespace: str) -> int:
    """The root namespace `<ns>-<6 hex>-<name>` must stay a namespace name (63 characters)."""
    return naming.MAX_NAME - len(namespace) - 8


def _name(value: str, what: str, max_len: int) -> str:
    name = value.strip()
    if not name:
        raise FormError(f"{what} name is empty")
    if len(name) > max_len:
        raise FormError(f"{what} name {name!r} is {len(name)} characters; at most {max_len}")
    if not naming.is_dns1123_label(name):
        raise FormError(
            f"{what} name {name!r} is invalid: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _int(form: Mapping[str, str], key: str, what: str, low: int, high: int) -> int:
    raw = form.get(key, "").strip()
    try:
        value = int(raw)
    except ValueError:
        raise FormError(f"{what} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise FormError(f"{what} must be between {low} and {high}, not {value}")
    return value


def parse_cluster(form: Mapping[str, str], *, namespace: str, versions: Iterable[str]) -> ClusterRequest:
    name = _name(form.get("name", ""), "cluster", max_cluster_name(namespace))
    version = form.get("version", "")
    known = sorted(versions)
    if version not in known:
        raise FormError(f"version {version!r} is not offered; choose one of {', '.join(known) or '(none)'}")
    return ClusterRequest(
        name=name,
        version=version,
        max_pods=_int(form, "max_pods", "Max pods", 1, MAX_PODS),
        max_storage_gib=_int(form, "max_storage_gib", "Max storage (GiB)", 1, MAX_STORAGE_GIB),
    )


def parse_instance(form: Mapping[str, str], *, default_image: str) -> InstanceRequest:
    name = _name(form.get("name", ""), "instance", MAX_INSTANCE_NAME)
    if not _DNS1035.match(name):
        raise FormError(
            f"instance name {name!r} must start with a letter (it also names the instance's Service)"
        )
    image = form.get("image", "").strip() or default_image
    if len(image) > 255 or not _IMAGE.match(image):
        raise FormError(f"image {image!r} is not an image reference (like debian:12 or registry/team/dev:1)")
    raw_cpu = form.get("cpu", "").strip()
    try:
        cpu = Decimal(raw_cpu)
    except InvalidOperation:
        raise FormError(f"CPU must be a number of cores like 2 or 0.5, not {raw_cpu!r}") from None
    if not cpu.is_finite() or cpu < Decimal("0.1") or cpu > 64 or cpu != cpu.quantize(Decimal("0.1")):
        raise FormError(f"CPU must be between 0.1 and 64 cores in steps of 0.1, not {raw_cpu}")
    ssh_key = " ".join(form.get("ssh_key", "").split())
    if ssh_key and not _SSH_KEY.match(ssh_key):
        raise FormError("SSH public key must be one line like `ssh-ed25519 AAAA... you@laptop`")
    return InstanceRequest(
        name=name,
        image=image,
        cpu=cpu.quantize(Decimal("0.1")),
        memory_gib=_int(form, "memory_gib", "Memory (GiB)", 1, 512),
        disk_gib=_int(form, "disk_gib", "Disk (GiB)", 1, 4096),
        ssh_key=ssh_key,
    )


def check_cluster_quota(quota: Quota, owned: int) -> None:
    if owned >= quota.clusters:
        raise FormError(
            f"quota: you have {owned} of at most {quota.clusters} clusters; delete one to create another"
        )


def check_instance_quota(quota: Quota, used: Usage, req: InstanceRequest) -> None:
    """Refuse what would take the owner's instances, in all their clusters, over any limit."""
    over = []
    if used.cpu + req.cpu > Decimal(str(quota.instance_cpu)):
        over.append(f"CPU {used.cpu + req.cpu} of {quota.instance_cpu:g} cores")
    if used.memory_gib + req.memory_gib > quota.instance_memory_gib:
        over.append(f"memory {used.memory_gib + req.memory_gib:g} of {quota.instance_memory_gib} GiB")
    if used.disk_gib + req.disk_gib > quota.instance_disk_gib:
        over.append(f"disk {used.disk_gib + req.disk_gib:g} of {quota.instance_disk_gib} GiB")
    if over:
        raise FormError(
            "quota: this instance would bring your dev instances to "
            + ", ".join(over)
            + "; delete or shrink an instance first"
        )


def virtual_cluster(req: ClusterRequest, *, owner: str, namespace: str) -> dict[str, Any]:
    """Size limits become the ResourceQuota of each of the tenant's super namespaces."""
    hard = {"pods": str(req.max_pods), "requests.storage": f"{req.max_storage_gib}Gi"}
    vc = tenants.virtual_cluster(
        req.name, namespace, version=req.version, owner=owner, resourceQuota={"hard": hard}
    )
    vc["metadata"]["labels"] = {MANAGED_BY: PORTAL}
    return vc


def instance_objects(req: InstanceRequest, *, runtime_class: str, storage_class: str) -> list[dict[str, Any]]:
    """A StatefulSet of one (a stable name and its own Ceph volume) and a Service for SSH."""
    labels = {MANAGED_BY: PORTAL, INSTANCE: req.name, "app.kubernetes.io/name": "devbox"}
    selector = {INSTANCE: req.name}
    cpu = f"{int(req.cpu * 1000)}m"
    resources = {"cpu": cpu, "memory": f"{req.memory_gib}Gi"}
    container: dict[str, Any] = {
        "name": "devbox",
        "image": req.image,
        # Docker and systemd inside need it; the Kata VM, not the container, is the boundary.
        "securityContext": {"privileged": True},
        "ports": [{"name": "ssh", "containerPort": 22}],
        "resources": {"requests": resources, "limits": resources},
        "volumeMounts": [{"name": "home", "mountPath": "/home"}],
    }
    if req.ssh_key:
        container["env"] = [{"name": "SSH_AUTHORIZED_KEYS", "value": req.ssh_key}]
    pod_spec: dict[str, Any] = {"containers": [container]}
    if runtime_class:
        pod_spec["runtimeClassName"] = runtime_class
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": req.name, "namespace": INSTANCE_NAMESPACE, "labels": labels},
        "spec": {"selector": selector, "ports": [{"name": "ssh", "port": 22, "targetPort": "ssh"}]},
    }
    claim: dict[str, Any] = {
        "metadata": {"name": "home"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{req.disk_gib}Gi"}},
        },
    }
    if storage_class:
        claim["spec"]["storageClassName"] = storage_class
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": req.name, "namespace": INSTANCE_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "serviceName": req.name,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            "volumeClaimTemplates": [claim],
            # Deleting the instance deletes its disk: nothing is left behind, nothing is billed.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
        },
    }
    return [service, statefulset]


def _amount(value: str | int | float) -> Decimal:
    """A quantity someone else wrote: what cannot be read counts as nothing (the API server checked
    it; only this parser may be behind)."""
    try:
        return quantity(value)
    except ValueError:
        return Decimal(0)


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity ("500m", "4Gi", "1.5", "2e3") as a number."""
    text = str(value).strip()
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", text)
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {value!r}")
    return Decimal(match.group(1)) * Decimal(_SUFFIX[match.group(2)])


def instance_usage(statefulset: dict[str, Any]) -> Usage:
    """What one StatefulSet reserves: requests (or limits) of its containers, its claims' storage."""
    spec = statefulset.get("spec") or {}
    replicas = spec.get("replicas", 1)
    cpu, memory = Decimal(0), Decimal(0)
    for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        want = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        cpu += _amount(want.get("cpu", 0))
        memory += _amount(want.get("memory", 0))
    disk = sum(
        (
            _amount(((t.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", 0))
            for t in spec.get("volumeClaimTemplates") or []
        ),
        Decimal(0),
    )
    return Usage(
        cpu=cpu * replicas,
        memory_gib=float(memory * replicas / GIB),
        disk_gib=float(disk * replicas / GIB),
        count=1,
    )


def owner_usage(by_cluster: dict[str, list[dict[str, Any]]]) -> Usage:
    """What an owner's dev instances reserve, in all their clusters."""
    return total(instance_usage(s) for found in by_cluster.values() for s in found)


def image_of(statefulset: dict[str, Any]) -> str:
    containers = (((statefulset.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
    return str((containers or [{}])[0].get("image", "-"))


def total(usages: Iterable[Usage]) -> Usage:
    return sum(usages, Usage())


def pod_usage(pods: Iterable[dict[str, Any]]) -> tuple[int, Decimal, float]:
    """(pods, CPU cores, memory GiB) requested by running or pending pods: the admin view's usage."""
    count, cpu, memory = 0, Decimal(0), Decimal(0)
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        count += 1
        for c in (pod.get("spec") or {}).get("containers") or []:
            requests = (c.get("resources") or {}).get("requests") or {}
            cpu += _amount(requests.get("cpu", 0))
            memory += _amount(requests.get("memory", 0))
    return count, cpu, float(memory / GIB)


def gib(value: float) -> str:
    return f"{math.ceil(value * 10) / 10:g} GiB"
