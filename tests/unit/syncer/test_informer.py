"""The informer against a loopback server: it resumes a broken watch, relists only on 410, and
keeps the echoes of the syncer's own settled writes to itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web

from syncer.engine.caches import ClientEffects, JustDone
from syncer.engine.informer import Informer, Packed
from syncer.engine.model import Write
from tests.unit.loopback import serving
from tispace.aio import poll
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client


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
        await poll(lambda: "watch@9" in requests, timeout=10, what="the watch from rv 9", interval=0.05)
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


def pod(rv: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "d", "uid": uid, "resourceVersion": rv}}


def answered(just: JustDone, answer: dict[str, Any]) -> None:
    """A settled write (a super delete, say) sent and answered with `answer`."""
    w = Write("super", "delete", r.PODS, "p", "d", settled=True)
    just.sending(w)
    just.sent(w, answer)


def test_an_echo_is_the_exact_object_a_settled_write_returned_and_is_heard_once() -> None:
    echoes = JustDone()
    answered(echoes, pod("7"))
    answered(echoes, {"metadata": {"name": "no-uid"}})  # a Status answer, say: nothing to hear
    assert not echoes.heard(pod("6"))  # an older state, or someone else's change
    assert not echoes.heard(pod("7", uid="u2"))
    assert echoes.heard(pod("7"))
    assert not echoes.heard(pod("7"))  # once: a relist replaying it is heard as usual


def test_steps_done_and_echoes_are_remembered_apart() -> None:
    just = JustDone()
    just.done("token", "u1")
    assert just.done_just_now("token", "u1") and not just.done_just_now("binding", "u1")
    assert not just.heard(pod("7"))  # a step done is not an echo of any resourceVersion
    answered(just, pod("7"))
    assert not just.done_just_now("7", "u1")  # nor is an echo a step of that name
    assert just.heard(pod("7")) and just.done_just_now("token", "u1")  # hearing it leaves the step


def test_steps_done_are_forgotten_after_their_time() -> None:
    just = JustDone(seconds=0)
    just.done("token", "u1")
    answered(just, pod("7"))
    assert not just.done_just_now("token", "u1") and not just.heard(pod("7"))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def list_then_watch(
    items: list[dict[str, Any]], events: list[tuple[str, Any]], finished: asyncio.Event
) -> Handler:
    """A server that lists `items`, then streams `events` on the first watch and stays quiet until
    `finished`."""
    served = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "1":
            return web.json_response({"metadata": {"resourceVersion": "5"}, "items": items})
        resp = web.StreamResponse()
        await resp.prepare(request)
        if not served.is_set():
            served.set()
            for etype, obj in events:
                await resp.write(orjson.dumps({"type": etype, "object": obj}) + b"\n")
        await finished.wait()
        return resp

    return handler


@pytest.mark.parametrize(
    ("with_old", "updated_from"),
    [(True, "7"), (False, None)],  # without with_old, an update's old object is not read (parsed)
)
async def test_the_echo_of_a_settled_write_is_cached_but_reported_to_nobody(
    with_old: bool, updated_from: str | None
) -> None:
    finished = asyncio.Event()
    events = [("ADDED", pod("6")), ("MODIFIED", pod("7")), ("MODIFIED", pod("8")), ("DELETED", pod("9"))]
    handler = list_then_watch([], events, finished)
    echoes = JustDone()
    answered(echoes, pod("7"))  # this process wrote rv 7 (a status, say)
    answered(echoes, pod("9"))  # a deletion is always heard, whoever made it
    changes: list[tuple[str | None, str | None]] = []

    def changed(key: Any, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        changes.append(
            (
                (old or {}).get("metadata", {}).get("resourceVersion"),
                (new or {}).get("metadata", {}).get("resourceVersion"),
            )
        )

    app = web.Application()
    app.router.add_get("/api/v1/pods", handler)
    async with serving(app) as creds:
        client = Client(creds)
        inf = Informer(client, r.PODS, changed, echo=echoes.heard, with_old=with_old)
        inf_task = asyncio.create_task(inf.run())
        try:
            await poll(lambda: len(changes) == 3, timeout=10, what="3 changes", interval=0.05)
            # rv 7 is not reported, but cached: the next change is reported from it; a delete
            # always tells what went
            assert changes == [(None, "6"), (updated_from, "8"), ("8", None)]
            assert inf.echoes == 1 and inf.cache == {}
        finally:
            finished.set()
            inf_task.cancel()
            await asyncio.gather(inf_task, return_exceptions=True)
            await client.close()


async def test_objects_not_kept_are_neither_cached_nor_reported() -> None:
    finished = asyncio.Event()
    listed = [cm("ours-a", "1"), cm("other-b", "2")]
    events = [
        ("ADDED", cm("other-c", "6")),  # never ours: nothing at all
        ("MODIFIED", cm("ours-a", "7")),
        ("MODIFIED", {"metadata": {**cm("ours-a", "8")["metadata"], "labels": {"drop": "me"}}}),
        ("DELETED", cm("other-c", "9")),
    ]
    handler = list_then_watch(listed, events, finished)

    def keep(obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj["metadata"]
        if not meta["name"].startswith("ours-") or meta.get("labels"):
            return None
        return obj

    changes: list[tuple[str, str | None, str | None]] = []

    def changed(key: Any, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        rv = [(o or {}).get("metadata", {}).get("resourceVersion") for o in (old, new)]
        changes.append((key[1], rv[0], rv[1]))

    app = web.Application()
    app.router.add_get("/api/v1/configmaps", handler)
    async with serving(app) as creds:
        client = Client(creds)
        inf = Informer(client, r.CONFIGMAPS, changed, keep=keep, with_old=True)
        task = asyncio.create_task(inf.run())
        try:
            await poll(lambda: len(changes) == 4, timeout=10, what="4 changes", interval=0.05)
            assert changes == [
                ("ours-a", None, "1"),  # the list holds only what is kept, trimmed
                ("ours-a", "1", "7"),
                ("ours-a", "7", None),  # no longer kept: dropped, and reported as gone
                ("other-c", None, None),  # a deletion is passed on, with nothing cached before it
            ]
            assert inf.cache == {}
        finally:
            finished.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()


def test_the_cache_holds_json_and_hands_out_copies() -> None:
    cache = Packed()
    pod = {"metadata": {"name": "a", "namespace": "n", "resourceVersion": "1"}, "spec": {"nodeName": "x"}}
    cache[("n", "a")] = pod
    pod["spec"]["nodeName"] = "changed after caching"
    read = cache[("n", "a")]
    assert read["spec"]["nodeName"] == "x"  # what was cached, not the caller's later edit
    read["spec"]["nodeName"] = "changed by a reader"
    assert cache[("n", "a")]["spec"]["nodeName"] == "x" and cache[("n", "a")] is not cache[("n", "a")]
    assert ("n", "a") in cache and ("n", "b") not in cache and len(cache) == 1 and list(cache) == [("n", "a")]
    assert cache == {("n", "a"): {"metadata": pod["metadata"], "spec": {"nodeName": "x"}}}
    assert cache.get(("n", "b")) is None and cache.pop(("n", "a"))["metadata"]["name"] == "a"
    assert cache == {} and len(cache) == 0


def on(name: str, node: str, rv: str = "1") -> dict[str, Any]:
    """A pod `name` bound to `node` ("" for none)."""
    meta = {"name": name, "namespace": "d", "uid": f"u-{name}", "resourceVersion": rv}
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}}


def node_of(obj: dict[str, Any]) -> str | None:
    return obj["spec"].get("nodeName")


def test_an_indexed_cache_counts_its_objects_as_they_come_and_go() -> None:
    cache = Packed(node_of)
    cache[("d", "a")], cache[("d", "b")], cache[("d", "c")] = on("a", "n1"), on("b", "n1"), on("c", "")
    assert cache.counts == {"n1": 2}  # an unbound pod counts nowhere
    cache[("d", "c")] = on("c", "n2")  # bound
    cache[("d", "a")] = on("a", "n1", rv="2")  # changed, on the same node
    del cache[("d", "b")]
    assert cache.counts == {"n1": 1, "n2": 1}
    cache.pop(("d", "a"))
    cache[("d", "c")] = on("c", "")
    assert cache.counts == {} and Packed().counts == {}  # none left at zero; no index, no counts


async def test_the_counts_follow_lists_watches_and_echoes() -> None:
    """Every way an object enters or leaves the cache counts, also the echo of a settled write, which
    nobody is told of."""
    finished = asyncio.Event()
    events = [
        ("MODIFIED", on("p2", "n1", rv="6")),
        ("ADDED", on("p3", "n2", rv="7")),
        ("DELETED", on("p1", "n1")),
    ]
    echoes = JustDone()
    answered(echoes, on("p2", "n1", rv="6"))  # the binding of p2, say
    app = web.Application()
    app.router.add_get("/api/v1/pods", list_then_watch([on("p1", "n1"), on("p2", "")], events, finished))
    async with serving(app) as creds, Client(creds) as client:
        inf = Informer(client, r.PODS, lambda key, old, new: None, echo=echoes.heard, index=node_of)
        task = asyncio.create_task(inf.run())
        try:
            await poll(
                lambda: ("d", "p3") in inf.cache and ("d", "p1") not in inf.cache,
                timeout=10,
                what="the last event",
                interval=0.05,
            )
            assert inf.echoes == 1 and inf.cache.counts == {"n1": 1, "n2": 1}
        finally:
            finished.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_binding_whose_event_a_list_took_in_has_no_echo() -> None:
    """The informer tells the echo check where the cached copy was bound: once a relist has shown the
    pod bound, its next event on that node is someone else's change (labels, say), not the binding's."""
    finished = asyncio.Event()
    echoes = JustDone()
    body = {"metadata": {"name": "p1", "uid": "u-p1"}, "target": {"name": "n1"}}
    echoes.sending(Write("tenant", "create", r.PODS, "p1", "d", body, subresource="binding", settled=True))
    changes: list[str] = []
    app = web.Application()
    app.router.add_get(
        "/api/v1/pods",
        list_then_watch([on("p1", "n1", rv="5")], [("MODIFIED", on("p1", "n1", rv="6"))], finished),
    )
    async with serving(app) as creds, Client(creds) as client:
        inf = Informer(
            client, r.PODS, lambda key, old, new: changes.append(key[1]), echo=echoes.heard, index=node_of
        )
        task = asyncio.create_task(inf.run())
        try:
            await poll(
                lambda: changes == ["p1", "p1"], timeout=10, what="the list and the event", interval=0.05
            )
            assert inf.echoes == 0
        finally:
            finished.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_list_is_read_page_by_page_and_watched_from_the_last_page() -> None:
    requests: list[str] = []
    finished = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "1":
            requests.append(f"watch@{request.query['resourceVersion']}")
            await finished.wait()
            return web.Response()
        requests.append(f"list limit={request.query['limit']} continue={request.query.get('continue', '')}")
        if "continue" not in request.query:
            page = {"metadata": {"resourceVersion": "7", "continue": "next"}, "items": [cm("a", "3")]}
        else:
            page = {"metadata": {"resourceVersion": "7"}, "items": [cm("b", "4"), cm("c", "5")]}
        return web.json_response(page)

    app = web.Application()
    app.router.add_get("/api/v1/configmaps", handler)
    changes: list[str] = []
    async with serving(app) as creds, Client(creds) as client:
        inf = Informer(client, r.CONFIGMAPS, lambda key, old, new: changes.append(key[1]))
        task = asyncio.create_task(inf.run())
        try:
            await poll(lambda: "watch@7" in requests, timeout=10, what="the watch from rv 7", interval=0.05)
            assert requests == ["list limit=500 continue=", "list limit=500 continue=next", "watch@7"]
            assert sorted(changes) == ["a", "b", "c"] and inf.get("d", "c") == cm("c", "5")
        finally:
            finished.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def bound(rv: str, node: str | None, phase: str = "Pending", uid: str = "u1", **meta: str) -> dict[str, Any]:
    obj = pod(rv, uid)
    obj["metadata"] |= meta
    return obj | {"spec": {"nodeName": node} if node else {}, "status": {"phase": phase}}


def test_the_echo_of_a_binding_is_the_pods_first_pending_event_on_its_node_and_is_heard_once() -> None:
    """A binding's answer is a Status: its echo is known by the node it names, remembered before it
    is sent (the event may come before the answer)."""
    just = JustDone()
    just.sending(binding_write())
    assert not just.heard(bound("6", None))  # before it: unbound
    assert not just.heard(bound("7", "n2"))  # another node
    assert not just.heard(bound("7", "n1", uid="u2"))  # another pod
    assert not just.heard(bound("7", "n1", deletionTimestamp="2026-12-07T00:00:00Z"))  # being deleted
    assert not just.heard(bound("7", "n1", phase="Running"))  # a status came with it: heard
    assert not just.heard(bound("7", "n1"), bound_before="n1")  # the cache had it bound: not the binding
    assert just.heard(bound("7", "n1"))
    assert not just.heard(bound("8", "n1"))  # once: a later change of the bound pod is heard
    just.sent(binding_write(), {"kind": "Status", "status": "Success"})
    assert not just.heard(bound("8", "n1"))


def test_a_binding_that_did_not_happen_has_no_echo() -> None:
    just = JustDone()
    just.sending(binding_write())
    just.sent(binding_write(), None)  # refused, or the pod was bound already
    assert not just.heard(bound("7", "n1"))


def status_write(status: dict[str, Any]) -> Write:
    return Write(
        "tenant",
        "patch",
        r.PODS,
        "p",
        "d",
        {"metadata": {"uid": "u1"}, "status": status},
        settled=True,
        subresource="status",
    )


def test_the_echo_of_a_status_write_is_heard_before_or_after_its_answer_once() -> None:
    running = {"phase": "Running", "podIP": "10.0.0.9"}
    just = JustDone()
    w = status_write(running)
    just.sending(w)
    assert not just.heard(bound("7", "n1"))  # not that status yet: someone else's change
    assert not just.heard(bound("8", "n1", phase="Running"))  # part of it
    event = bound("9", "n1", phase="Running")
    event["status"] |= {"podIP": "10.0.0.9", "startTime": "2026-12-07T00:00:00Z"}  # kept by the merge
    assert just.heard(event)  # before its answer
    just.sent(w, event)
    assert not just.heard(event)  # once

    just.sending(w)
    just.sent(w, event | {"metadata": event["metadata"] | {"resourceVersion": "10"}})
    assert not just.heard(
        bound("11", "n1", phase="Running")
    )  # after the answer only its exact object is the echo
    assert just.heard(event | {"metadata": event["metadata"] | {"resourceVersion": "10"}})


def test_an_event_taken_for_a_status_writes_echo_that_was_not_is_told() -> None:
    """A status write that changed nothing has no event: another change that came meanwhile and
    showed that status was taken for its echo, and the answer (another resourceVersion) says so."""
    just = JustDone()
    w = status_write({"phase": "Running"})
    just.sending(w)
    assert just.heard(bound("8", "n1", phase="Running"))  # a label change, say
    assert just.sent(w, bound("7", "n1", phase="Running"))  # the answer: the object as it was
    just.sending(w)
    assert just.heard(bound("9", "n1", phase="Running"))
    assert not just.sent(w, bound("9", "n1", phase="Running"))  # the echo it was
    just.sending(w)
    assert just.heard(bound("10", "n1", phase="Running"))
    assert just.sent(w, None)  # a write that failed has no echo


def test_an_empty_status_write_has_no_echo_but_its_answer() -> None:
    just = JustDone()
    just.sending(status_write({}))
    assert not just.heard(bound("7", "n1"))


def test_a_status_write_that_failed_has_no_echo() -> None:
    just = JustDone()
    w = status_write({"phase": "Running"})
    just.sending(w)
    just.sent(w, None)
    assert not just.heard(bound("7", "n1", phase="Running"))


class Binder:
    """A tenant client whose binding answers after its echo reached the informer (as a watch event
    can come before the answer of the write that made it), or is refused."""

    def __init__(self, just: JustDone, refusal: int | None = None) -> None:
        self.just, self.refusal = just, refusal
        self.heard_first: bool | None = None

    async def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if self.refusal:
            raise ApiError(self.refusal, {"message": "no"}, method, path)
        self.heard_first = self.just.heard(bound("7", "n1"))
        return {"kind": "Status", "status": "Success"}


def binding_write() -> Write:
    body = {"metadata": {"name": "p", "uid": "u1"}, "target": {"name": "n1"}}
    return Write(
        "tenant", "create", r.PODS, "p", "d", body, subresource="binding", conflict_ok=True, settled=True
    )


async def test_a_settled_bindings_echo_is_heard_even_before_its_answer() -> None:
    just = JustDone()
    client = Binder(just)
    fx = ClientEffects(SimpleNamespace(client=client, name="t"), client, just)  # type: ignore[arg-type]
    assert await fx.write(binding_write()) is not None
    assert client.heard_first


@pytest.mark.parametrize("refusal", [409, 422])
async def test_a_binding_refused_leaves_no_echo_to_hear(refusal: int) -> None:
    """Refused, or bound already (409): a later event of the pod on that node is no echo."""
    just = JustDone()
    client = Binder(just, refusal)
    fx = ClientEffects(SimpleNamespace(client=client, name="t"), client, just)  # type: ignore[arg-type]
    if refusal == 409:
        assert await fx.write(binding_write()) is None
    else:
        with pytest.raises(ApiError):
            await fx.write(binding_write())
    assert not just.heard(bound("7", "n1"))


class Unchanged:
    """A tenant client whose status write changes nothing (the object comes back as it was, rv 7),
    while someone else's change showing that status (rv 8) reaches the informer."""

    def __init__(self, just: JustDone) -> None:
        self.just = just

    async def patch(self, *args: Any, **kw: Any) -> dict[str, Any]:
        assert self.just.heard(bound("8", "n1", phase="Running"))
        return bound("7", "n1", phase="Running")


