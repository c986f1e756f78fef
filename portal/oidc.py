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
    if owner_claim == "email" and claims.get("email_verified") is not True:
        raise LoginError(
            f"the provider does not say {owner} is verified; verify it there, or have the portal "
            "use another claim (--owner-claim)"
        )
    groups = claims.get(groups_claim) or []
    if not isinstance(groups, list):
        groups = [groups]
    return Identity(
        owner=owner,
        name=str(claims.get("name") or owner),
        groups=tuple(str(g) for g in groups),
    )


def check_allowed(who: Identity, *, groups: tuple[str, ...], domains: tuple[str, ...]) -> None:
    """Only members of an allowed group or owners in an allowed domain (when any are configured):
    a provider like Google authenticates the whole world."""
    if not groups and not domains:
        return
    if set(groups) & set(who.groups):
        return
    if who.owner.rpartition("@")[2].lower() in {d.lower() for d in domains}:
        return
    raise LoginError(f"{who.owner} may not use this portal; ask an admin to add you to an allowed group")


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
            meta = await self._get_json(url)
            if str(meta.get("issuer", "")).rstrip("/") != self.issuer:
                raise LoginError(f"the provider at {url} calls itself {meta.get('issuer')!r}")
            missing = {"authorization_endpoint", "token_endpoint", "jwks_uri"} - set(meta)
            if missing:
                raise LoginError(f"the provider's {url} names no {', '.join(sorted(missing))}")
            self._meta = meta
        return self._meta

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http.get(url) as resp:
                resp.raise_for_status()
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise LoginError(f"the identity provider at {self.issuer} did not answer ({url}: {e})") from e
        if not isinstance(body, dict):
            raise LoginError(f"the identity provider's {url} is not a JSON object")
        return body

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
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise LoginError(f"the identity provider at {self.issuer} did not answer the login ({e})") from e
        if not isinstance(body, dict):
            raise LoginError("the provider's token endpoint did not answer with a JSON object")
        if status != 200:
            detail = body.get("error") or status
            raise LoginError(f"the provider refused the login code ({detail}); log in again")
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
                try:
                    self._keys = jwt.PyJWKSet.from_dict(
                        await self._get_json((await self.metadata())["jwks_uri"])
                    )
                except jwt.PyJWTError as e:
                    raise LoginError(f"the provider's signing keys are unusable ({e})") from e
            for k in self._keys.keys:
                if (kid is None or k.key_id == kid) and k.public_key_use in (None, "sig"):
                    return k.key
        raise LoginError(f"the provider signed with an unknown key {kid!r}")
