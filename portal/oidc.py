"""OpenID Connect login: authorization code flow with PKCE (RFC 7636) against any provider.

Building the request and checking the ID token are pure functions; `Provider` does the HTTP
(discovery, code exchange, signing keys).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
SCOPES = "openid email profile groups"


class LoginError(Exception):
    """A login that must not go on; the message is shown to the user."""


@dataclass(frozen=True)
class Pending:
    """What the portal keeps between sending the browser away and its return."""

    state: str
    nonce: str
    verifier: str
    next: str = "/"


@dataclass(frozen=True)
class Identity:
    owner: str
    name: str
    groups: tuple[str, ...]


def new_pending(next_path: str) -> Pending:
    return Pending(
        state=secrets.token_urlsafe(24),
        nonce=secrets.token_urlsafe(24),
        verifier=secrets.token_urlsafe(48),
        next=next_path,
    )


def challenge(verifier: str) -> str:
    """S256 code challenge: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(endpoint: str, *, client_id: str, redirect_uri: str, pending: Pending) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": SCOPES,
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": challenge(pending.verifier),
        "code_challenge_method": "S256",
    }
    sep = "&" if "?" in endpoint else "?"
    return f"{endpoint}{sep}{urlencode(query)}"


def identity(claims: dict[str, Any], *, nonce: str, owner_claim: str, groups_claim: str) -> Identity:
    """Who logged in, from ID token claims whose signature, issuer, audience and expiry are checked."""
    if claims.get("nonce") != nonce:
        raise LoginError("the provider's answer does not belong to this login (nonce mismatch); log in again")
    owner = claims.get(owner_claim)
    if not isinstance(owner, str) or not owner:
        raise LoginError(f"the provider sent no {owner_claim!r} claim; ask an admin to map one")
    if owner_claim == "email" and claims.get("email_verified") is False:
        raise LoginError(f"the provider says {owner} is not verified; verify it there and log in again")
    groups = claims.get(groups_claim) or []
    if not isinstance(groups, list):
        groups = [groups]
    return Identity(
        owner=owner,
        name=str(claims.get("name") or owner),
        groups=tuple(str(g) for g in groups),
    )


class Provider:
    """One OIDC provider, discovered from its issuer URL."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, ca: ssl.SSLContext | None) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ca if ca else True),
            timeout=aiohttp.ClientTimeout(total=15),
        )
        self._meta: dict[str, Any] = {}
        self._keys: jwt.PyJWKSet | None = None

    async def close(self) -> None:
        await self._http.close()

    async def metadata(self) -> dict[str, Any]:
        if not self._meta:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                async with self._http.get(url) as resp:
                    resp.raise_for_status()
                    meta = await resp.json(content_type=None)
            except aiohttp.ClientError as e:
                raise LoginError(f"the identity provider at {self.issuer} is unreachable ({e})") from e
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise LoginError(f"the provider at {url} calls itself {meta.get('issuer')!r}")
            self._meta = meta
        return self._meta

    async def authorize_url(self, redirect_uri: str, pending: Pending) -> str:
        meta = await self.metadata()
        return authorize_url(
            meta["authorization_endpoint"],
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            pending=pending,
        )

    async def exchange(self, code: str, redirect_uri: str, pending: Pending) -> dict[str, Any]:
        """Trade the code (with the PKCE verifier) for tokens and return the checked ID token claims."""
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.verifier,
        }
        auth = aiohttp.BasicAuth(self.client_id, self._secret)
        try:
            async with self._http.post(meta["token_endpoint"], data=form, auth=auth) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    detail = body.get("error_description") or body.get("error") or resp.status
                    raise LoginError(f"the provider refused the login code ({detail}); log in again")
        except aiohttp.ClientError as e:
            raise LoginError(f"the identity provider at {self.issuer} is unreachable ({e})") from e
        token = body.get("id_token")
        if not token:
            raise LoginError(
                "the provider returned no ID token; is the `openid` scope allowed for this client?"
            )
        return await self.verify(token)

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = await self._key(kid)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.client_id,
                issuer=(await self.metadata())["issuer"],
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                leeway=30,
            )
        except jwt.PyJWTError as e:
            raise LoginError(f"the provider's ID token failed verification ({e}); log in again") from e
        return claims

    async def _key(self, kid: str | None) -> Any:
        """The signing key named `kid`; the key set is fetched again once when the key is new (rotation)."""
        for refresh in (False, True):
            if self._keys is None or refresh:
                async with self._http.get((await self.metadata())["jwks_uri"]) as resp:
                    resp.raise_for_status()
                    self._keys = jwt.PyJWKSet.from_dict(await resp.json(content_type=None))
            for k in self._keys.keys:
                if kid is None or k.key_id == kid:
                    return k.key
        raise LoginError(f"the provider signed with an unknown key {kid!r}")
