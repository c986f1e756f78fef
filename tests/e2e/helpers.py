"""Polling helpers for e2e tests: wait on real state, never on the clock alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import dns.resolver

from tispace.kube import resources as r
from tispace.kube.client import Client

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float = 120, what: str = "") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` (a bound sized
    for a loaded 2-core machine: a passing test never waits for it)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = await check()
        except Exception as e:  # noqa: BLE001 - remembered and reported on timeout
            last = e
        else:
            if result:
                return result
            last = result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


async def syncer_status(port: int) -> dict[str, Any]:
    """A syncer's /status: the tenants it serves (each with its queue, shares and whether its
    informers have listed) and, with shards, its membership."""
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/status") as resp:
        body: dict[str, Any] = await resp.json()
    return body


def processes_mentioning(*texts: str) -> list[Path]:
    """/proc entries whose command line contains every one of `texts`."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmd = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if all(t in cmd for t in texts):
            found.append(proc_dir)
    return found


def pod(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], **spec},
    }


async def live_pods(client: Client, ns: str, label: str = "") -> list[dict]:
    """Pods in `ns` (matching `label`) that are not being deleted."""
    items = (await client.list(r.PODS, ns, label_selector=label))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def running(client: Client, ns: str, n: int, label: str = "") -> list[dict] | None:
    """Exactly `n` live pods, every one Running with an IP; else None."""
    pods = await live_pods(client, ns, label)
    ok = [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
    return ok if len(ok) == n == len(pods) else None


async def event(client: Client, ns: str, reason: str, involved: str = "") -> dict | None:
    """An event in `ns` with that reason (about the object named `involved`, when given)."""
    items = (await client.list(r.EVENTS, ns))["items"]
    return next(
        (e for e in items if e["reason"] == reason and involved in ("", e["involvedObject"].get("name"))),
        None,
    )


async def absent(client: Client, res: r.Resource, name: str, ns: str | None = None) -> bool:
    return await client.get_or_none(res, name, ns) is None


def resolver(vc: dict) -> dns.resolver.Resolver:
    host, port = vc["status"]["dnsEndpoint"].rsplit(":", 1)
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [host]
    res.port = int(port)
    res.lifetime = 10
    return res


def _a(res: dns.resolver.Resolver, name: str) -> list[str]:
    return sorted(rr.address for rr in res.resolve(name, "A"))


async def answer(res: dns.resolver.Resolver, name: str) -> list[str] | None:
    try:
        return await asyncio.to_thread(_a, res, name)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.LifetimeTimeout):
        return None


async def bound(client: Client, ns: str, n: int) -> list[dict] | None:
    claims = (await client.list(r.PVCS, ns))["items"]
    ok = [c for c in claims if (c.get("status") or {}).get("phase") == "Bound"]
    return ok if len(ok) == n == len(claims) else None


def _serves(crd: dict | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


async def established(client: Client, crd: str) -> bool:
    """The CRD serves its kind. (`kubectl wait --for=condition=Established` fails outright when it
    reads the CRD before its first condition: "status.conditions accessor error".)"""
    return _serves(await client.get_or_none(r.CRDS, crd))


async def all_established(client: Client) -> set[str] | None:
    """Names of the CRDs once every one serves its kind (`established` for `crd --all`)."""
    crds = (await client.list(r.CRDS))["items"]
    return {c["metadata"]["name"] for c in crds} if crds and all(map(_serves, crds)) else None
