"""The client layer's HTTP/1.1 for one-answer requests, against a real loopback server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.unit.loopback import serving
from tispace import kubeconfig
from tispace.kube import resources as r
from tispace.kube.client import Client, _retryable
from tispace.kube.http1 import Pool, ServerDisconnected


def _app(peers: list[Any]) -> web.Application:
    """Answers whose shape varies (lengths, chunks, closes); notes each request's client port."""

    async def pod(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response(
            {"metadata": {"name": request.match_info["name"]}, "query": dict(request.query)}
        )

    async def chunked(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        body = b'{"items": [' + b",".join(b'{"n": %d}' % i for i in range(3000)) + b"]}"
        for i in range(0, len(body), 1000):
            await resp.write(body[i : i + 1000])
        return resp

    async def closing(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({"kind": "closing"}, headers={"Connection": "close"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"kind": "late"})

    async def prefixed(request: web.Request) -> web.Response:
        peers.append(request.path)
        return web.json_response({"metadata": {"name": request.match_info["name"]}})

    async def created(request: web.Request) -> web.Response:
        return web.json_response(await request.json(), status=201)

    async def listed(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        if "watch" not in request.query:
            return web.json_response({"metadata": {"resourceVersion": "7"}, "items": []})
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"type": "ADDED", "object": {"metadata": {"name": "w"}}}\n')
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/pods/chunked", chunked)
    app.router.add_get("/api/v1/namespaces/default/pods/closing", closing)
    app.router.add_get("/api/v1/namespaces/default/pods/slow", slow)
    app.router.add_get("/api/v1/namespaces/default/pods/{name}", pod)
    app.router.add_get("/prefix/api/v1/namespaces/default/pods/{name}", prefixed)
    app.router.add_post("/api/v1/namespaces/default/pods", created)
    app.router.add_get("/api/v1/namespaces/default/pods", listed)
    return app


@pytest.fixture(params=[False, True], ids=["http", "https"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Client, list[Any]]]:
    peers: list[Any] = []
    async with serving(_app(peers), tls=request.param) as creds, Client(creds, attempts=1) as client:
        yield client, peers


async def test_requests_one_after_another_share_one_connection(server: tuple[Client, list[Any]]) -> None:
    client, peers = server
    for i in range(5):
        assert (await client.get(r.PODS, f"p{i}", "default"))["metadata"]["name"] == f"p{i}"
    assert len(peers) == 5 and len(set(peers)) == 1


async def test_an_informers_watch_takes_the_connection_of_its_list(server: tuple[Client, list[Any]]) -> None:
    """One TLS handshake per informer, not two (a restarted syncer lists and watches everything)."""
    client, peers = server
    listed = await client.list(r.PODS, "default")
    events = [
        e
        async for e in client.watch(r.PODS, "default", resource_version=listed["metadata"]["resourceVersion"])
    ]
    assert [e["object"]["metadata"]["name"] for e in events] == ["w"]
    assert len(peers) == 2 and peers[0] == peers[1]


async def test_a_chunked_answer_is_read_whole(server: tuple[Client, list[Any]]) -> None:
    client, _ = server
    got = await client.get(r.PODS, "chunked", "default")
    assert [item["n"] for item in got["items"]] == list(range(3000))


async def test_a_body_and_the_query_reach_the_server_as_sent(server: tuple[Client, list[Any]]) -> None:
    client, _ = server
    pod = {"metadata": {"name": "ü-pod", "labels": {"a": "b"}}}
    assert await client.create(r.PODS, pod, "default") == pod
    params = {"labelSelector": "app=x,tier!=db", "limit": "5", "fieldSelector": "spec.nodeName=a b"}
    got = await client.request("GET", r.PODS.path("default", "q"), params=params)
    assert got["query"] == params
    assert (await client.request("GET", "/api/v1/namespaces/default/pods/ä b"))["metadata"]["name"] == "ä b"


async def test_a_connection_the_server_closes_is_not_used_again(server: tuple[Client, list[Any]]) -> None:
    client, peers = server
    assert (await client.get(r.PODS, "closing", "default"))["kind"] == "closing"
    assert (await client.get(r.PODS, "after", "default"))["metadata"]["name"] == "after"
    assert len(set(peers)) == 2


async def test_a_timed_out_request_leaves_no_late_answer_for_the_next(
    server: tuple[Client, list[Any]],
) -> None:
    client, _ = server
    with pytest.raises(TimeoutError):
        await client.request("GET", r.PODS.path("default", "slow"), timeout=0.2)
    await asyncio.sleep(1.2)  # the late answer would have come by now, on the closed connection
    assert (await client.get(r.PODS, "next", "default"))["metadata"]["name"] == "next"


async def test_an_idle_connection_is_not_reused_after_keepalive() -> None:
    peers: list[Any] = []
    async with serving(_app(peers)) as creds:
        pool = Pool(creds.server, None, limit=4, keepalive=0.05)
        head = pool.head("GET", "/api/v1/namespaces/default/pods/a", {}, None)
        try:
            await pool.request(head, None, 5, idempotent=True)
            await pool.request(head, None, 5, idempotent=True)
            await asyncio.sleep(0.1)
            await pool.request(head, None, 5, idempotent=True)
        finally:
            pool.close()
    assert len(peers) == 3 and len(set(peers[:2])) == 1 and peers[2] != peers[0]


async def test_the_servers_own_path_prefixes_every_request() -> None:
    peers: list[Any] = []
    async with serving(_app(peers)) as creds:
        prefixed = dataclasses.replace(creds, server=creds.server + "/prefix/")
        async with Client(prefixed) as client:
            assert (await client.get(r.PODS, "p", "default"))["metadata"]["name"] == "p"
    assert peers == ["/prefix/api/v1/namespaces/default/pods/p"]


async def test_a_connection_dropped_before_the_answer_is_retried_then_reported() -> None:
    """A server that closes without answering (an idle connection it had closed, a restart): a
    ConnectionError, so the client's retries and every caller's OSError handling cover it."""
    accepted = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    srv = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        pool = Pool(f"http://127.0.0.1:{port}", None, limit=4, keepalive=60)
        with pytest.raises(ServerDisconnected):
            await pool.request(pool.head("GET", "/x", {}, None), None, 5, idempotent=True)
        pool.close()
        creds = kubeconfig.Credentials(server=f"http://127.0.0.1:{port}", ca_pem=b"")
        async with Client(creds, attempts=2) as client:
            with pytest.raises(ConnectionError):
                await client.get(r.PODS, "x", "default")
        assert accepted == 3  # one for the pool, two attempts for the client
    finally:
        srv.close()
        await srv.wait_closed()


async def test_a_closed_client_refuses_requests_and_closes_its_connections() -> None:
    peers: list[Any] = []
    async with serving(_app(peers)) as creds:
        client = Client(creds)
        await client.get(r.PODS, "a", "default")
        await client.close()
        with pytest.raises(RuntimeError, match="closed"):
            await client.get(r.PODS, "b", "default")


@contextlib.asynccontextmanager
async def _raw_server(answer: Callable[[int, int], bytes | None]) -> AsyncIterator[Client]:
    """A server that writes `answer(connection number, request number on it)` for each request, or
    closes the connection without answering when that is None; a client of one attempt."""
    conns = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal conns
        conns += 1
        conn, n = conns, 0
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                n += 1
                if (data := answer(conn, n)) is None:
                    break
                writer.write(data)
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with Client(
            kubeconfig.Credentials(server=f"http://127.0.0.1:{port}", ca_pem=b""), attempts=1
        ) as c:
            yield c
    finally:
        srv.close()
        await srv.wait_closed()


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'


async def test_a_pooled_connection_the_server_closed_as_the_request_went_is_retried_if_idempotent() -> None:
    """The server answers once per connection, then closes on the next request without answering:
    the race of a pooled connection the server closes for idling. A GET goes again at once on a new
    connection (this client makes one attempt, so no retry of its own hides it); a POST may have
    been acted on, so it is reported."""
    async with _raw_server(lambda conn, n: OK if n == 1 else None) as client:
        assert await client.request("GET", "/a") == {"ok": True}
        assert await client.request("GET", "/b") == {"ok": True}
        with pytest.raises(ServerDisconnected):
            await client.request("POST", "/c", body={})


async def test_an_interim_answer_is_not_taken_for_the_answer() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    async with _raw_server(lambda conn, n: interim + OK) as client:
        assert await client.request("GET", "/a") == {"ok": True}
        assert await client.request("GET", "/b") == {"ok": True}


async def test_an_unreadable_answer_is_a_connection_error() -> None:
    async with _raw_server(lambda conn, n: b"SPDY/9 banana\r\n\r\n") as client:
        with pytest.raises(ConnectionResetError, match="unreadable"):
            await client.request("GET", "/a")


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (socket.gaierror(-3, "Temporary failure in name resolution"), True),
        (OSError(113, "No route to host"), True),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), True),
        (ServerDisconnected("closed"), True),
        (TimeoutError(), True),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), False),
        (ValueError("a bug"), False),
    ],
)
def test_socket_failures_are_retried_but_not_a_certificate_that_fails(exc: Exception, retried: bool) -> None:
    assert _retryable(exc) is retried


async def test_a_server_that_cannot_be_reached_is_named_in_the_error() -> None:
    """The socket's own error ("[Errno 111] Connection refused", "Name or service not known") does
    not say which server: a VirtualCluster's status must."""
    async with Client(kubeconfig.Credentials(server="http://127.0.0.1:9", ca_pem=b""), attempts=1) as client:
        with pytest.raises(ConnectionError, match="cannot connect to 127.0.0.1:9"):
            await client.get(r.PODS, "x", "default")
