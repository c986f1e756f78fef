"""The client layer against a small loopback HTTP server: retries, errors, watch framing."""

import asyncio

import orjson
import pytest
import tenacity
from aiohttp import web

from tests.unit.loopback import serving
from tispace.kube import client as client_module
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client


@pytest.fixture
async def server():
    calls: dict[str, int] = {}

    async def flaky(request: web.Request) -> web.Response:
        calls["flaky"] = calls.get("flaky", 0) + 1
        if calls["flaky"] < 3:
            return web.json_response({"reason": "ServiceUnavailable", "message": "later"}, status=503)
        return web.json_response({"metadata": {"name": "ok"}})

    async def missing(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.json_response({"reason": "NotFound", "message": "nope"}, status=404)

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        big = {"type": "ADDED", "object": {"metadata": {"name": "x" * 300_000}}}
        data = orjson.dumps(big) + b"\n" + orjson.dumps({"type": "BOOKMARK", "object": {}}) + b"\n"
        for i in range(0, len(data), 4096):  # split across chunks, as a real server may
            await resp.write(data[i : i + 4096])
        return resp

    async def throttled(request: web.Request) -> web.Response:
        body = {"reason": "TooManyRequests", "message": "slow down"}
        return web.json_response(body, status=429, headers={"Retry-After": "7"})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/pods/throttled", throttled)
    app.router.add_get("/api/v1/namespaces/default/pods/flaky", flaky)
    app.router.add_get("/api/v1/namespaces/default/pods/missing", missing)
    app.router.add_get("/api/v1/pods", watch)
    async with serving(app) as creds:
        client, once = Client(creds), Client(creds, attempts=1)
        yield client, calls, once
        await client.close()
        await once.close()


async def test_transient_errors_are_retried(server) -> None:
    client, calls, _ = server
    assert (await client.get(r.PODS, "flaky", "default"))["metadata"]["name"] == "ok"
    assert calls["flaky"] == 3


@pytest.mark.parametrize("attempts", [1, 2, 3])
async def test_a_failing_request_is_sent_exactly_attempts_times(attempts: int) -> None:
    sent = 0

    async def down(request: web.Request) -> web.Response:
        nonlocal sent
        sent += 1
        return web.json_response({"reason": "ServiceUnavailable", "message": "down"}, status=503)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/pods/down", down)
    async with serving(app) as creds, Client(creds, attempts=attempts) as client:
        with pytest.raises(ApiError) as err:
            await client.get(r.PODS, "down", "default")
    assert (err.value.status, sent) == (503, attempts)


async def test_concurrent_failures_each_raise_their_own_error(server) -> None:
    client, _, _ = server
    results = await asyncio.gather(
        *(client.get(r.PODS, "missing", "default") for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(e, ApiError) and e.status == 404 and e.reason == "NotFound" for e in results)
    assert await client.get_or_none(r.PODS, "missing", "default") is None


async def test_watch_reassembles_lines_across_chunks(server) -> None:
    client, _, _ = server
    events = [e async for e in client.watch(r.PODS, resource_version="1")]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert len(events[0]["object"]["metadata"]["name"]) == 300_000


async def test_a_tls_connection_reads_into_a_small_buffer_and_big_events_still_arrive_whole() -> None:
    big = {"type": "ADDED", "object": {"metadata": {"name": "x" * 300_000}}}

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(orjson.dumps(big) + b"\n")
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/pods", watch)
    async with serving(app, tls=True) as creds, Client(creds) as client:
        events = [e async for e in client.watch(r.PODS, resource_version="1")]
        (conn,) = client._pool._idle  # the watch ended as the server ended it: its connection is pooled
        assert conn.transport is not None
        ssl_protocol = conn.transport._ssl_protocol  # type: ignore[attr-defined]
        assert len(ssl_protocol._ssl_buffer) == client_module.TLS_READ_BUFFER < 256 * 1024
    assert events == [big]


def test_paths() -> None:
    assert r.PODS.path("ns", "p", "log") == "/api/v1/namespaces/ns/pods/p/log"
    assert r.NODES.path(None, "n") == "/api/v1/nodes/n"
    assert r.VIRTUALCLUSTERS.path("team") == "/apis/tenancy.x-k8s.io/v1alpha1/namespaces/team/virtualclusters"
    assert r.NAMESPACES.path("ignored") == "/api/v1/namespaces"


async def test_a_429_carries_the_servers_retry_after(server) -> None:
    _, _, once = server
    with pytest.raises(ApiError) as err:
        await once.get(r.PODS, "throttled", "default")
    assert (err.value.status, err.value.retry_after) == (429, 7.0)


@pytest.mark.parametrize(("asked", "least"), [(0.0, 0.0), (3.0, 3.0), (600.0, 30.0)])
def test_retries_wait_at_least_what_the_server_asked_up_to_a_bound(asked: float, least: float) -> None:
    state = tenacity.RetryCallState(retry_object=tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = 1
    state.set_exception((ApiError, ApiError(429, {}, "GET", "/x", asked), None))
    waited = client_module._wait(state)
    assert least <= waited <= max(least, 5.0) + 1.0


async def test_ensure_creates_once_then_reports_the_name_taken() -> None:
    made: dict[str, dict] = {}

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        name = body["metadata"]["name"]
        if name == "forbidden":
            return web.json_response({"reason": "Forbidden", "message": "no"}, status=403)
        if name in made:
            return web.json_response({"reason": "AlreadyExists", "message": "exists"}, status=409)
        made[name] = body
        return web.json_response(body, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/namespaces/default/configmaps", create)
    async with serving(app) as creds, Client(creds, attempts=1) as client:
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
        assert await client.ensure(r.CONFIGMAPS, cm, "default") is True
        assert await client.ensure(r.CONFIGMAPS, {**cm, "data": {"x": "y"}}, "default") is False
        assert made == {"a": cm}  # the existing object is left as it was
        with pytest.raises(ApiError) as err:
            await client.ensure(r.CONFIGMAPS, {**cm, "metadata": {"name": "forbidden"}}, "default")
        assert err.value.status == 403


async def test_responses_are_asked_for_uncompressed() -> None:
    """An API server gzips any list over 128 KiB for a client that accepts it: CPU at both ends."""
    seen: list[str] = []

    async def big_list(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        resp = web.json_response({"items": [{"metadata": {"name": "x" * 200_000}}]})
        if "gzip" in seen[-1]:
            resp.enable_compression()
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/pods", big_list)
    async with serving(app) as creds, Client(creds) as c:
        page = await c.request("GET", "/api/v1/pods")
    assert page["items"][0]["metadata"]["name"] == "x" * 200_000
    assert seen == ["identity"]
