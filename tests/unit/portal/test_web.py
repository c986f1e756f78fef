"""The portal's gate, without a cluster behind it: no session, a bad session or a bad CSRF token
stops a request before any handler acts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from portal import oidc, session, web
from portal.settings import Settings
from tispace import kubeconfig
from tispace.kube.client import Client

KEY = Fernet.generate_key()
SETTINGS = Settings(
    super_kubeconfig=Path("/nonexistent"),
    issuer="http://127.0.0.1:9",  # nothing listens: any call to the provider or cluster would fail
    client_id="portal",
    client_secret="s",
    public_url="http://127.0.0.1:8080",
    session_secret=KEY,
)


@pytest.fixture
async def http() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    kube = Client(kubeconfig.Credentials(server="http://127.0.0.1:9", ca_pem=b""), attempts=1)
    async with TestClient(TestServer(web.app(SETTINGS, kube))) as client:
        yield client
    await kube.close()


def cookie(data: dict[str, object], at: float | None = None) -> dict[str, str]:
    return {session.COOKIE: session.Sealer(KEY, session.COOKIE).seal(data, now=at)}


LIVE = {"owner": "dev@example.com", "name": "Dev", "admin": False, "csrf": "c" * 43}


@pytest.mark.parametrize("path", ["/", "/clusters", "/clusters/web", "/clusters/web/kubeconfig", "/admin"])
async def test_every_page_needs_a_login(http: TestClient, path: str) -> None:  # type: ignore[type-arg]
    resp = await http.get(path, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/login?next=")


async def test_a_post_without_a_session_is_sent_to_login(http: TestClient) -> None:  # type: ignore[type-arg]
    resp = await http.post("/clusters", data={"name": "web"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/"


@pytest.mark.parametrize(
    ("cookies", "reason"),
    [
        (cookie(LIVE, at=time.time() - 13 * 3600), "expired"),  # older than --session-hours
        ({session.COOKIE: "forged"}, "invalid"),
        (
            {session.COOKIE: session.Sealer(Fernet.generate_key(), session.COOKIE).seal(LIVE)},
            "invalid",
        ),  # another key
        ({session.COOKIE: session.Sealer(KEY, session.LOGIN_COOKIE).seal(LIVE)}, "invalid"),  # a login cookie
    ],
)
async def test_expired_and_forged_sessions_log_in_again(
    http: TestClient,  # type: ignore[type-arg]
    cookies: dict[str, str],
    reason: str,
) -> None:
    resp = await http.get("/clusters", cookies=cookies, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == f"/login?next=/clusters&reason={reason}"
    page = await http.get(resp.headers["Location"])
    assert web.REASONS[reason] in await page.text()


@pytest.mark.parametrize("token", ["", "wrong", "c" * 42, "é" * 43])
async def test_a_forged_csrf_token_changes_nothing(http: TestClient, token: str) -> None:  # type: ignore[type-arg]
    for path in ("/clusters", "/clusters/web/delete", "/clusters/web/instances", "/logout"):
        resp = await http.post(
            path, data={"csrf": token, "name": "x", "confirm": "web"}, cookies=cookie(LIVE)
        )
        assert resp.status == 403, path
        assert "Nothing was changed" in await resp.text()


async def test_the_callback_refuses_a_foreign_state(http: TestClient) -> None:  # type: ignore[type-arg]
    pending = oidc.new_pending("/clusters")
    login = {session.LOGIN_COOKIE: session.Sealer(KEY, session.LOGIN_COOKIE).seal(pending.__dict__)}
    resp = await http.get("/auth/callback?code=abc&state=someone-elses", cookies=login)
    assert resp.status == 400 and "state mismatch" in await resp.text()
    resp = await http.get(f"/auth/callback?code=abc&state={pending.state}")  # no login cookie
    assert resp.status == 400 and "not started here" in await resp.text()
    resp = await http.get("/auth/callback?error=access_denied&error_description=Call+555-0100+now")
    text = await resp.text()
    assert resp.status == 401 and "(access_denied)" in text and "555" not in text  # no one else's words
    resp = await http.get(f"/auth/callback?code=abc&state=%C3%A9{pending.state}", cookies=login)
    assert resp.status == 400 and "state mismatch" in await resp.text()


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("/clusters/web", "/clusters/web"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        ("/\t/evil.example", "/"),  # a URL parser drops the tab: //evil.example
        ("/a\nb", "/"),
        ("/clusters?x=1", "/clusters?x=1"),
    ],
)
def test_after_login_only_local_paths(value: str, safe: str) -> None:
    assert web._safe_next(value) == safe


@pytest.mark.parametrize(
    "path",
    [
        "/clusters/..%2Fsecrets",
        "/clusters/Web",
        "/clusters/a%3Fb/kubeconfig",
        "/clusters/web/instances/..%2F..%2Fx",
    ],
)
async def test_names_in_urls_that_are_no_names_are_not_found(http: TestClient, path: str) -> None:  # type: ignore[type-arg]
    resp = await http.get(path, cookies=cookie(LIVE))  # answered before any API call (none would work)
    assert resp.status == 404


async def test_the_login_page_is_public_and_health_answers(http: TestClient) -> None:  # type: ignore[type-arg]
    page = await http.get("/login?next=/clusters/web")
    assert page.status == 200
    assert 'href="/login/start?next=/clusters/web"' in await page.text()
    assert (await http.get("/healthz")).status == 200
    assert (await http.get("/static/portal.css")).status == 200
