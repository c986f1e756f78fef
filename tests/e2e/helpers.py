"""Polling helpers for e2e tests: wait on real state, never on the clock alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float = 60, what: str = "") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
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
