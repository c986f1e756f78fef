import asyncio
import contextlib
from collections import Counter

import pytest

from syncer.engine.queue import FairQueue


async def test_dedup_while_waiting() -> None:
    q: FairQueue[str] = FairQueue()
    q.set_weight("a", 1)
    for _ in range(3):
        q.put("a", "k")
    assert q.depth() == 1
    assert await q.get() == ("a", "k")
    assert q.depth() == 0


async def test_key_in_flight_is_not_handed_out_twice_but_requeued_when_dirty() -> None:
    q: FairQueue[str] = FairQueue()
    q.set_weight("a", 1)
    q.put("a", "k")
    assert await q.get() == ("a", "k")
    q.put("a", "k")  # changed while processing
    assert q.depth() == 0
    q.done("a", "k")
    assert q.depth() == 1
    assert await q.get() == ("a", "k")


async def test_noisy_tenant_does_not_starve_quiet_ones() -> None:
    q: FairQueue[int] = FairQueue()
    for t in ("noisy", "quiet1", "quiet2"):
        q.set_weight(t, 1)
    for i in range(1000):
        q.put("noisy", i)
    q.put("quiet1", 0)
    q.put("quiet2", 0)
    first = [(await q.get())[0] for _ in range(3)]
    assert sorted(first) == ["noisy", "quiet1", "quiet2"]


async def test_weights_share_the_workers() -> None:
    q: FairQueue[int] = FairQueue()
    q.set_weight("heavy", 3)
    q.set_weight("light", 1)
    for i in range(100):
        q.put("heavy", i)
        q.put("light", i)
    got = Counter([(await q.get())[0] for _ in range(40)])
    assert got == {"heavy": 30, "light": 10}


async def test_unknown_or_removed_tenant_keys_are_dropped() -> None:
    q: FairQueue[str] = FairQueue()
    q.put("nobody", "k")
    assert q.depth() == 0
    q.set_weight("a", 1)
    q.put("a", "k")
    q.remove_tenant("a")
    assert q.depth() == 0 and q.tenants() == []


async def test_put_after_and_close() -> None:
    q: FairQueue[str] = FairQueue()
    q.set_weight("a", 1)
    q.put_after("a", "later", 0.01)
    assert await asyncio.wait_for(q.get(), 1) == ("a", "later")
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.close()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert waiter.done()


async def test_keys_parked_on_a_cache_wait_for_it_to_list_then_go_once() -> None:
    q: FairQueue[str] = FairQueue()
    q.set_weight("a", 1)
    listed = asyncio.Event()
    for key in ("k1", "k2", "k1"):
        q.put_when("a", key, listed)
    assert q.depth() == q.depth("a") == 2 and q.depth("b") == 0  # parked keys are waiting too
    q.put("a", "k2")  # changed meanwhile: queued as well
    assert q.depth() == 3
    assert await asyncio.wait_for(q.get(), 1) == ("a", "k2")
    q.done("a", "k2")
    await asyncio.sleep(0.01)
    assert q.depth() == 2  # not polled: the parked keys wait while the cache lists
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), 0.05)
    listed.set()
    got = {await asyncio.wait_for(q.get(), 1), await asyncio.wait_for(q.get(), 1)}
    assert got == {("a", "k1"), ("a", "k2")} and q.depth() == 0
    q.put_when("a", "k3", listed)  # already listed: queued at once
    assert q.depth() == 1


