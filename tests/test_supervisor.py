"""cli/supervisor.py with small real child processes (python -c) and a real nats-server."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus.embedded import EmbeddedNats, free_port, start_nats_server
from cli.supervisor import Backoff, ChildSpec, StartFailed, Supervisor, port_open

PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(120)"]


def healthz_child(port: int) -> list[str]:
    """A child that answers GET /healthz on `port`."""
    code = textwrap.dedent(
        f"""
        import http.server
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *a): pass
        http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
        """
    )
    return [PY, "-c", code]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def until(predicate: Callable[[], bool], timeout: float, what: str, step: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        if step:
            step()
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "zombie" not in status


@pytest.fixture
def cleanup() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for s in made:
        s.stop()


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 30.0)
    assert [b.next() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    b.reset()
    assert b.next() == 0.5


def test_start_waits_for_each_health_url_in_order_and_stop_goes_in_reverse(cleanup: list[Supervisor]) -> None:
    a, b = free_port(), free_port()
    log = io.StringIO()
    sup = Supervisor(
        [ChildSpec("a", healthz_child(a), f"http://127.0.0.1:{a}/healthz"),
         ChildSpec("b", healthz_child(b), f"http://127.0.0.1:{b}/healthz")],
        log=log,
    )  # fmt: skip
    cleanup.append(sup)
    sup.start()
    assert port_open(a) and port_open(b)
    pids = [c.proc.pid for c in sup.children if c.proc]
    sup.stop()
    assert log.getvalue().splitlines() == ["trading-mcp up: stopped b", "trading-mcp up: stopped a"]
    assert not any(alive(p) for p in pids)


def test_a_child_that_exits_while_starting_fails_the_start_naming_it(cleanup: list[Supervisor]) -> None:
    sup = Supervisor(
        [ChildSpec("broken", [PY, "-c", "raise SystemExit(3)"], f"http://127.0.0.1:{free_port()}/healthz")],
        log=io.StringIO(),
    )
    cleanup.append(sup)
    with pytest.raises(StartFailed, match="broken exited with code 3"):
        sup.start()


def test_a_killed_child_is_restarted_and_healthy_again_and_the_restart_is_logged(cleanup: list[Supervisor]) -> None:
    port = free_port()
    log = io.StringIO()
    sup = Supervisor(
        [ChildSpec("svc", healthz_child(port), f"http://127.0.0.1:{port}/healthz"), ChildSpec("other", SLEEPER)],
        log=log,
    )
    cleanup.append(sup)
    sup.start()
    svc, other = sup.children
    assert svc.proc is not None and other.proc is not None
    first, other_pid = svc.proc.pid, other.proc.pid
    os.kill(first, signal.SIGKILL)
    until(
        lambda: svc.proc is not None and svc.proc.pid != first and svc.healthy_since is not None,
        15,
        "svc restarted and healthy",
        sup.poll,
    )
    assert "svc exited with code -9 (SIGKILL); restarting it in 0.5 s" in log.getvalue()
    assert other.proc.pid == other_pid, "the other child is left alone"
    assert svc.restarts == 1


def test_the_delay_doubles_while_a_child_keeps_dying_and_resets_after_60_s_healthy(cleanup: list[Supervisor]) -> None:
    clock = Clock()
    log = io.StringIO()
    sup = Supervisor([ChildSpec("flaky", [PY, "-c", "raise SystemExit(7)"])], clock=clock, log=log)
    cleanup.append(sup)
    sup.start()  # no health URL: started is healthy
    child = sup.children[0]
    delays = []
    for _ in range(4):
        assert child.proc is not None
        child.proc.wait(10)
        sup.poll()
        assert child.restart_at is not None
        delays.append(round(child.restart_at - clock.now, 3))
        clock.now = child.restart_at
        sup.poll()  # spawns it again
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert "flaky exited with code 7; restarting it in 4.0 s" in log.getvalue()

    # now it runs: healthy at once (no URL), for 61 s of the clock, then dies -> back to 0.5 s
    child.spec.argv = SLEEPER
    assert child.proc is not None
    child.proc.wait(10)
    sup.poll()
    clock.now = child.restart_at  # type: ignore[assignment]
    sup.poll()
    sup.poll()  # it is seen healthy
    assert child.healthy_since == clock.now
    clock.now += 61
    assert child.proc is not None
    child.proc.kill()
    child.proc.wait(10)
    sup.poll()
    assert child.restart_at == clock.now + 0.5


@pytest.fixture
def owned_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = start_nats_server(tmp_path / "nats")
    yield server
    server.stop()


def test_a_killed_nats_server_is_started_again_on_the_same_port_and_store(
    owned_nats: EmbeddedNats, tmp_path: Path, cleanup: list[Supervisor]
) -> None:
    started: list[EmbeddedNats] = []

    def restart(port: int) -> EmbeddedNats:
        server = start_nats_server(tmp_path / "nats", port)
        started.append(server)
        return server

    log = io.StringIO()
    sup = Supervisor([ChildSpec("svc", SLEEPER)], nats=owned_nats, nats_restart=restart, log=log)
    cleanup.append(sup)
    sup.start()
    owned_nats.kill()
    until(lambda: bool(started) and port_open(owned_nats.port), 15, "nats-server back", sup.poll)
    assert started[0].port == owned_nats.port and sup.nats is started[0]
    assert f"nats-server exited with code -9 (SIGKILL); restarting it on port {owned_nats.port}" in log.getvalue()
    svc = sup.children[0]
    assert svc.proc is not None and svc.proc.poll() is None and svc.restarts == 0, "the children stay"
    process = started[0].process
    assert process is not None
    sup.stop()
    assert process.poll() is not None, "stop() stops the nats-server it restarted"


class SilentNats:
    """A server whose process lives but whose port does not answer (a hung nats-server)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(SLEEPER)
        self.owned = True
        self.stopped = False

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped = True


