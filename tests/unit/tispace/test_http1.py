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
from tispace.aio import poll
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client, _retryable
from tispace.kube.http1 import STREAM_BUFFER, Pool, ServerDisconnected, Stream


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

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int) -> None:
        n = 0
        while await reader.readuntil(b"\r\n\r\n"):
            n += 1
            if (data := answer(conn, n)) is None:
                break
            writer.write(data)

    async with _server(serve) as (client, _):
        yield client


@contextlib.asynccontextmanager
async def _server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Any],
) -> AsyncIterator[tuple[Client, list[int]]]:
    """A raw server whose `serve` answers each connection (numbered from 1); yields a client of one
    attempt and the count of connections it accepted, in a list."""
    accepted: list[int] = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await serve(reader, writer, accepted[0])
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with Client(
            kubeconfig.Credentials(server=f"http://127.0.0.1:{port}", ca_pem=b""), attempts=1
        ) as c:
            yield c, accepted
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


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(name: str) -> bytes:
    return b'{"type": "ADDED", "object": {"metadata": {"name": "%s"}}}\n' % name.encode()


async def test_a_watch_hands_out_each_event_as_it_comes_and_its_connection_serves_the_next_request() -> None:
    """The second event is only sent once the first has been read: a watch is a stream, not an
    answer read whole. When the server ends it, the connection goes back to the pool."""
    first_read = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(STREAM_HEAD + _chunk(_event("a")[:20]))
        await asyncio.sleep(0.05)  # an event split across two chunks
        writer.write(_chunk(_event("a")[20:]))
        await first_read.wait()
        writer.write(_chunk(_event("b")) + b"0\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()

    async with _server(serve) as (client, accepted):
        names = []
        async for event in client.watch(r.PODS, resource_version="1"):
            names.append(event["object"]["metadata"]["name"])
            first_read.set()
        assert names == ["a", "b"]
        assert await client.request("GET", "/after") == {"ok": True}
        assert accepted == [1]


async def test_a_refused_watch_raises_the_servers_error() -> None:
    """A watch from a resourceVersion too old is 410 Gone: the informer relists on it."""
    gone = b'{"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 410 Gone\r\nContent-Length: %d\r\n\r\n%s" % (len(gone), gone))
        await writer.drain()
        await reader.read()

    async with _server(serve) as (client, _):
        with pytest.raises(ApiError) as err:
            [e async for e in client.watch(r.PODS, resource_version="1")]
        assert (err.value.status, err.value.reason) == (410, "Expired")


async def test_a_watch_cut_short_by_the_server_is_an_error_after_the_events_before() -> None:
    """A server gone mid-stream (a restart): the events that came are handed out, then a
    connection error, which the informer retries; the connection is not pooled again."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(STREAM_HEAD + _chunk(_event("a")))
        await writer.drain()

    async with _server(serve) as (client, _):
        names = []
        with pytest.raises(ServerDisconnected):
            async for event in client.watch(r.PODS, resource_version="1"):
                names.append(event["object"]["metadata"]["name"])
        assert names == ["a"] and not client._pool._idle


async def test_a_watch_that_outlives_its_time_ends_with_a_timeout() -> None:
    """A server that never ends the stream (it hung): the watch ends `lasts` after it began."""
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(STREAM_HEAD + _chunk(_event("a")))
        await reader.read()  # until the client closes
        served.set()

    async with _server(serve) as (client, _):
        pool = client._pool
        body = pool.stream(pool.head("GET", "/api/v1/pods?watch=1", {}, None), timeout=5, lasts=0.3)
        got = []
        with pytest.raises(TimeoutError):
            async for data in body:
                got.append(data)
        assert got == [_event("a")]
        await asyncio.wait_for(served.wait(), 5)  # its connection was closed


async def test_a_reader_that_stops_early_and_a_closed_client_free_their_watches_connections() -> None:
    closed = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        nonlocal closed
        await reader.readuntil(b"\r\n\r\n")
        writer.write(STREAM_HEAD + _chunk(_event("a") + _event("b")))
        await reader.read()
        closed += 1

    async with _server(serve) as (client, _):
        async for _ in client.watch(r.PODS, resource_version="1"):
            break  # the generator, dropped, is closed
        watching = client.watch(r.PODS, resource_version="1")
        assert (await anext(watching))["type"] == "ADDED"
        await client.close()
        with pytest.raises(RuntimeError, match="the client is closed"):
            async for _ in watching:
                pass
        await poll(lambda: closed == 2, timeout=5, interval=0.05, what="both connections closed")


@pytest.mark.parametrize(
    ("target", "sent"),
    [
        ("/api/v1/pods?watch=1&labelSelector=a%3Db", "/api/v1/pods?watch=1&labelSelector=a%3Db"),
        ("/apis/x.io/v1/namespaces/t-1/pods/p_2~", "/apis/x.io/v1/namespaces/t-1/pods/p_2~"),
        ("/api/v1/namespaces/default/pods/ä b", "/api/v1/namespaces/default/pods/%C3%A4%20b"),
        ('/api/v1/pods/a"b<c>', "/api/v1/pods/a%22b%3Cc%3E"),
    ],
)
def test_a_request_line_percent_encodes_only_what_a_target_may_not_hold(target: str, sent: str) -> None:
    pool = Pool("https://127.0.0.1:6443", None, limit=1, keepalive=1)
    assert pool.head("GET", target, {}, None).split(b"\r\n")[0] == f"GET {sent} HTTP/1.1".encode()


async def test_an_unreadable_stream_ends_with_why() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(STREAM_HEAD + _chunk(_event("a")) + b"zz\r\n")  # not a chunk size
        await reader.read()

    async with _server(serve) as (client, _):
        names = []
        with pytest.raises(ConnectionResetError, match="unreadable"):
            async for event in client.watch(r.PODS, resource_version="1"):
                names.append(event["object"]["metadata"]["name"])
        assert names == ["a"]


async def test_bytes_after_a_streams_time_are_not_handed_out() -> None:
    """A reader that awaits between reads (vn_agent refreshes between events) gets nothing that
    came after `lasts`, however busy the stream."""
    more = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(STREAM_HEAD + _chunk(_event("a")))
        await more.wait()
        writer.write(_chunk(_event("b")))
        await reader.read()

    async with _server(serve) as (client, _):
        pool = client._pool
        body = pool.stream(pool.head("GET", "/api/v1/pods?watch=1", {}, None), timeout=5, lasts=0.2)
        got = [await anext(body)]
        await asyncio.sleep(0.4)  # past its time
        more.set()
        await asyncio.sleep(0.1)  # "b" comes
        with pytest.raises(TimeoutError):
            got.append(await anext(body))
        assert got == [_event("a")]


class _Transport:
    """What a stream asks of its connection's transport, recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.closing = False

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return self.closing


async def test_a_stream_stops_its_connection_reading_while_its_reader_is_behind() -> None:
    stream, transport = Stream(), _Transport()
    stream.transport = transport  # type: ignore[assignment]
    half = b"x" * (STREAM_BUFFER // 2)
    stream.feed(half)
    stream.feed(half)
    assert transport.calls == []  # at the limit, not past it
    stream.feed(b"y")
    stream.feed(b"z")
    assert transport.calls == ["pause"]
    assert await stream.read() == half + half + b"yz"
    assert transport.calls == ["pause", "resume"]
    stream.feed(half + half + b"!")
    stream.end()  # the server finished the answer: the connection reads the next one
    assert transport.calls == ["pause", "resume", "pause", "resume"]
    assert await stream.read() == half + half + b"!"
    assert await stream.read() == b""


async def test_a_stream_cut_short_while_paused_leaves_a_closing_connection_alone() -> None:
    stream, transport = Stream(), _Transport()
    stream.transport = transport  # type: ignore[assignment]
    stream.feed(b"x" * (STREAM_BUFFER + 1))
    transport.closing = True
    stream.end(ConnectionResetError("gone"))
    assert transport.calls == ["pause"]
    assert len(await stream.read()) == STREAM_BUFFER + 1
    with pytest.raises(ConnectionResetError):
        await stream.read()


async def test_a_watch_read_slowly_holds_the_server_back_and_loses_nothing() -> None:
    """Four times the stream's buffer of events, sent as fast as the socket takes them, to a reader
    that stops after the first: the connection stops reading; then every event comes, in order, and
    the connection serves the next request."""
    event = _event("p" * 1000)
    count = 4 * STREAM_BUFFER // len(event)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(STREAM_HEAD)
        for _ in range(count):
            writer.write(_chunk(event))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()

    async with _server(serve) as (client, accepted):
        watching = client.watch(r.PODS, resource_version="1")
        got = [await anext(watching)]
        (conn,) = client._pool._streaming
        assert conn.transport is not None
        await poll(lambda: not conn.transport.is_reading(), timeout=5, interval=0.01, what="reading paused")
        got += [e async for e in watching]
        assert len(got) == count and all(e["object"]["metadata"]["name"] == "p" * 1000 for e in got)
        assert await client.request("GET", "/after") == {"ok": True}
        assert accepted == [1]