async def test_a_removed_tenant_leaves_no_parked_keys_and_no_waiting_task() -> None:
    others = asyncio.all_tasks()  # the test loop is shared: other tests' tasks are not ours
    q: FairQueue[str] = FairQueue()
    q.set_weight("a", 1)
    q.set_weight("b", 1)
    theirs, shared = asyncio.Event(), asyncio.Event()
    q.put_when("a", "k", theirs)
    q.put_when("a", "k", shared)
    q.put_when("b", "k", shared)
    waiting = asyncio.all_tasks() - others
    assert len(waiting) == 2
    assert q.depth() == 3 and q.depth("a") == 2
    q.remove_tenant("a")
    assert q.depth() == 1
    await asyncio.sleep(0)
    assert [t.cancelled() for t in waiting].count(True) == 1  # the event only "a" waited for
    q.put_when("a", "k", asyncio.Event())  # a stopped tenant's late key parks nothing
    assert q.depth() == 1 and asyncio.all_tasks() - others <= waiting
    shared.set()
    assert await asyncio.wait_for(q.get(), 1) == ("b", "k")
    q.set_weight("a", 1)
    theirs.set()
    await asyncio.sleep(0.01)
    assert q.depth() == 0
    q.put_when("b", "k2", asyncio.Event())
    q.close()
    q.put_when("b", "k3", asyncio.Event())  # closed: nothing waits any more
    await asyncio.sleep(0)
    assert all(t.done() for t in asyncio.all_tasks() - others)


async def test_a_capped_tenant_waits_for_its_keys_in_flight_while_others_go_on() -> None:
    q: FairQueue[int] = FairQueue()
    q.set_weight("capped", 5, limit=2)
    q.set_weight("free", 1)
    for i in range(10):
        q.put("capped", i)
    first = [await q.get() for _ in range(2)]
    assert [t for t, _ in first] == ["capped", "capped"]
    q.put("free", 0)
    assert await q.get() == ("free", 0)  # the capped tenant has 2 in flight: its turn is skipped
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()  # only capped keys are left, and it is at its cap
    q.done(*first[0])
    assert (await asyncio.wait_for(waiter, 1))[0] == "capped"
    q.set_weight("capped", 5, limit=0)  # the cap can be lifted at runtime
    more = [await q.get() for _ in range(3)]
    assert all(t == "capped" for t, _ in more)


async def test_a_rate_limited_tenant_gets_its_rate_while_others_go_on() -> None:
    now = [100.0]
    q: FairQueue[int] = FairQueue(clock=lambda: now[0])
    q.set_weight("slow", 1, rate=2)
    q.set_weight("fast", 1)
    for i in range(5):
        q.put("slow", i)
        q.put("fast", i)
    got = Counter([(await q.get())[0] for _ in range(7)])
    assert got == {"slow": 2, "fast": 5}  # a full bucket holds one second's worth
    waiting = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # no token yet, on this clock
    now[0] += 0.5  # one token's time
    assert await asyncio.wait_for(waiting, 5) == ("slow", 2)
    assert q.depth("slow") == 2


async def test_a_rate_limit_can_be_lifted() -> None:
    q: FairQueue[int] = FairQueue(clock=lambda: 0.0)
    q.set_weight("t", 1, rate=1)
    for i in range(3):
        q.put("t", i)
    assert await q.get() == ("t", 0)
    q.set_weight("t", 1, rate=0)
    assert [await asyncio.wait_for(q.get(), 5) for _ in range(2)] == [("t", 1), ("t", 2)]


async def test_without_fairness_keys_go_out_in_arrival_order() -> None:
    q: FairQueue[int] = FairQueue(fair=False)
    for t in ("noisy", "quiet"):
        q.set_weight(t, 1, limit=1)
    for i in range(5):
        q.put("noisy", i)
    q.put("quiet", 0)
    order = [await q.get() for _ in range(6)]
    assert order == [*(("noisy", i) for i in range(5)), ("quiet", 0)]  # the quiet key waits its turn


def test_shares_report_what_the_queue_applies() -> None:
    q: FairQueue[str] = FairQueue()
    assert q.shares("a") == {}
    q.set_weight("a", 3, limit=8, rate=0.5)
    assert q.shares("a") == {"weight": 3, "concurrency": 8, "rate": 0.5}
    q.set_weight("a", 0, limit=-1, rate=-2)  # nonsense is clamped, as applied
    assert q.shares("a") == {"weight": 1, "concurrency": 0, "rate": 0.0}
