"""HTTP/1.1 for an API server's one-answer requests (get, create, patch, delete).

A request through aiohttp's session cost its caller ~250 us of CPU on top of the socket and TLS
work: session, request and response objects, header multidicts, timers, signals. The syncer sends
five or six such requests per pod it syncs, a quarter of its CPU per pod. Here a request is one
write of its bytes on a pooled keep-alive connection, and its answer is parsed by llhttp
(httptools, which uvicorn uses too): 135 instead of 340 us per GET with TLS. Watches and exec,
which stream, stay on aiohttp, and so do list pages, whose connection the watch after a list
takes. An answer must carry its length or be chunked, as Go's server sends every answer to an
HTTP/1.1 request; one that ends only when the connection closes is an error.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import NamedTuple, cast
from urllib.parse import quote, urlsplit

import httptools

TARGET_SAFE = "/?&=+%:@!$'()*,;-._~"
"""What a request target keeps as is (a query is already encoded); anything else is percent-encoded."""


class Response(NamedTuple):
    status: int
    body: bytes
    retry_after: str | None
    """The Retry-After header of a 429 or 503, if the server sent one."""


class CannotConnect(ConnectionError):
    """No connection to the server: refused, its name not resolved, no route, a handshake cut."""


class ServerDisconnected(ConnectionResetError):
    """The connection closed before the whole answer came (an idle connection the server had
    closed, or a server restart): nothing more is known, so callers retry as for any dropped connection."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.reusable = False
        self.answered = False
        """Whether any byte of the current request's answer came."""
        self._answer: asyncio.Future[Response] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._body: list[bytes] = []
        self._retry_after: str | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are no subclass of it

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for: the connection can't be trusted
            self.close()
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ConnectionResetError(f"unreadable HTTP answer: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self.transport = None
        self._fail(ServerDisconnected(f"connection closed before the answer: {exc or 'by the server'}"))

    # --- httptools callbacks ------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        answer, parser = self._answer, self._parser
        status = parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self._body, self._retry_after = [], None
            return
        self.reusable = parser.should_keep_alive()
        self._answer, self._parser = None, None
        if answer is not None and not answer.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            answer.set_result(Response(status, body, self._retry_after))

    # --- use ----------------------------------------------------------------------------------
    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._body, self._retry_after, self.reusable, self.answered = [], None, False, False
        self.transport.write(data)
        return self._answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self._answer = None


class Pool:
    """Keep-alive connections to one server: the most recently used is reused first, so a steady
    rate keeps few connections warm, and one idle longer than `keepalive` is closed, not reused
    (an API server closes its own after 90 s)."""

    def __init__(
        self, server: str, ssl_context: ssl.SSLContext | None, *, limit: int, keepalive: float
    ) -> None:
        url = urlsplit(server)
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl_context if url.scheme == "https" else None
        self._prefix = url.path.rstrip("/")
        self._host_header = f"Host: {url.netloc}\r\n".encode()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._keepalive = keepalive
        self._closed = False

    def head(self, method: str, target: str, headers: dict[str, str], length: int | None) -> bytes:
        """The request line and headers; `target` is the path and query, below the server's own path."""
        target = quote(self._prefix + target, safe=TARGET_SAFE)
        lines = [f"{method} {target} HTTP/1.1\r\n".encode(), self._host_header]
        lines += [f"{k}: {v}\r\n".encode() for k, v in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {length}\r\n".encode())
        lines.append(b"\r\n")
        return b"".join(lines)

    async def request(self, head: bytes, body: bytes | None, timeout: float, *, idempotent: bool) -> Response:
        """Send and wait for the answer, within `timeout` from the call. An idempotent request that
        finds its pooled connection closed by the server (it was idle there, the close crossed the
        request) goes again at once on a new connection, as aiohttp and browsers do."""
        if self._closed:
            raise RuntimeError("the client is closed")
        data = head + body if body else head
        async with asyncio.timeout(timeout), self._slots:
            conn = self._take()
            if conn is not None:
                try:
                    return await self._exchange(conn, data)
                except ServerDisconnected:
                    if not idempotent or conn.answered:
                        raise
            return await self._exchange(await self._open(), data)

    async def _exchange(self, conn: _Connection, data: bytes) -> Response:
        try:
            answer = await conn.send(data)
        except BaseException:
            conn.close()  # its state is unknown: a late answer must not meet the next request
            raise
        self._give_back(conn)
        return answer

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.open and now - conn.idle_since < self._keepalive:
                return conn
            conn.close()
        return None

    def _give_back(self, conn: _Connection) -> None:
        if not conn.reusable or not conn.open or self._closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        while self._idle and conn.idle_since - self._idle[0].idle_since >= self._keepalive:
            self._idle.pop(0).close()

    async def _open(self) -> _Connection:
        """A new connection; a failure names the server (the socket's own errors do not), and stays a
        ConnectionError to be retried, but for a certificate that fails."""
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        except TimeoutError:
            raise
        except OSError as e:
            cannot = f"cannot connect to {self._host}:{self._port}: {e.strerror or e}"
            if isinstance(e, ssl.SSLCertVerificationError):
                raise ssl.SSLCertVerificationError(e.errno, cannot) from e
            raise CannotConnect(cannot) from e
        return conn

    def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
