"""Where the locally built Kubernetes binaries live, and how to get them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-kube.sh"
NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "coredns")


class MissingBinaries(RuntimeError):
    pass


def bin_dir() -> Path:
    """The cache directory of the pinned versions (`TISPACE_BIN_DIR` overrides it)."""
    if env := os.environ.get("TISPACE_BIN_DIR"):
        return Path(env)
    out = subprocess.run(["bash", str(SCRIPT), "--print-bin"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def path(name: str) -> str:
    """Absolute path of one binary; says how to build it when it is missing."""
    p = bin_dir() / name
    if not p.exists():
        raise MissingBinaries(f"{p} is missing: run `bash {SCRIPT}` (or `make install`) to build it")
    return str(p)


def kwok_kustomize() -> Path:
    """KWOK's stage and CRD manifests, copied next to the binaries by the install script."""
    return bin_dir().parent / "kwok-kustomize"


def ensure() -> Path:
    """Build whatever is missing (seconds when everything is cached)."""
    subprocess.run(["bash", str(SCRIPT)], check=True, stdout=subprocess.DEVNULL)
    return bin_dir()
