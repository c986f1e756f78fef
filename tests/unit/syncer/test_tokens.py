"""Tokens the syncer signs with a tenant's key: what the tenant API server checks in them."""

from __future__ import annotations

import asyncio
import base64
import datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from syncer.engine import admission
from syncer.engine import tenant as tenant_module
from syncer.engine.model import Obj
from syncer.engine.tenant import PROBE_ACCOUNT, token_signer
from syncer.kinds import PUBLIC_KINDS
from syncer.resources import classes, tokens
from tispace import pki, tenantpki
from tispace.kube.client import ApiError

# k8s.io/kubernetes pkg/serviceaccount/keyid_test.go: the key id every API server derives for this key.
UPSTREAM_PUBLIC_KEY = b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA249XwEo9k4tM8fMxV7zx
OhcrP+WvXn917koM5Qr2ZXs4vo26e4ytdlrV0bQ9SlcLpQVSYjIxNfhTZdDt+ecI
zshKuv1gKIxbbLQMOuK1eA/4HALyEkFgmS/tleLJrhc65tKPMGD+pKQ/xhmzRuCG
51RoiMgbQxaCyYxGfNLpLAZK9L0Tctv9a0mJmGIYnIOQM4kC1A1I1n3EsXMWmeJU
j7OTh/AjjCnMnkgvKT2tpKxYQ59PgDgU8Ssc7RDSmSkLxnrv+OrN80j6xrw0OjEi
B4Ycr0PqfzZcvy8efTtFQ/Jnc4Bp1zUtFXt7+QeevePtQ2EcyELXE0i63T1CujRM
WwIDAQAB
-----END PUBLIC KEY-----
"""
ISSUER = "https://kubernetes.default.svc.cluster.local"
SA = {"metadata": {"name": "robot", "namespace": "team", "uid": "sa-uid"}}
POD = {"metadata": {"name": "web-0", "namespace": "team", "uid": "pod-uid"}}
NOW = datetime.datetime(2026, 12, 7, 12, 0, 0, 500_000, tzinfo=datetime.UTC)


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _signer_of(pem: bytes, audiences: tuple[str, ...] = (ISSUER,), longest: int = 86400) -> tokens.Signer:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return tokens.Signer(key, ISSUER, audiences, longest)


def _unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _verified(token: str, public_pem: bytes, audience: str) -> dict:
    return jwt.decode(
        token,
        public_pem,
        algorithms=["ES256", "RS256"],
        audience=audience,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )


def test_the_key_id_is_the_api_servers():
    key = serialization.load_pem_public_key(UPSTREAM_PUBLIC_KEY)
    assert isinstance(key, rsa.RSAPublicKey)
    assert tokens.key_id(key) == "JHJehTTTZlsspKHT-GaJxK7Kd1NQgZJu3fyK6K_QDYU"


def test_a_token_for_the_api_servers_audiences_carries_what_a_bound_token_request_would():
    private, public = pki.new_keypair()  # a tenant's key, as the manager makes it
    signer = _signer_of(private, (ISSUER, "extra"))
    answer = signer.token_request("", SA, POD, 86400, NOW)
    token = answer["status"]["token"]
    head = tokens.header(token)
    assert head["alg"] == "ES256"
    assert head["kid"] == tokens.key_id(serialization.load_pem_public_key(public))  # type: ignore[arg-type]
    found = _verified(token, public, ISSUER)
    assert found == {
        "aud": [ISSUER, "extra"],
        "exp": int(NOW.timestamp()) + 86400,
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "iss": ISSUER,
        "jti": found["jti"],
        "kubernetes.io": {
            "namespace": "team",
            "pod": {"name": "web-0", "uid": "pod-uid"},
            "serviceaccount": {"name": "robot", "uid": "sa-uid"},
        },
        "sub": "system:serviceaccount:team:robot",
    }
    assert answer["status"]["expirationTimestamp"] == "2026-12-08T12:00:00Z"
    assert _unverified(token) == found


def test_a_token_for_another_audience_names_only_it_and_each_has_its_own_id():
    private, public = pki.new_keypair()
    signer = _signer_of(private)
    first = signer.token_request("vault", SA, POD, 600, NOW)["status"]["token"]
    second = signer.token_request("vault", SA, POD, 600, NOW)["status"]["token"]
    assert _verified(first, public, "vault")["aud"] == ["vault"]
    with pytest.raises(jwt.InvalidAudienceError):
        _verified(first, public, ISSUER)
    assert _unverified(first)["jti"] != _unverified(second)["jti"]


def test_an_rsa_key_of_an_older_tenant_signs_rs256():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signer = _signer_of(_pem(key))
    token = signer.token_request("", SA, POD, 600, NOW)["status"]["token"]
    assert tokens.header(token)["alg"] == "RS256"
    assert _verified(token, public, ISSUER)["sub"] == "system:serviceaccount:team:robot"


def test_a_p384_key_signs_es384():
    signer = _signer_of(_pem(ec.generate_private_key(ec.SECP384R1())))
    token = signer.token_request("", SA, POD, 600, NOW)["status"]["token"]
    assert tokens.header(token)["alg"] == "ES384"


def test_a_bound_pods_token_names_its_node_as_the_api_server_adds_it():
    private, public = pki.new_keypair()
    node = {"name": "vn-1", "uid": "node-uid"}
    token = _signer_of(private).token_request("", SA, POD, 600, NOW, node)["status"]["token"]
    assert _verified(token, public, ISSUER)["kubernetes.io"]["node"] == node


def _probe(server: tokens.Signer, seconds: int) -> str:
    account = {"metadata": {"name": "tispace-syncer", "namespace": "kube-system", "uid": "u"}}
    return server.token_request("", account, {"metadata": {"name": "", "uid": ""}}, seconds, NOW)["status"][
        "token"
    ]


def test_a_probe_gives_the_issuer_audiences_and_how_long_tokens_may_live():
    private, _ = pki.new_keypair()
    signer = tokens.Signer.from_probe(private, _probe(_signer_of(private, (ISSUER, "extra")), 86400), 86400)
    assert (signer.issuer, signer.audiences, signer.longest, signer.capped) == (
        ISSUER,
        (ISSUER, "extra"),
        86400,
        False,
    )
    assert [signer.lifetime(s) for s in (600, 86400, 86401)] == [
        600,
        86400,
        None,
    ]  # past the probe: the tenant's


def test_an_api_server_that_caps_tokens_has_the_syncer_cap_them_the_same():
    """--service-account-max-token-expiration: a token asked for longer is shortened, not refused."""
    private, _ = pki.new_keypair()
    signer = tokens.Signer.from_probe(private, _probe(_signer_of(private), 7200), 86400)
    assert (signer.longest, signer.capped) == (7200, True)
    assert [signer.lifetime(s) for s in (600, 7200, 86400, 10**6)] == [600, 7200, 7200, 7200]


def test_a_probe_with_a_single_audience_as_a_string_is_read_as_one_audience():
    """RFC 7519 allows `aud` as a string, which a JWT library may write for one audience."""
    private, _ = pki.new_keypair()
    key = serialization.load_pem_private_key(private, password=None)
    payload = {"aud": ISSUER, "iss": ISSUER, "iat": 0, "exp": 600, "sub": "x"}
    probe = jwt.encode(payload, key, algorithm="ES256", headers={"kid": _signer_of(private).kid})  # type: ignore[arg-type]
    assert tokens.Signer.from_probe(private, probe, 600).audiences == (ISSUER,)


def test_a_probe_another_key_signed_or_a_key_the_api_server_cannot_use_is_refused():
    private, _ = pki.new_keypair()
    other, _ = pki.new_keypair()
    with pytest.raises(ValueError, match="another key"):
        tokens.Signer.from_probe(private, _probe(_signer_of(other), 600), 600)
    forged = _probe(_signer_of(other), 600).split(".")
    honest = _probe(_signer_of(private), 600).split(".")
    with pytest.raises(ValueError, match="not signed with the key"):  # the right kid, another signature
        tokens.Signer.from_probe(private, ".".join([honest[0], forged[1], forged[2]]), 600)
    with pytest.raises(ValueError, match="RSA or ECDSA"):
        tokens.Signer.from_probe(
            _pem(ed25519.Ed25519PrivateKey.generate()), _probe(_signer_of(private), 600), 600
        )
    with pytest.raises(ValueError):
        tokens.Signer.from_probe(b"not a key", _probe(_signer_of(private), 600), 600)


def test_what_is_not_a_jwt_is_a_value_error():
    with pytest.raises(ValueError, match="not a JWT"):
        tokens.Signer.from_probe(pki.new_keypair()[0], "nope", 600)
    with pytest.raises(ValueError, match="not a JWT"):
        tokens.header("nope")


class FakeSuper:
    """The super cluster holding (or not) the tenant's service-account key Secret, or failing."""

    def __init__(self, key_pem: bytes | None, refusal: int = 0) -> None:
        self.key_pem = key_pem
        self.refusal = refusal

    async def get_or_none(self, res: Any, name: str, namespace: str | None = None) -> Obj | None:
        assert (res.plural, name, namespace) == ("secrets", tenantpki.SERVICE_ACCOUNT, "root")
        if self.refusal:
            raise ApiError(self.refusal, {"message": "no"}, "GET", name)
        if self.key_pem is None:
            return None
        return {"data": {"tls.key": base64.b64encode(self.key_pem).decode(), "tls.crt": ""}}


