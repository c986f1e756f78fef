"""Structured logs for every program: time, level, logger, message, then tenant/kind/object fields."""

from __future__ import annotations

import logging

FIELDS = ("owner", "tenant", "kind", "object", "informer")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if hasattr(record, f))
        return f"{line} {extras}" if extras else line


def setup(verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