async def test_a_status_write_whose_echo_was_misheard_queues_its_pod_again() -> None:
    just = JustDone()
    queued: list[Any] = []
    client = Unchanged(just)
    t = SimpleNamespace(client=client, name="t", enqueue=queued.append)
    fx = ClientEffects(t, client, just)  # type: ignore[arg-type]
    await fx.write(status_write({"phase": "Running"}))
    assert queued == [("Pod", "d", "p")]


async def test_a_resource_an_older_server_does_not_serve_is_listed_empty_only_when_served_in_no_form() -> (
    None
):
    served: list[dict[str, Any]] | None = None  # None: 404
    requests: list[str] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        requests.append("watch" if request.query.get("watch") == "1" else "list")
        if served is None:
            raise web.HTTPNotFound()
        if requests[-1] == "list":
            return web.json_response({"metadata": {"resourceVersion": "1"}, "items": served})
        resp = web.StreamResponse()
        await resp.prepare(request)
        await done.wait()
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/configmaps", handler)
    # served in no form; then not known (discovery failed); then in another form (v1beta1 turned on)
    answers: list[bool | Exception] = [True, ValueError("bad discovery"), False]

    async def unserved() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    listed: list[tuple[bool, bool]] = []
    async with serving(app) as creds:
        client = Client(creds)
        inf = Informer(client, r.CONFIGMAPS, lambda *_: None, unserved=unserved)
        inf.on_listed = lambda: listed.append((inf.synced.is_set(), inf.absent))
        task = asyncio.create_task(inf.run())
        try:
            await poll(lambda: len(listed) == 1, timeout=5, what="the first answer", interval=0.01)
            assert listed == [(True, True)] and not inf.cache and requests == ["list"]
            inf.relist()  # asked again at once, not after a minute; not known to be absent until then
            assert not inf.synced.is_set()
            await poll(lambda: len(listed) == 2, timeout=5, what="the second answer", interval=0.01)
            assert listed[1] == (False, False) and not task.done()  # a failed answer: not known
            inf.relist()
            await poll(lambda: len(listed) == 3, timeout=5, what="the third answer", interval=0.01)
            assert listed[2] == (False, False) and requests == ["list"] * 3  # served otherwise: not known
            served = [cm("a", "1")]
            inf.relist()
            await poll(lambda: len(listed) == 4, timeout=5, what="the list once served", interval=0.01)
            assert listed[3] == (True, False) and list(inf.cache) == [("d", "a")]
            await poll(lambda: "watch" in requests, timeout=5, what="the watch", interval=0.01)
        finally:
            done.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()


async def test_an_informer_waiting_on_an_unserved_resource_stops_when_cancelled_as_it_is_woken() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    async def unserved() -> bool:
        return True

    app = web.Application()
    app.router.add_get("/api/v1/configmaps", handler)
    async with serving(app) as creds:
        client = Client(creds)
        inf = Informer(client, r.CONFIGMAPS, lambda *_: None, unserved=unserved)
        task = asyncio.create_task(inf.run())
        try:
            await poll(lambda: inf.absent, timeout=5, what="the resource absent", interval=0.01)
            inf.relist()  # a rollout's relist, and the tenant stopped in the same moment
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=5)  # a bound, not a timing
            assert task in done and task.cancelled()
        finally:
            task.cancel()
            await client.close()
