"""Local processes that outlive the program that started them.

Control-plane processes are started in their own session with output to a log file and
tracked by pid plus the binary path, so a later `tispace` run (or a restarted manager)
can find them again, tell a live process from a recycled pid, and stop them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cachetools import TTLCache

START_TIMEOUT = 90.0


class StartError(RuntimeError):
    """A component failed to start; the message carries its log tail."""


@dataclass(frozen=True)
class Proc:
    """A started process: enough to find, check and stop it later."""

    name: str
    pid: int
    argv: tuple[str, ...]
    log: str
    env: tuple[tuple[str, str], ...] = ()
    """Variables set on top of the caller's environment (kept for a restart)."""


_HANDED_OUT: TTLCache[int, bool] = TTLCache(maxsize=10_000, ttl=600)
"""Ports free_port gave in the last 10 minutes (long enough for their listener to have started)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and not one this process handed out
    lately: a port is often listened on seconds later (a tenant's controller-manager waits for its
    API server, and keeps its port across restarts), and the kernel offers the same free port again
    (144 repeats in 2,000 calls here): two tenants' components on one port, one crash-looping."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT[port] = True
            return port


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start `argv` detached (own session), appending stdout and stderr to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        p = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return Proc(name=name, pid=p.pid, argv=tuple(argv), log=str(log), env=tuple(sorted((env or {}).items())))


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(proc: Proc) -> bool:
    """True when `proc.pid` runs and still is the binary we started (not a recycled pid)."""
    _reap(proc.pid)
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return False
    if cmdline[0] == b"":
        return True  # between fork and exec, or /proc not yet updated: the pid is live and not reused yet
    return cmdline[0].decode() == proc.argv[0]


def stop(proc: Proc, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; returns when the process is gone."""
    if not alive(proc):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(proc):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)


def rss_bytes(pid: int, *, peak: bool = False) -> int:
    """Resident memory of a process, now or at its peak (0 when it is gone)."""
    field = "VmHWM:" if peak else "VmRSS:"
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def private_bytes(pid: int) -> int:
    """Memory only this process holds (0 when it is gone): its RSS without the pages it shares, such
    as a binary's code that every copy of a component maps once (what one more copy costs)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except FileNotFoundError:
        return 0
    fields = dict(line.split(":", 1) for line in text.splitlines()[1:])
    return sum(int(fields[f].split()[0]) * 1024 for f in ("Private_Clean", "Private_Dirty"))


def tail(path: str | Path, lines: int = 20) -> str:
    """The last `lines` lines of a log, for error messages."""
    try:
        data = Path(path).read_bytes()[-16384:]
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def healthy(url: str) -> bool:
    """GET `url` answers 200 (TLS not verified: health ports serve self-signed certs)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class Component:
    """A started process that serves a port with a health URL."""

    proc: Proc
    port: int
    health: str

    @property
    def name(self) -> str:
        return self.proc.name

    def ok(self) -> bool:
        return alive(self.proc) and healthy(self.health)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.proc.pid,
            "port": self.port,
            "alive": alive(self.proc),
            "healthy": healthy(self.health),
            "rss": rss_bytes(self.proc.pid),
        }


def wait_healthy(component: Component, timeout: float = START_TIMEOUT) -> None:
    """Block until the component is healthy; fail fast with its log tail if it dies."""
    deadline = time.monotonic() + timeout
    while not healthy(component.health):
        if not alive(component.proc):
            raise StartError(
                f"{component.name} exited during start; last lines of {component.proc.log}:\n"
                f"{tail(component.proc.log)}"
            )
        if time.monotonic() > deadline:
            raise StartError(
                f"{component.name} not healthy at {component.health} after {timeout:.0f}s; "
                f"last lines of {component.proc.log}:\n{tail(component.proc.log)}"
            )
        time.sleep(0.2)


def respawn(comp: Component, argv: list[str] | None = None) -> Component:
    """Start a (stopped or dead) component again: same log and port, same command line unless given."""
    cmd = list(comp.proc.argv) if argv is None else argv
    return Component(spawn(comp.name, cmd, Path(comp.proc.log), dict(comp.proc.env)), comp.port, comp.health)


class Registry:
    """Components recorded in a JSON file, so another run can find and stop them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[Component]:
        if not self.path.exists():
            return []
        return [
            Component(
                proc=Proc(
                    **{
                        **c["proc"],
                        "argv": tuple(c["proc"]["argv"]),
                        "env": tuple((k, v) for k, v in c["proc"].get("env", ())),
                    }
                ),
                port=c["port"],
                health=c["health"],
            )
            for c in json.loads(self.path.read_text())["components"]
        ]

    def save(self, components: list[Component]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"components": [asdict(c) for c in components]}, indent=1))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def restart(
        self, name: str, *, timeout: float = 60, argv: Callable[[list[str]], list[str]] | None = None
    ) -> Component:
        """Stop the recorded component `name` and start it again on its port, with the same command
        line or the one `argv` makes of it."""
        comps = self.load()
        current = next((c for c in comps if c.name == name), None)
        if current is None:
            raise StartError(f"{name} is not recorded in {self.path}")
        stop(current.proc)
        comp = respawn(current, argv(list(current.proc.argv)) if argv else None)
        self.save([c for c in comps if c.name != name] + [comp])
        wait_healthy(comp, timeout=timeout)
        return comp
