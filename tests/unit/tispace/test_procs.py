import json
import socket
import sys
import time
from pathlib import Path

from tispace import procs


def test_spawn_alive_stop_and_tail(tmp_path: Path) -> None:
    script = "import sys,time; print('hello', flush=True); time.sleep(60)"
    p = procs.spawn("sleeper", [sys.executable, "-c", script], tmp_path / "log")
    try:
        assert procs.alive(p)
        for _ in range(100):
            if "hello" in procs.tail(p.log):
                break
            time.sleep(0.05)
        assert procs.tail(p.log) == "hello"
        assert procs.rss_bytes(p.pid) > 0
        assert procs.rss_bytes(p.pid, peak=True) > 0
        assert 0 < procs.private_bytes(p.pid) < procs.rss_bytes(p.pid)  # the interpreter's code is shared
    finally:
        procs.stop(p)
    assert not procs.alive(p)
    assert procs.rss_bytes(p.pid) == procs.private_bytes(p.pid) == 0


def test_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    p = procs.spawn("s", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "log")
    try:
        impostor = procs.Proc(name="s", pid=p.pid, argv=("/usr/bin/other",), log=p.log)
        assert not procs.alive(impostor)
    finally:
        procs.stop(p)


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    script = (
        "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    p = procs.spawn("stubborn", [sys.executable, "-c", script], tmp_path / "log")
    while procs.tail(p.log) != "1":
        pass
    procs.stop(p, timeout=0.3)
    assert not procs.alive(p)


def test_free_port_is_free() -> None:
    port = procs.free_port()
    assert not procs.port_open(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert procs.port_open(port)


def test_a_port_is_handed_out_once_though_nothing_listens_on_it_yet() -> None:
    """Ports are listened on later (a tenant's controller-manager after its API server): the kernel
    offering a port it already gave out must not make two callers share it."""
    ports = [procs.free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_registry_round_trip(tmp_path: Path) -> None:
    reg = procs.Registry(tmp_path / "state.json")
    assert reg.load() == []
    c = procs.Component(procs.Proc("a", 1, ("x", "--y"), "/l"), 5, "http://127.0.0.1:5/healthz")
    reg.save([c])
    assert reg.load() == [c]
    reg.clear()
    assert reg.load() == []


def test_a_restart_keeps_the_environment_it_was_started_with(tmp_path: Path) -> None:
    """Tenant control planes run with GOGC/GOMEMLIMIT: a restart after a crash must not drop them."""
    script = "import os,time; print(os.environ['TISPACE_T'], flush=True); time.sleep(60)"
    reg = procs.Registry(tmp_path / "state.json")
    first = procs.spawn("e", [sys.executable, "-c", script], tmp_path / "log", {"TISPACE_T": "kept"})
    reg.save([procs.Component(first, 1, "")])
    while procs.tail(first.log) != "kept":
        time.sleep(0.05)
    procs.stop(first)
    (loaded,) = reg.load()
    assert loaded.proc.env == (("TISPACE_T", "kept"),)
    again = procs.respawn(loaded)
    try:
        for _ in range(200):
            if procs.tail(again.proc.log).endswith("kept\nkept"):
                break
            time.sleep(0.05)
        assert procs.tail(again.proc.log, 2).splitlines() == ["kept", "kept"]
    finally:
        procs.stop(again.proc)


def test_a_registry_written_before_env_was_recorded_loads(tmp_path: Path) -> None:
    proc = {"name": "a", "pid": 1, "argv": ["x"], "log": "/l"}
    (tmp_path / "state.json").write_text(
        json.dumps({"components": [{"proc": proc, "port": 5, "health": ""}]})
    )
    assert procs.Registry(tmp_path / "state.json").load()[0].proc.env == ()


def test_tail_of_missing_log() -> None:
    assert procs.tail("/nonexistent/log") == "(no log)"


def test_nothing_is_healthy_on_a_closed_port() -> None:
    assert not procs.healthy(f"http://127.0.0.1:{procs.free_port()}/healthz")
