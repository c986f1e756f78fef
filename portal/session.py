"""Sessions in a cookie: JSON sealed with Fernet (AES + HMAC), so the browser can neither read nor
forge it, and its timestamp bounds its age. No server-side store: any replica with the key serves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from tispace import private

COOKIE = "tispace_session"
LOGIN_COOKIE = "tispace_login"
LOGIN_SECONDS = 600


def key_file(path: Path) -> bytes:
    """The Fernet key in `path`, made (mode 0600) when missing: every replica must share it."""
    if not path.exists():
        private.write(path, Fernet.generate_key())
    return path.read_bytes().strip()


class Expired(Exception):
    """Genuine but too old: the user logs in again."""


class Invalid(Exception):
    """Not ours (forged, corrupted, or sealed with another key)."""


class Sealer:
    """Seals for one purpose (a cookie's name): a login cookie never opens as a session, nor back."""

    def __init__(self, key: bytes, purpose: str) -> None:
        self._fernet = Fernet(key)
        self.purpose = purpose

    def seal(self, data: dict[str, Any], now: float | None = None) -> str:
        payload = orjson.dumps({"for": self.purpose, "data": data})
        at = int(time.time() if now is None else now)
        return self._fernet.encrypt_at_time(payload, at).decode()

    def open(self, token: str, max_age: float, now: float | None = None) -> dict[str, Any]:
        at = int(time.time() if now is None else now)
        try:
            sealed = orjson.loads(self._fernet.decrypt_at_time(token, int(max_age), at))
        except InvalidToken:
            try:
                self._fernet.extract_timestamp(token)  # verifies the MAC, ignores age
            except InvalidToken:
                raise Invalid() from None
            raise Expired() from None
        if not isinstance(sealed, dict) or sealed.get("for") != self.purpose:
            raise Invalid()
        data: dict[str, Any] = sealed["data"]
        return data