class FakeTenant:
    """A tenant API server that signs TokenRequests with `signer` (capped at `cap` seconds), refuses
    them with `refusal`, or never answers (`hangs`)."""

    def __init__(self, signer: tokens.Signer, refusal: int = 0, cap: int = 0, hangs: bool = False) -> None:
        self.signer = signer
        self.refusal = refusal
        self.cap = cap
        self.hangs = hangs
        self.made: list[Obj] = []

    async def ensure(self, res: Any, body: Obj, namespace: str | None = None) -> bool:
        self.made.append(body)
        return True

    async def request(self, method: str, path: str, *, body: Any = None, **kw: Any) -> Obj:
        assert (method, path) == (
            "POST",
            "/api/v1/namespaces/kube-system/serviceaccounts/tispace-syncer/token",
        )
        if self.hangs:
            await asyncio.Event().wait()
        if self.refusal:
            raise ApiError(self.refusal, {"message": "no"}, method, path)
        seconds = min(body["spec"]["expirationSeconds"], self.cap or 1 << 32)
        return {"status": {"token": _probe(self.signer, seconds)}}


def _server(audiences: tuple[str, ...] = (ISSUER,)) -> tuple[bytes, tokens.Signer]:
    private, _ = pki.new_keypair()
    return private, _signer_of(private, audiences)


