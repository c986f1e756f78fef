"""Kubeconfig files: written with embedded credentials, read back for the client layer."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tispace import pki, private


@dataclass(frozen=True)
class Credentials:
    """What a client needs to reach one API server."""

    server: str
    ca_pem: bytes
    cert_pem: bytes = b""
    key_pem: bytes = b""
    token: str = ""
    token_file: str = ""
    """A token read afresh for every request (a pod's service-account token, which the kubelet rotates)."""

    def bearer(self) -> str:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token


def build(*, name: str, server: str, ca_pem: bytes, user: pki.CertKey | str) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one current context, all named `name`.

    `user` is a client certificate, or a bearer token (a service account's, say).
    """
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    creds = (
        {"token": user}
        if isinstance(user, str)
        else {"client-certificate-data": b64(user.cert_pem), "client-key-data": b64(user.key_pem)}
    )
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}
        ],
        "users": [{"name": name, "user": creds}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def write(path: Path, config: dict[str, Any]) -> Path:
    """Write with mode 0600: a kubeconfig is a credential."""
    return private.write(path, dump(config))


def _data(entry: dict[str, Any], key: str, base: Path) -> bytes:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base / entry[key]).read_bytes()
    return b""


def credentials(config: dict[str, Any], base: Path = Path(".")) -> Credentials:
    """Credentials of the current context; file references resolve relative to `base`."""
    ctx_name = config.get("current-context")
    contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
    if ctx_name not in contexts:
        raise ValueError(f"kubeconfig has no current context (current-context={ctx_name!r})")
    ctx = contexts[ctx_name]
    cluster = {c["name"]: c["cluster"] for c in config.get("clusters", [])}[ctx["cluster"]]
    user = {u["name"]: u["user"] for u in config.get("users", [])}.get(ctx.get("user", ""), {})
    return Credentials(
        server=cluster["server"].rstrip("/"),
        ca_pem=_data(cluster, "certificate-authority", base),
        cert_pem=_data(user, "client-certificate", base),
        key_pem=_data(user, "client-key", base),
        token=user.get("token", ""),
        token_file=str(base / user["tokenFile"]) if user.get("tokenFile") else "",
    )


def load(path: Path) -> Credentials:
    return credentials(yaml.safe_load(path.read_text()), base=path.parent)