def test_a_nats_port_that_stops_answering_gets_the_server_killed_and_restarted() -> None:
    clock = Clock()
    hung = SilentNats()
    restarted: list[int] = []
    replacement = SilentNats()

    def restart(port: int) -> SilentNats:
        restarted.append(port)
        return replacement

    log = io.StringIO()
    sup = Supervisor([], nats=hung, nats_restart=restart, clock=clock, log=log, nats_check_every_s=1.0)
    try:
        for _ in range(2):
            clock.now += 1.5
            sup.poll()
        assert restarted == [], "two missed checks are not enough"
        clock.now += 1.5
        sup.poll()
        assert restarted == [hung.port]
        assert hung.process is not None and hung.process.poll() is not None, "the hung server was killed"
        assert f"port {hung.port} did not answer 3 checks in a row" in log.getvalue()
    finally:
        for s in (hung, replacement):
            if s.process and s.process.poll() is None:
                s.process.kill()
                s.process.wait()


def test_a_failed_nats_restart_is_retried_with_backoff() -> None:
    clock = Clock()
    hung = SilentNats()
    assert hung.process is not None
    hung.process.kill()
    hung.process.wait()
    attempts: list[float] = []

    def restart(port: int) -> SilentNats:
        attempts.append(clock.now)
        raise RuntimeError("port taken")

    log = io.StringIO()
    sup = Supervisor([], nats=hung, nats_restart=restart, clock=clock, log=log)
    sup.poll()
    assert attempts == [clock.now] and sup.nats_restart_at == clock.now + 0.5
    clock.now += 0.4
    sup.poll()
    assert len(attempts) == 1
    clock.now += 0.1
    sup.poll()
    assert len(attempts) == 2 and sup.nats_restart_at == clock.now + 1.0
    assert "retrying in 1.0 s" in log.getvalue()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_a_supervisor_killed_with_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent_code = textwrap.dedent(
        f"""
        import time
        from cli.supervisor import ChildSpec, Supervisor
        s = Supervisor([ChildSpec("c", {SLEEPER!r})])
        s.start()
        open({str(pid_file)!r}, "w").write(str(s.children[0].proc.pid))
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([PY, "-c", parent_code])
    try:
        until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 15, "the child's pid")
        child = int(pid_file.read_text())
        assert alive(child)
        parent.kill()
        parent.wait(10)
        until(lambda: not alive(child), 10, "the orphan child to die")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
