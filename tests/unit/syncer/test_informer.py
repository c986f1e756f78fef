"""The informer against a loopback server: it resumes a broken watch, and relists only on 410."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from syncer.engine.informer import Informer
from tests.unit.loopback import serving
from tispace.kube import resources as r
from tispace.kube.client import Client


def cm(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "d", "resourceVersion": rv}}


async def test_a_broken_watch_resumes_and_an_expired_one_relists() -> None:
    requests: list[str] = []
    finished = asyncio.Event()
    lists = [[cm("a", "1"), cm("b", "2")], [cm("a", "1"), cm("c", "6")]]

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "1":
            requests.append("list")
            items = lists.pop(0)
            return web.json_response({"metadata": {"resourceVersion": "5" if lists else "9"}, "items": items})
        rv = request.query["resourceVersion"]
        requests.append(f"watch@{rv}")
        resp = web.StreamResponse()
        await resp.prepare(request)
        if rv == "5":  # one event, then the connection breaks mid-stream
            await resp.write(orjson.dumps({"type": "ADDED", "object": cm("c", "6")}) + b"\n")
            request.transport.close()  # type: ignore[union-attr]
            return resp
        if rv == "6":  # resumed where it stopped, but the server has forgotten that far back
            gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
            await resp.write(orjson.dumps({"type": "ERROR", "object": gone}) + b"\n")
            return resp
        await finished.wait()  # rv 9: a quiet, healthy watch
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/configmaps", handler)
    async with serving(app) as creds:
        await _run(Client(creds), requests, finished)


async def _run(client: Client, requests: list[str], finished: asyncio.Event) -> None:
    changes: list[tuple[str, bool]] = []
    inf = Informer(client, r.CONFIGMAPS, lambda key, old, new: changes.append((key[1], new is not None)))
    task = asyncio.create_task(inf.run())
    try:
        for _ in range(200):
            if "watch@9" in requests:
                break
            await asyncio.sleep(0.05)
        assert requests == ["list", "watch@5", "watch@6", "list", "watch@9"]
        assert (inf.relists, inf.expired) == (2, 1)
        assert sorted(k[1] for k in inf.cache) == ["a", "c"]
        assert ("b", False) in changes  # gone while the watch was expired: reported as deleted
        assert changes.count(("c", True)) == 1  # seen on the watch; unchanged at the relist
    finally:
        finished.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
