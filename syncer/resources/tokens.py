"""Service-account tokens signed by the syncer with its tenant's own key, as the tenant API server signs
a TokenRequest bound to a pod (k8s.io/kubernetes pkg/serviceaccount, `Claims` and the JWT signer):
the same claims, key id and algorithm, so the tenant API server verifies them as its own. Pure."""

from __future__ import annotations

import base64
import datetime
import hashlib
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_EC_ALGORITHMS = {256: "ES256", 384: "ES384", 521: "ES512"}


def key_id(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """The API server's key id: the SHA-256 of the public key's DER, base64url without padding."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def header(token: str) -> dict[str, Any]:
    """A JWT's header, unverified; ValueError when it is not a JWT."""
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise ValueError(f"not a JWT: {e}") from e


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified; ValueError when it is not a JWT."""
    try:
        found: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise ValueError(f"not a JWT: {e}") from e
    return found


@dataclass(frozen=True)
class Signer:
    """A tenant's signing key with the issuer and default audiences its API server signs with."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    issuer: str
    audiences: tuple[str, ...]
    """A TokenRequest's audiences when it names none: the API server's (--api-audiences, else its issuer)."""

    @classmethod
    def from_pem(cls, pem: bytes, issuer: str, audiences: tuple[str, ...]) -> Signer:
        """Raises ValueError for a key that is neither RSA nor ECDSA (the API server's two kinds)."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"a service-account key must be RSA or ECDSA, not {type(key).__name__}")
        return cls(key, issuer, audiences)

    @cached_property
    def kid(self) -> str:
        return key_id(self.key.public_key())

    def token_request(
        self, audience: str, sa: dict[str, Any], pod: dict[str, Any], seconds: int, now: datetime.datetime
    ) -> dict[str, Any]:
        """What a TokenRequest for the pod's service account, bound to the pod, answers: its status's
        token and expirationTimestamp. `audience` "": the API server's own audiences."""
        sa_meta, pod_meta = sa["metadata"], pod["metadata"]
        issued = int(now.timestamp())
        payload = {
            "aud": [audience] if audience else list(self.audiences),
            "exp": issued + seconds,
            "iat": issued,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": sa_meta["namespace"],
                "pod": {"name": pod_meta["name"], "uid": pod_meta["uid"]},
                "serviceaccount": {"name": sa_meta["name"], "uid": sa_meta["uid"]},
            },
            "nbf": issued,
            "sub": f"system:serviceaccount:{sa_meta['namespace']}:{sa_meta['name']}",
        }
        expires = datetime.datetime.fromtimestamp(issued + seconds, datetime.UTC)
        token = jwt.encode(payload, self.key, algorithm=self._algorithm, headers={"kid": self.kid})
        return {"status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}

    @cached_property
    def _algorithm(self) -> str:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return "RS256"
        return _EC_ALGORITHMS[self.key.curve.key_size]
