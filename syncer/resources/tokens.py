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


def _algorithm(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    """The JWS algorithm the API server signs with for the key."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    return _EC_ALGORITHMS[key.curve.key_size]


@dataclass(frozen=True)
class Signer:
    """A tenant's signing key with the issuer and default audiences its API server signs with."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    issuer: str
    audiences: tuple[str, ...]
    """A TokenRequest's audiences when it names none: the API server's (--api-audiences, else its issuer)."""
    longest: int
    """The longest token the syncer signs: what the API server signed when asked for that long."""
    capped: bool = False
    """The API server signed less than it was asked for (--service-account-max-token-expiration): a
    token asked for longer than `longest` is shortened to it, as the API server shortens it."""

    @classmethod
    def from_probe(cls, pem: bytes, probe: str, asked: int) -> Signer:
        """The signer a probe token shows: one the API server signed with the key in `pem` when asked
        for a token of `asked` seconds. ValueError when the key is neither RSA nor ECDSA (the API
        server's two kinds), the probe is not a JWT, or the key did not sign it."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"a service-account key must be RSA or ECDSA, not {type(key).__name__}")
        if header(probe).get("kid") != key_id(key.public_key()):
            raise ValueError("the probe was signed with another key")
        try:  # the signature only: the probe's times and audiences are what is learned from it
            found = jwt.decode(
                probe,
                key.public_key(),
                [_algorithm(key)],
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError as e:
            raise ValueError(f"the probe was not signed with the key: {e}") from e
        aud = found["aud"]
        lived = int(found["exp"]) - int(found["iat"])
        return cls(key, found["iss"], (aud,) if isinstance(aud, str) else tuple(aud), lived, lived < asked)

    def lifetime(self, seconds: int) -> int | None:
        """How long a token asked for `seconds` lives, as the API server would sign it; None when the
        probe did not reach that far (the tenant signs it)."""
        if seconds <= self.longest:
            return seconds
        return self.longest if self.capped else None

    @cached_property
    def kid(self) -> str:
        return key_id(self.key.public_key())

    def token_request(
        self,
        audience: str,
        sa: dict[str, Any],
        pod: dict[str, Any],
        seconds: int,
        now: datetime.datetime,
        node: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """What a TokenRequest for the pod's service account, bound to the pod, answers: its status's
        token and expirationTimestamp. `audience` "": the API server's own audiences. `node`: the
        name and uid of the node a bound pod is on (the name alone when the node is not found), which
        the API server adds for a bound pod."""
        sa_meta, pod_meta = sa["metadata"], pod["metadata"]
        issued = int(now.timestamp())
        bound: dict[str, Any] = {
            "namespace": sa_meta["namespace"],
            "pod": {"name": pod_meta["name"], "uid": pod_meta["uid"]},
            "serviceaccount": {"name": sa_meta["name"], "uid": sa_meta["uid"]},
        }
        if node:
            bound["node"] = node
        payload = {
            "aud": [audience] if audience else list(self.audiences),
            "exp": issued + seconds,
            "iat": issued,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": bound,
            "nbf": issued,
            "sub": f"system:serviceaccount:{sa_meta['namespace']}:{sa_meta['name']}",
        }
        expires = datetime.datetime.fromtimestamp(issued + seconds, datetime.UTC)
        token = jwt.encode(payload, self.key, algorithm=_algorithm(self.key), headers={"kid": self.kid})
        return {"status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}


def _takes_token_requests(rule: dict[str, Any]) -> bool:
    """Whether an admission rule matches a TokenRequest as upstream's rule matcher reads it: a CREATE of
    the `token` subresource of core `serviceaccounts`, which are namespaced. A resource "*" is every
    resource and no subresource; "*/*", "serviceaccounts/*" and "*/token" take subresources in."""
    if rule.get("scope", "*") not in ("*", "Namespaced"):
        return False
    if not {"", "*"} & set(rule.get("apiGroups") or ()):
        return False
    if not {"CREATE", "*"} & set(rule.get("operations") or ()):
        return False
    for resource in rule.get("resources") or ():
        name, _, sub = resource.partition("/")
        if name in ("*", "serviceaccounts") and sub in ("*", "token"):
            return True
    return False


def intercepts(obj: dict[str, Any]) -> bool:
    """Whether an admission webhook configuration or an admission policy (mutating or validating) may act
    on a TokenRequest. Its tenant's API server then signs the pods' tokens, so it sees each one as
    upstream's does. It errs towards yes: API versions, resource names, exclusions, selectors, match
    conditions and a policy's bindings are not read, as a wrong yes costs a request per token and a
    wrong no a check skipped."""
    rules = [rule for hook in obj.get("webhooks") or () for rule in hook.get("rules") or ()]
    rules += ((obj.get("spec") or {}).get("matchConstraints") or {}).get("resourceRules") or []
    return any(_takes_token_requests(rule) for rule in rules)
