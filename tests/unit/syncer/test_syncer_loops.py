"""The syncer's background loops outlive the errors they meet."""

import asyncio

import pytest

from syncer.engine import syncer as engine
from syncer.settings import SyncerOptions
from tispace import kubeconfig
from tispace.kube.client import Client


async def test_a_loop_that_fails_is_logged_counted_and_started_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead lease loop would take every virtual node NotReady; a dead worker shrinks the pool."""
    monkeypatch.setattr(engine, "RESTART_DELAY", 0.0)
    async with Client(kubeconfig.Credentials(server="http://127.0.0.1:9", ca_pem=b"")) as client:
        s = engine.Syncer(client, SyncerOptions())
        calls = 0
        again = asyncio.Event()

        async def flaky() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("Session is closed")  # a client closed under the loop's feet
            again.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(s._forever("worker-7", flaky))
        try:
            await asyncio.wait_for(again.wait(), 5)
        finally:
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # cancellation (shutdown) still ends it
        assert calls == 2
        assert (
            s.metrics.registry.get_sample_value("tispace_syncer_loop_restarts_total", {"loop": "worker"}) == 1
        )
        assert "worker-7 stopped; restarting it" in caplog.text and "Session is closed" in caplog.text
