"""An async Kubernetes client on dicts: get, list, watch, create, patch, delete.

Requests and watches over a lean keep-alive pool (http1); exec over an aiohttp session; JSON parsed
with orjson; no model classes, so the syncer's hot path pays for
bytes -> dict once. Transient failures (429, 5xx, dropped connections) are retried with backoff
here, so callers only handle answers that mean something.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import builtins
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import tenacity

from tispace import kubeconfig, pki
from tispace.kube import http1
from tispace.kube import resources as r
from tispace.kube.resources import Resource

TLS_READ_BUFFER = 16 * 1024
"""Bytes asyncio's own loop reads from a TLS connection at once: one TLS record. Its default, 256 KiB,
is allocated and zeroed per connection, and a watch holds one connection (316 -> 78 KiB RSS per
watch). The programs run on uvloop (tispace.aio.run), whose buffer is not zeroed (66 KiB); the
CLI, the bench and the tests run on asyncio's loop and open watches too."""
asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER  # no API sets it

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE"})
"""Sent again at once when the server closed their pooled connection as they went (http1.Pool)."""
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiError(Exception):
    """A non-2xx answer of the API server, with its Status fields."""

    def __init__(
        self, status: int, body: dict[str, Any] | None, method: str, path: str, retry_after: float = 0.0
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked us to wait (Retry-After of a 429 or 503), 0 if it did not say."""
        self.body = body or {}
        self.reason = str(self.body.get("reason", ""))
        self.message = str(self.body.get("message", ""))
        super().__init__(f"{method} {path}: {status} {self.reason}: {self.message}")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiError):
        return exc.status in RETRY_STATUSES
    # Any socket failure (a refused or dropped connection, a name not resolved for now, no route
    # while an address moves, a handshake cut by a restart), but not a certificate that fails.
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, OSError | aiohttp.ClientConnectionError)


_backoff = tenacity.wait_exponential_jitter(multiplier=0.1, max=5)


def _wait(state: tenacity.RetryCallState) -> float:
    """Exponential backoff, but never sooner than the server's Retry-After (as client-go does)."""
    exc = state.outcome.exception() if state.outcome else None
    asked = exc.retry_after if isinstance(exc, ApiError) else 0.0
    return max(_backoff(state), min(asked, 30.0))


def _retry_after(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:  # an HTTP date: rare from an API server, and a plain backoff is fine
        return 0.0


def _answer(answer: http1.Response, method: str, path: str) -> dict[str, Any]:
    """The parsed answer, or the ApiError it says."""
    if answer.status >= 400:
        raise _error(answer, method, path)
    return _parsed(answer.body) or {}


def _error(answer: http1.Response, method: str, path: str) -> ApiError:
    """What an answer that failed says: one of 400 or more, or a watch's that is not 2xx."""
    return ApiError(answer.status, _parsed(answer.body), method, path, _retry_after(answer.retry_after))


def _parsed(raw: bytes) -> dict[str, Any] | None:
    """A JSON object's body parsed; None for any other (an empty body, a proxy's text)."""
    return orjson.loads(raw) if raw[:1] == b"{" else None


def ssl_context(creds: kubeconfig.Credentials) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=creds.ca_pem.decode() if creds.ca_pem else None)
    if creds.cert_pem:
        pki.load_into(ctx, creds.cert_pem, creds.key_pem)
    return ctx


WATCH_HEAD_SECONDS = 60.0
"""How long a watch waits for its answer's head: an API server sends it at once, unless its priority
and fairness queue the watch, for up to its 60 s request timeout."""

KEEPALIVE_SECONDS = 60.0
"""How long an idle connection stays pooled: under the API server's own 90 s idle timeout, and over
the syncer's 20 s Lease period, so that periodic work reuses its connections. With aiohttp's 15 s,
every Lease round opened (and TLS-handshook) them anew: a fifth of an idle syncer's CPU at 20 tenants."""


class Client:
    """One API server. Create inside a running event loop; `close()` when done."""

    def __init__(self, creds: kubeconfig.Credentials, *, name: str = "", attempts: int = 6) -> None:
        self.creds = creds
        self.name = name
        self._ssl = ssl_context(creds)
        # No gzip: an API server compresses every response over 128 KiB (a list) when asked, which
        # costs both ends CPU to save bandwidth. The programs run beside their API servers, as
        # kube-controller-manager and kube-scheduler do, which turn it off too (client-go's
        # DisableCompression); the CLI reads little.
        self._headers = {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "tispace"}
        self._pool = http1.Pool(creds.server, self._ssl, limit=100, keepalive=KEEPALIVE_SECONDS)
        """Requests and watches; exec goes through the aiohttp session."""
        self._session = aiohttp.ClientSession(
            base_url=creds.server,
            headers=self._headers,
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=100, keepalive_timeout=KEEPALIVE_SECONDS),
        )
        self._attempts = attempts
        self._retry = tenacity.AsyncRetrying(  # the attempts after the first (see `request`)
            retry=tenacity.retry_if_exception(_retryable),
            wait=_wait,
            stop=tenacity.stop_after_attempt(attempts - 1),
            reraise=True,
        )

    def auth_headers(self) -> dict[str, str]:
        """The bearer token, read per request so a rotated service-account token is picked up."""
        token = self.creds.bearer()
        return {"Authorization": f"Bearer {token}"} if token else {}

    @classmethod
    def from_kubeconfig(cls, path: Path, **kw: Any) -> Client:
        return cls(kubeconfig.load(path), **kw)

    async def close(self) -> None:
        self._pool.close()
        await self._session.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- raw -----------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> dict[str, Any]:
        """One request, retried on transient failures."""
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        headers = self._headers | self.auth_headers()
        if data is not None:
            headers["Content-Type"] = content_type
        target = f"{path}?{urlencode(params)}" if params else path
        head = self._pool.head(method, target, headers, None if data is None else len(data))
        send = functools.partial(self._send, method, path, head, data, timeout)
        # The first attempt outside tenacity: its per-call state cost 15% of a request's client CPU,
        # and nearly every request succeeds at once. A failure waits as a retry would, then retries.
        try:
            return await send()
        except Exception as e:
            if not _retryable(e) or self._attempts == 1:
                raise
            failed = tenacity.RetryCallState(self._retry, None, (), {})
            failed.set_exception((type(e), e, e.__traceback__))
        await asyncio.sleep(_wait(failed))
        async for attempt in self._retry.copy():  # a copy per call: retry state is per request
            with attempt:
                return await send()
        raise AssertionError("unreachable: tenacity reraises")

    async def _send(
        self, method: str, path: str, head: bytes, data: bytes | None, timeout: float
    ) -> dict[str, Any]:
        answer = await self._pool.request(head, data, timeout, idempotent=method in IDEMPOTENT_METHODS)
        return _answer(answer, method, path)

    # --- verbs ---------------------------------------------------------------------------
    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self.request("GET", res.path(namespace, name))

    async def get_text(self, path: str) -> str:
        """A GET whose answer is not JSON (node proxy, metrics); failures raise ApiError."""
        head = self._pool.head("GET", path, self._headers | self.auth_headers(), None)
        status, body, _ = await self._pool.request(head, None, 30, idempotent=True)
        if status >= 400:
            if (parsed := _parsed(body)) is None:
                parsed = {"message": body[:300].decode(errors="replace")}
            raise ApiError(status, parsed, "GET", path)
        return body.decode()

    async def get_or_none(
        self, res: Resource, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:
            return await self.get(res, name, namespace)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def list(
        self, res: Resource, namespace: str | None = None, *, label_selector: str = "", limit: int = 500
    ) -> dict[str, Any]:
        """All items (pages followed); the result's metadata carries the list resourceVersion."""
        items: list[dict[str, Any]] = []
        async for page in self.pages(res, namespace, label_selector=label_selector, limit=limit):
            items.extend(page.get("items") or [])
        page["items"] = items
        return page

    async def pages(
        self, res: Resource, namespace: str | None = None, *, label_selector: str = "", limit: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Each page of a list as it comes, for callers that keep less than the whole list parsed;
        the last page's metadata carries the list resourceVersion."""
        params = {"limit": str(limit)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.request("GET", res.path(namespace), params=params, timeout=120)
            yield page
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                return
            params["continue"] = cont

    async def exec_collect(
        self, namespace: str, pod: str, container: str, command: builtins.list[str], *, timeout: float = 60
    ) -> tuple[dict[str, Any], bytes]:
        """Run a command in a pod (exec over WebSocket, no stdin) and return (Status, stdout+stderr)."""
        params = [("container", container), ("stdout", "true"), ("stderr", "true")]
        params += [("command", c) for c in command]
        out = bytearray()
        status: dict[str, Any] = {}
        async with self._session.ws_connect(
            r.PODS.path(namespace, pod, "exec"),
            params=params,
            protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"),
            headers=self.auth_headers(),
            timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
        ) as ws:
            async with asyncio.timeout(timeout):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                        continue
                    channel, data = msg.data[0], msg.data[1:]
                    if channel in (1, 2):
                        out += data
                    elif channel == 3:
                        status = orjson.loads(data)
        return status, bytes(out)

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str,
        label_selector: str = "",
        timeout_seconds: int = 300,
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events as dicts (`type`, `object`), bookmarks included; ends when the server does."""
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        path = res.path(namespace)
        head = self._pool.head(
            "GET", f"{path}?{urlencode(params)}", self._headers | self.auth_headers(), None
        )
        body = self._pool.stream(head, timeout=WATCH_HEAD_SECONDS, lasts=timeout_seconds + 30)
        try:
            async with contextlib.aclosing(body):  # a reader that stops early frees the connection now
                buf = bytearray()
                async for chunk in body:
                    buf += chunk
                    start = 0
                    while (end := buf.find(b"\n", start)) >= 0:
                        if end > start:
                            yield orjson.loads(buf[start:end])
                        start = end + 1
                    del buf[:start]
        except http1.Refused as e:
            raise _error(e.answer, "WATCH", path) from None

    async def create(
        self, res: Resource, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        return await self.request("POST", res.path(namespace), body=obj)

    async def ensure(self, resource: Resource, body: dict[str, Any], namespace: str | None = None) -> bool:
        """Create unless it exists: True when created, False when the name was taken (409, whatever
        the existing object holds); any other failure raises."""
        try:
            await self.create(resource, body, namespace)
        except ApiError as e:
            if e.status != 409:
                raise
            return False
        return True

    async def replace(
        self, res: Resource, obj: dict[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.request("PUT", res.path(meta.get("namespace"), meta["name"], subresource), body=obj)

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        field_manager: str = "tispace",
        force: bool = False,
    ) -> dict[str, Any]:
        params = {"fieldManager": field_manager}
        if force:
            params["force"] = "true"
        return await self.request(
            "PATCH",
            res.path(namespace, name, subresource),
            params=params,
            body=patch,
            content_type=PATCH_TYPES[patch_type],
        )

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        grace_period: int | None = None,
        uid: str | None = None,
        propagation: str = "Background",
    ) -> dict[str, Any] | None:
        """Delete; None when already gone. `uid` makes it a precondition (never delete a namesake)."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            return await self.request("DELETE", res.path(namespace, name), body=body)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