async def _probed(super_client: FakeSuper, tenant: FakeTenant) -> tokens.Signer | None:
    return await token_signer(super_client, tenant, "root", "default/dev")  # type: ignore[arg-type]


async def test_a_tenant_signing_with_the_key_in_its_pki_has_the_syncer_sign_as_its_api_server_would():
    private, server = _server((ISSUER, "extra"))
    tenant = FakeTenant(server, cap=3600)
    signer = await _probed(FakeSuper(private), tenant)
    assert signer is not None
    assert (signer.issuer, signer.audiences, signer.kid) == (ISSUER, (ISSUER, "extra"), server.kid)
    assert (signer.longest, signer.capped) == (3600, True)
    assert tenant.made == [PROBE_ACCOUNT]  # the probe's account exists however new the tenant


async def test_a_tenant_signing_with_another_key_signs_its_own_tokens():
    """An imported cluster: TiSpace made a PKI for it, but its API server signs with its own key."""
    private, _ = _server()
    _, server = _server()
    assert await _probed(FakeSuper(private), FakeTenant(server)) is None


async def test_no_key_a_refused_probe_an_unreadable_key_or_a_super_error_has_the_tenant_sign():
    private, server = _server()
    assert await _probed(FakeSuper(None), FakeTenant(server)) is None
    assert await _probed(FakeSuper(private), FakeTenant(server, refusal=403)) is None
    assert await _probed(FakeSuper(b"garbage"), FakeTenant(server)) is None
    assert await _probed(FakeSuper(private, refusal=500), FakeTenant(server)) is None


async def test_a_probe_the_tenant_never_answers_has_the_tenant_sign(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(tenant_module, "PROBE_TIMEOUT", 0.05)
    private, server = _server()
    assert await _probed(FakeSuper(private), FakeTenant(server, hangs=True)) is None


def _webhooks(*rules: dict[str, Any]) -> Obj:
    return {"kind": "ValidatingWebhookConfiguration", "webhooks": [{"name": "w", "rules": list(rules)}]}


def _rule(resources: list[str], operations: list[str] | None = None, groups: list[str] | None = None) -> Obj:
    return {
        "apiGroups": groups or [""],
        "apiVersions": ["v1"],
        "operations": operations or ["CREATE"],
        "resources": resources,
    }


@pytest.mark.parametrize(
    ("rule", "acts"),
    [
        (_rule(["serviceaccounts/token"]), True),
        (_rule(["*/*"]), True),
        (_rule(["serviceaccounts/*"]), True),
        (_rule(["*/token"]), True),
        (_rule(["pods", "serviceaccounts/token"], ["*"], ["*"]), True),
        ({**_rule(["serviceaccounts/token"]), "scope": "Namespaced"}, True),
        (_rule(["*"]), False),  # every resource, no subresource
        (_rule(["serviceaccounts"]), False),
        (_rule(["serviceaccounts/status", "pods/token"]), False),
        (_rule(["serviceaccounts/token"], ["UPDATE", "DELETE"]), False),
        (_rule(["serviceaccounts/token"], groups=["apps"]), False),
        ({**_rule(["serviceaccounts/token"]), "scope": "Cluster"}, False),
    ],
)
def test_what_acts_on_a_token_request_is_read_as_upstreams_rule_matcher_reads_it(rule: Obj, acts: bool):
    assert tokens.intercepts(_webhooks(rule)) is acts
    policy = {"kind": "ValidatingAdmissionPolicy", "spec": {"matchConstraints": {"resourceRules": [rule]}}}
    assert tokens.intercepts(policy) is acts
    mutating = {"kind": "MutatingAdmissionPolicy", "spec": {"matchConstraints": {"resourceRules": [rule]}}}
    assert tokens.intercepts(mutating) is acts


def test_any_webhook_of_a_configuration_acting_on_token_requests_counts_and_tispaces_own_do_not():
    two = {"webhooks": [{"name": "a", "rules": [_rule(["pods"])]}, {"name": "b", "rules": [_rule(["*/*"])]}]}
    assert tokens.intercepts(two)
    assert not tokens.intercepts({"webhooks": [{"name": "no-rules"}]})
    assert not tokens.intercepts({"spec": {}})
    # What the syncer writes in every tenant (the Service webhook, the public classes' policy).
    assert not tokens.intercepts(admission.webhook_configuration("https://127.0.0.1:1/services/t", b"ca"))
    assert not any(tokens.intercepts(o) for o in classes.read_only_policy(k.resource for k in PUBLIC_KINDS))
