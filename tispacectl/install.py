"""`tispace install` and `uninstall`: the config/ kustomize tree on a real super cluster.

Install renders an overlay, applies the CRDs first (the rest names them), makes vn_agent's serving
certificate when there is none, applies everything else server-side and waits for every workload
to roll out. Uninstall deletes the VirtualClusters first (the manager tears their control planes
down), then exactly the objects the overlay renders, CRDs last.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tispace import binaries, pki, rbac
from tispacectl import localcluster

CONFIG = Path(__file__).resolve().parents[1] / "config"
PART_OF = "app.kubernetes.io/part-of"
VN_AGENT_TLS = "vn-agent-tls"
RECORD = "tispace-install"
"""ConfigMap in tispace-system listing what the install made (and only that is uninstalled)."""
Progress = Callable[[str], None]


class InstallError(RuntimeError):
    pass


def overlays() -> list[str]:
    return sorted(p.name for p in (CONFIG / "overlays").iterdir() if (p / "kustomization.yaml").exists())


def render(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects, as `kubectl kustomize` renders them."""
    if overlay not in overlays():
        raise InstallError(
            f"unknown overlay {overlay!r}: use one of {', '.join(overlays())} (in {CONFIG}/overlays)"
        )
    return render_dir(CONFIG / "overlays" / overlay)


def render_dir(path: Path) -> list[dict[str, Any]]:
    """A kustomization's objects (an overlay, or config/portal)."""
    overlay = path.name
    out = subprocess.run(
        [binaries.path("kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise InstallError(f"kustomize {overlay}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def vn_agent_tls() -> dict[str, Any]:
    """vn_agent's serving certificate (tenant API servers do not verify kubelets unless told to)."""
    ca = pki.new_ca("tispace-vn-agent-ca")
    leaf = pki.issue(ca, "vn-agent", hosts=("vn-agent", "localhost"), server=True)
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": VN_AGENT_TLS, "namespace": rbac.NAMESPACE, "labels": {PART_OF: "tispace"}},
        "data": {"tls.crt": b64(leaf.cert_pem + ca.cert_pem), "tls.key": b64(leaf.key_pem)},
    }


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    try:
        return localcluster.kubectl(kubeconfig, *args, stdin=stdin, timeout=timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        raise InstallError(str(e)) from e


def _apply(kubeconfig: Path, objs: list[dict[str, Any]]) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    _kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=tispace-install",
        "-f",
        "-",
        stdin=doc,
    )


def workloads(objs: list[dict[str, Any]]) -> list[str]:
    return [
        f"{o['kind'].lower()}/{o['metadata']['name']}"
        for o in objs
        if o["kind"] in ("Deployment", "DaemonSet")
    ]


def key(obj: dict[str, Any]) -> str:
    """`apiVersion/kind/namespace/name`: how the install record names an object."""
    meta = obj["metadata"]
    return f"{obj['apiVersion']}/{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def _existing(kubeconfig: Path, objs: list[dict[str, Any]]) -> set[str]:
    if not objs:
        return set()
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    out = _kubectl(kubeconfig, "get", "-f", "-", "--ignore-not-found", "-o", "json", stdin=doc)
    items = json.loads(out)["items"] if out.strip() else []
    return {key(o) for o in items}


def _record(kubeconfig: Path) -> dict[str, Any] | None:
    out = _kubectl(
        kubeconfig, "get", "configmap", RECORD, "-n", rbac.NAMESPACE, "--ignore-not-found", "-o", "json"
    )
    return json.loads(out) if out.strip() else None


def install(kubeconfig: Path, overlay: str, progress: Progress, timeout: float = 300) -> list[dict[str, Any]]:
    """Apply the overlay and wait for its workloads; what did not exist before is recorded, so
    `uninstall` removes that and nothing else. Returns what was applied."""
    objs = render(overlay)
    crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    rest = [o for o in objs if o["kind"] != "CustomResourceDefinition"]
    made = {key(o) for o in crds} - _existing(kubeconfig, crds)
    progress(f"applying {len(crds)} CRDs")
    _apply(kubeconfig, crds)
    names = [f"crd/{c['metadata']['name']}" for c in crds]
    _kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", *names)
    tls = vn_agent_tls()
    made |= {key(o) for o in [*rest, tls]} - _existing(kubeconfig, [*rest, tls])
    progress(f"applying {len(rest)} objects of overlay {overlay}")
    _apply(kubeconfig, [o for o in rest if o["kind"] == "Namespace"])
    if key(tls) in made:
        progress(f"making vn_agent's serving certificate (secret {rbac.NAMESPACE}/{VN_AGENT_TLS})")
        _apply(kubeconfig, [tls])
    previous = json.loads(((_record(kubeconfig) or {}).get("data") or {}).get("made", "[]"))
    record = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": RECORD, "namespace": rbac.NAMESPACE, "labels": {PART_OF: "tispace"}},
        "data": {"overlay": overlay, "made": json.dumps(sorted(made | set(previous)))},
    }
    _apply(kubeconfig, [*rest, record])
    for w in workloads(objs):
        progress(f"waiting for {w} to roll out")
        _kubectl(
            kubeconfig,
            "rollout",
            "status",
            w,
            "-n",
            rbac.NAMESPACE,
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )
    return objs


def uninstall(kubeconfig: Path, progress: Progress, timeout: float = 300) -> list[str]:
    """VirtualClusters first (the manager tears their control planes down), then exactly what the
    install made, CRDs last and waited for (the apiserver deletes their remaining objects first), so
    the API is gone on return; namespaces finish asynchronously. Returns the keys deleted."""
    rec = _record(kubeconfig)
    if rec is None:
        raise InstallError(
            f"no install record (configmap {rbac.NAMESPACE}/{RECORD}): nothing removed; "
            "was TiSpace installed with `tispace install` on this cluster?"
        )
    made: list[str] = json.loads(rec["data"]["made"])
    vcs = _kubectl(kubeconfig, "get", "virtualclusters", "-A", "-o", "name", "--ignore-not-found").split()
    if vcs:
        progress(f"deleting {len(vcs)} VirtualClusters and waiting for their control planes to go")
        _kubectl(
            kubeconfig,
            "delete",
            "virtualclusters",
            "--all",
            "-A",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )
    rank = {"Namespace": 1, "CustomResourceDefinition": 2}
    order = sorted(made, key=lambda k: rank.get(k.split("/")[-3], 0))
    progress(f"deleting the {len(order)} objects the install made")
    for k in [*order, f"v1/ConfigMap/{rbac.NAMESPACE}/{RECORD}"]:
        *api_version, kind, ns, name = k.split("/")
        group = api_version[0] if len(api_version) == 2 else ""
        resource = kind.lower() + (f".{group}" if group else "")
        wait = kind == "CustomResourceDefinition"
        _kubectl(
            kubeconfig,
            "delete",
            resource,
            name,
            *(["-n", ns] if ns else []),
            "--ignore-not-found",
            f"--wait={str(wait).lower()}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )
    return order
