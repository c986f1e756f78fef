"""Login pieces: PKCE, the authorization request, ID token claims, sealed session cookies."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet

from portal import oidc, session


def test_pkce_challenge_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert oidc.challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_each_login_gets_fresh_unguessable_values() -> None:
    a, b = oidc.new_pending("/clusters"), oidc.new_pending("/clusters")
    assert len({a.state, a.nonce, a.verifier, b.state, b.nonce, b.verifier}) == 6
    assert len(a.verifier) >= 43  # RFC 7636: 43 to 128 characters


def test_authorize_url_asks_for_code_with_s256() -> None:
    pending = oidc.new_pending("/")
    url = oidc.authorize_url(
        "https://idp.example.com/auth?tenant=x",
        client_id="portal",
        redirect_uri="https://p/cb",
        pending=pending,
    )
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.netloc == "idp.example.com" and parts.path == "/auth"
    assert q["tenant"] == "x"
    assert q["response_type"] == "code" and q["client_id"] == "portal" and q["redirect_uri"] == "https://p/cb"
    assert q["state"] == pending.state and q["nonce"] == pending.nonce
    assert q["code_challenge_method"] == "S256" and q["code_challenge"] == oidc.challenge(pending.verifier)
    assert "openid" in q["scope"].split()
    assert pending.verifier not in url


CLAIMS = {
    "email": "dev@example.com",
    "email_verified": True,
    "name": "Dev",
    "groups": ["a", "b"],
    "nonce": "n1",
    "exp": 2_000_000_000,
}


def test_identity_from_claims() -> None:
    who = oidc.identity(CLAIMS, nonce="n1", owner_claim="email", groups_claim="groups")
    assert who == oidc.Identity("dev@example.com", "Dev", ("a", "b"))
    other = oidc.identity({**CLAIMS, "sub": "u1"}, nonce="n1", owner_claim="sub", groups_claim="roles")
    assert other.owner == "u1" and other.groups == ()


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({**CLAIMS, "nonce": "other"}, "nonce mismatch"),
        ({k: v for k, v in CLAIMS.items() if k != "email"}, "no 'email' claim"),
        ({**CLAIMS, "email": ""}, "no 'email' claim"),
        ({**CLAIMS, "email_verified": False}, "does not say dev@example.com is verified"),
        ({k: v for k, v in CLAIMS.items() if k != "email_verified"}, "does not say"),
    ],
)
def test_identity_refuses(claims: dict[str, object], message: str) -> None:
    with pytest.raises(oidc.LoginError, match=message):
        oidc.identity(claims, nonce="n1", owner_claim="email", groups_claim="groups")


@pytest.mark.parametrize(
    ("groups", "domains", "allowed"),
    [
        ((), (), True),  # no restriction configured
        (("b",), (), True),
        (("z",), (), False),
        ((), ("Example.com",), True),
        ((), ("example.org",), False),
        (("z",), ("example.com",), True),
    ],
)
def test_who_may_log_in(groups: tuple[str, ...], domains: tuple[str, ...], allowed: bool) -> None:
    who = oidc.Identity("dev@example.com", "Dev", ("a", "b"))
    if allowed:
        oidc.check_allowed(who, groups=groups, domains=domains)
    else:
        with pytest.raises(oidc.LoginError, match="may not use this portal"):
            oidc.check_allowed(who, groups=groups, domains=domains)


def test_a_cookie_sealed_for_one_purpose_does_not_open_for_another() -> None:
    key = Fernet.generate_key()
    login = session.Sealer(key, session.LOGIN_COOKIE).seal({"state": "s"})
    with pytest.raises(session.Invalid):
        session.Sealer(key, session.COOKIE).open(login, max_age=60)


def test_sealed_sessions_open_until_they_expire() -> None:
    sealer = session.Sealer(Fernet.generate_key(), session.COOKIE)
    now = time.time()
    token = sealer.seal({"owner": "dev@example.com"}, now=now)
    assert "dev@example.com" not in token  # encrypted, not just signed
    assert sealer.open(token, max_age=60, now=now + 59)["owner"] == "dev@example.com"
    with pytest.raises(session.Expired):
        sealer.open(token, max_age=60, now=now + 61)  # older than the session lifetime


def test_forged_or_foreign_sessions_are_invalid() -> None:
    sealer = session.Sealer(Fernet.generate_key(), session.COOKIE)
    token = sealer.seal({"owner": "dev@example.com"})
    tampered = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    for bad in (
        tampered,
        "not-a-token",
        "",
        session.Sealer(Fernet.generate_key(), session.COOKIE).seal({"owner": "x"}),
    ):
        with pytest.raises(session.Invalid):
            sealer.open(bad, max_age=60)


def test_the_key_file_is_made_once_private_and_reused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "k" / "session.key"
    key = session.key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert session.key_file(path) == key
    Fernet(key)  # a valid key
