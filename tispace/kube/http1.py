"""HTTP/1.1 for an API server's requests and watches.

A request through aiohttp's session cost its caller ~250 us of CPU on top of the socket and TLS
work: session, request and response objects, header multidicts, timers, signals. The syncer sends
five or six such requests per pod it syncs, a quarter of its CPU per pod. Here a request is one
write of its bytes on a pooled keep-alive connection, and its answer is parsed by llhttp (httptools,
which uvicorn uses too): 135 instead of 340 us per GET with TLS. A watch's answer is streamed
(`Pool.stream`) on the same pool: the watch after a list takes the list's connection, a watch the
server ended leaves its connection to the next request, closing the pool ends its watches, and a
watch whose reader falls behind stops reading its socket (STREAM_BUFFER). Exec (a WebSocket) stays
on aiohttp. An answer must carry its length or be chunked, as Go's server sends every answer to an
HTTP/1.1 request; one that ends only when the connection closes is an error.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncGenerator
from typing import NamedTuple, cast
from urllib.parse import quote, urlsplit

import httptools

TARGET_SAFE = "/?&=+%:@!$'()*,;-._~"
"""What a request target keeps as is (a query is already encoded); anything else is percent-encoded."""
_TO_QUOTE = re.compile(f"[^A-Za-z0-9{re.escape(TARGET_SAFE)}]")
"""Finds what `quote` would change: nearly every target has nothing, and is sent as it is."""


STREAM_BUFFER = 1 << 20
"""Most bytes a stream holds for a reader that fell behind before its connection stops reading (as
aiohttp's did at its high-water mark): a slow reader of a busy watch holds the server back, through
TCP, instead of filling this process's memory."""


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


class Refused(Exception):
    """A streamed request's answer that is not 2xx: it came whole, and says why."""

    def __init__(self, answer: Response) -> None:
        super().__init__(f"answered {answer.status}")
        self.answer = answer


class Stream:
    """A streamed answer's body as it comes (a watch): what came since the last read, then the end."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._held = 0
        self._waiter: asyncio.Future[None] | None = None
        self.ended = False
        self.error: BaseException | None = None
        """Why the body ended before the server finished it (None: it finished it)."""
        self.transport: asyncio.Transport | None = None
        """The connection's, once the body comes: paused while STREAM_BUFFER bytes wait for the reader."""
        self._paused = False

    def feed(self, chunk: bytes) -> None:
        if self.ended:  # bytes after a timeout are not handed out
            return
        self._chunks.append(chunk)
        self._held += len(chunk)
        if self._held > STREAM_BUFFER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def end(self, error: BaseException | None = None) -> None:
        if not self.ended:
            self.ended, self.error = True, error
            self._resume()  # the connection reads the next answer, or is closing
            self._wake()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        """The bytes that came since the last read, waiting for some; b"" once the body is over. A
        body cut short raises why, after the bytes that came before."""
        while not self._chunks and not self.ended:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks, self._chunks, self._held = self._chunks, [], 0
        self._resume()
        if not chunks and self.error is not None:
            raise self.error
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
        self._stream_to: Stream | None = None
        """Takes the body of a 2xx answer to a streamed request, once its head has come."""
        self._stream: Stream | None = None
        """The stream taking the body now: the answer's head has been given."""

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

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if self._stream_to is None or not 200 <= status < 300:
            return  # the whole answer is awaited (an interim one's head comes here too)
        self._stream, self._stream_to = self._stream_to, None
        self._stream.transport = self.transport
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result(Response(status, b"", None))

    def on_body(self, body: bytes) -> None:
        if self._stream is not None:
            self._stream.feed(body)
        else:
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
        if self._stream is not None:
            self._stream.end()
            self._stream = None
        elif answer is not None and not answer.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            answer.set_result(Response(status, body, self._retry_after))

    # --- use ----------------------------------------------------------------------------------
    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, data: bytes, stream: Stream | None = None) -> asyncio.Future[Response]:
        """The answer, whole; or, with a `stream`, a 2xx answer's head, its body going to the stream."""
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._body, self._retry_after, self.reusable, self.answered = [], None, False, False
        self._stream_to, self._stream = stream, None
        self.transport.write(data)
        return self._answer

    def close(self, why: Exception | None = None) -> None:
        """Close; an answer or stream still awaited here ends with `why` (else: connection lost)."""
        if why is not None:
            self._fail(why)
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self._stream is not None:
            self._stream.end(exc)
            self._stream = None
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
        self._streaming: set[_Connection] = set()
        """Connections whose answer is streaming now: closed with the pool, which ends their streams."""

    def head(self, method: str, target: str, headers: dict[str, str], length: int | None) -> bytes:
        """The request line and headers; `target` is the path and query, below the server's own path."""
        target = self._prefix + target
        if _TO_QUOTE.search(target):
            target = quote(target, safe=TARGET_SAFE)
        lines = [f"{method} {target} HTTP/1.1\r\n".encode(), self._host_header]
        lines += [f"{k}: {v}\r\n".encode() for k, v in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {length}\r\n".encode())
        lines.append(b"\r\n")
        return b"".join(lines)

    async def request(self, head: bytes, body: bytes | None, timeout: float, *, idempotent: bool) -> Response:
        """Send and wait for the answer, within `timeout` from the call."""
        if self._closed:
            raise RuntimeError("the client is closed")
        async with asyncio.timeout(timeout), self._slots:
            conn, answer = await self._exchange(head + body if body else head, None, idempotent)
        self._give_back(conn)
        return answer

    async def stream(self, head: bytes, *, timeout: float, lasts: float) -> AsyncGenerator[bytes, None]:
        """A GET whose answer streams (a watch): its body as it comes, until the server ends it or
        `lasts` seconds have passed (TimeoutError). Its head must come within `timeout`; an answer
        that is not 2xx raises Refused. A stream holds its connection, outside the request limit,
        and gives it back to the pool when the server ended it."""
        if self._closed:
            raise RuntimeError("the client is closed")
        stream = Stream()
        async with asyncio.timeout(timeout):
            conn, answer = await self._exchange(head, stream, True)
        if self._closed:  # while the head was awaited
            conn.close()
            raise RuntimeError("the client is closed")
        if not 200 <= answer.status < 300:
            self._give_back(conn)
            raise Refused(answer)
        self._streaming.add(conn)
        timer = asyncio.get_running_loop().call_later(
            lasts, stream.end, TimeoutError(f"the answer streamed for {lasts:.0f} s without ending")
        )
        try:
            while data := await stream.read():
                yield data
        finally:
            timer.cancel()
            self._streaming.discard(conn)
            if stream.ended and stream.error is None:
                self._give_back(conn)
            else:
                conn.close()  # cut short, or left by its reader: the rest must not meet the next request

    async def _exchange(
        self, data: bytes, stream: Stream | None, idempotent: bool
    ) -> tuple[_Connection, Response]:
        """The answer on a pooled connection, or on a new one. An idempotent request that finds its
        pooled connection closed by the server (it was idle there, the close crossed the request)
        goes again at once on a new connection, as aiohttp and browsers do."""
        conn = self._take()
        try:
            if conn is not None:
                try:
                    return conn, await conn.send(data, stream)
                except ServerDisconnected:
                    if not idempotent or conn.answered:
                        raise
            conn = await self._open()
            return conn, await conn.send(data, stream)
        except BaseException:
            if conn is not None:
                conn.close()  # its state is unknown: a late answer must not meet the next request
            raise

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
        for conn in [*self._idle, *self._streaming]:
            conn.close(RuntimeError("the client is closed"))
        self._idle.clear()
