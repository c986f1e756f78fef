"""A local OpenID Connect provider (scripts/oidc-provider, built from zitadel/oidc's Go module) with
static users: the portal's login for `tispace up` and the tests, as Dex would be in production."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tispace import private, procs

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-oidc.sh"
ADMIN_GROUP = "tispace-admins"


@dataclass(frozen=True)
class User:
    username: str
    password: str
    email: str
    name: str
    groups: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Client:
    id: str
    secret: str
    redirect_uris: list[str]


def binary() -> str:
    """Build the provider when missing or changed (well under a second when cached)."""
    out = subprocess.run(["bash", str(SCRIPT)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def sample_users(passwords: dict[str, str] | None = None) -> list[User]:
    """A developer and an admin; passwords are random unless given (kept in the state dir)."""
    pw = passwords or {}
    return [
        User(
            "developer",
            pw.get("developer") or secrets.token_urlsafe(9),
            "developer@example.com",
            "Dev Eloper",
        ),
        User(
            "admin", pw.get("admin") or secrets.token_urlsafe(9), "admin@example.com", "Ad Min", [ADMIN_GROUP]
        ),
    ]


def start(work_dir: Path, users: list[User], clients: list[Client], port: int = 0) -> procs.Component:
    """Run the provider on 127.0.0.1 (issuer http://127.0.0.1:<port>) until stopped."""
    port = port or procs.free_port()
    config: dict[str, Any] = {
        "clients": [asdict(c) for c in clients],
        "users": [asdict(u) for u in users],
    }
    path = private.write(work_dir / "oidc-provider.json", json.dumps(config, indent=1))
    argv = [binary(), f"--listen=127.0.0.1:{port}", f"--config={path}"]
    issuer = f"http://127.0.0.1:{port}"
    comp = procs.Component(
        procs.spawn("oidc-provider", argv, work_dir / "oidc-provider.log"),
        port,
        f"{issuer}/.well-known/openid-configuration",
    )
    procs.wait_healthy(comp, timeout=30)
    return comp


def issuer(comp: procs.Component) -> str:
    return f"http://127.0.0.1:{comp.port}"
