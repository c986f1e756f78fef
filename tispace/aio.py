"""Asyncio helpers every program needs: `run`, the event loop a program runs on, and `poll`, the one
way to wait until something is so.

Waiting loops written by hand drifted apart (one checked before sleeping, one after; one
forgot the last check at the deadline; each phrased its timeout differently). `poll` checks
at once, then every `interval` seconds, once more exactly at the deadline, and says in its
TimeoutError what did not happen.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, overload

import uvloop

T = TypeVar("T")


GC_THRESHOLDS = (50_000, 50, 100)
"""Python's cyclic GC collects its youngest objects every 700 allocations (every 10th time the older
ones too): parsing JSON makes hundreds of thousands of dicts, lists and strings that die with the
page, and ran it thousands of times (5,000 pods in pages of 500 parsed in 0.41 s with the defaults,
0.24 s with these thresholds, beside 300,000 live objects). Nearly all of a program's garbage is
freed by reference counting; cycles still go, 70 times less often. A restarted syncer at 20 x 250
resynced in 8.1-9.0 s instead of 9.2-11.3, on 4.7-4.8 instead of 5.6-5.8 CPU-s (docs/benchmarks.md,
"Eighth round")."""


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived program (syncer, vc_manager, vn_agent) or the benchmark's load on uvloop's
    event loop: its transports, TLS and timers are C, so a request or watch event costs the syncer
    13-15% less CPU than on asyncio's loop, and a TLS connection 66 instead of 78 KiB (docs/benchmarks.md,
    "Fourth round"); a load generator sharing the machine takes less of what it measures. With the
    cyclic GC tuned for programs that parse a lot of JSON (GC_THRESHOLDS)."""
    gc.collect()  # no garbage frozen with the rest
    gc.freeze()  # what the imports made lives as long as the program: never scanned again
    gc.set_threshold(*GC_THRESHOLDS)
    return uvloop.run(main)


@overload
async def poll(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = ...,
) -> T: ...


@overload
async def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = ...,
) -> T: ...


async def poll(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.2,
) -> Any:
    """Call `check` (plain or async) until it returns something other than None or False; return that.

    `what` names what is awaited ("VirtualCluster default/dev Running"); a callable is asked only
    when the time is up, so it can tell the last state seen. After `timeout` seconds: TimeoutError
    "<what>: not within <timeout>s". Exceptions of `check` propagate: a check that tolerates some
    failures catches them itself and returns None.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result is not None and result is not False:
            return result
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"{what() if callable(what) else what}: not within {timeout:g}s")
        await asyncio.sleep(min(interval, remaining))
