"""The worker: what it does with a key its reconcile could not finish."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from syncer.engine.metrics import Metrics
from syncer.engine.model import Unsynced, WorkKey
from syncer.engine.queue import FairQueue
from syncer.engine.tenant import TenantRuntime
from syncer.engine.worker import Worker
from tispace.aio import poll
from tispace.kube.client import ApiError


async def test_a_key_whose_cache_is_listing_is_reconciled_once_it_has_listed_and_not_before() -> None:
    queue: FairQueue[WorkKey] = FairQueue()
    queue.set_weight("t", 1)
    listed = asyncio.Event()
    seen: list[bool] = []

    async def reconcile(_: TenantRuntime, key: WorkKey) -> None:
        seen.append(listed.is_set())
        if not listed.is_set():
            raise Unsynced(listed)

    async def tell(_: TenantRuntime, key: WorkKey, err: ApiError) -> None:
        raise AssertionError("nothing is told")

    tenants = {"t": cast(TenantRuntime, cast(Any, object()))}
    worker = Worker(queue, Metrics(queue), tenants, reconcile, tell)
    running = asyncio.create_task(worker.run())
    try:
        queue.put("t", ("Pod", "app", "web"))
        await asyncio.sleep(0.6)  # longer than the half second a key used to come back after
        assert seen == [False]
        listed.set()
        await poll(lambda: len(seen) == 2, timeout=1, what="a second reconcile", interval=0.01)
        assert seen == [False, True]
    finally:
        running.cancel()
        queue.close()
