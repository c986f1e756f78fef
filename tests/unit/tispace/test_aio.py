"""`aio.poll`: checks at once, then every interval, once more at the deadline; says what timed out."""

import asyncio
import gc
import time

import pytest

from tispace import aio


async def test_returns_the_first_value_that_is_not_none_or_false() -> None:
    answers = iter([None, False, 0, 7])
    assert await aio.poll(lambda: next(answers), timeout=5, what="an answer", interval=0.01) == 0


async def test_an_async_check_is_awaited() -> None:
    calls: list[float] = []

    async def check() -> str | None:
        calls.append(time.monotonic())
        return "ready" if len(calls) == 3 else None

    assert await aio.poll(check, timeout=5, what="ready", interval=0.01) == "ready"
    assert len(calls) == 3


async def test_true_is_a_result() -> None:
    assert await aio.poll(lambda: True, timeout=0, what="true") is True


async def test_timeout_names_what_did_not_happen_and_checks_at_the_deadline() -> None:
    calls: list[float] = []

    def never() -> None:
        calls.append(time.monotonic())

    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^pod web Running: not within 0.3s$"):
        await aio.poll(never, timeout=0.3, what="pod web Running", interval=0.2)
    assert 0.3 <= time.monotonic() - t0 < 2.0
    assert calls[0] - t0 < 0.1 and calls[-1] - t0 >= 0.3  # at once, ..., and at the deadline


async def test_a_callable_description_is_asked_when_the_time_is_up() -> None:
    seen: list[str] = []

    def check() -> None:
        seen.append(f"phase {len(seen)}")

    with pytest.raises(TimeoutError, match=r"^Running \(last: phase 1\): not within 0.05s$"):
        await aio.poll(check, timeout=0.05, what=lambda: f"Running (last: {seen[-1]})", interval=0.1)


async def test_errors_of_the_check_propagate() -> None:
    def broken() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await aio.poll(broken, timeout=5, what="never")


async def test_a_slow_check_does_not_stretch_the_deadline_by_an_interval() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.15)

    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await aio.poll(slow, timeout=0.2, what="slow", interval=1)
    assert time.monotonic() - t0 < 1.0  # not 0.15 + 1


def test_a_program_runs_with_the_gc_tuned_for_parsing() -> None:
    """Its cyclic GC runs 70 times less often, and never scans what the imports made."""
    before = gc.get_threshold()

    async def main() -> tuple[int, int, int]:
        return gc.get_threshold()

    try:
        assert aio.run(main()) == aio.GC_THRESHOLDS != before
        assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
