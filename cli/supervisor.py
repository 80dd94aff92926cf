"""`trading-mcp up`'s supervisor: start the services in order, restart one that dies, keep NATS alive.

- Start: each child in order, the next only once the previous answers its health URL (a child that
  exits or stays unhealthy during start-up is a start failure: everything stops).
- Run: `poll()` restarts a child that exited, after a backoff (0.5 s doubling to 30 s; back to 0.5 s
  once the child had been healthy for 60 s), logging name, exit code and delay to stderr. It also
  restarts the embedded nats-server (through `nats_restart`) when its process exits or its port stops
  answering, on the same port and store; the children reconnect by themselves.
- Stop: children in reverse start order (SIGTERM, then SIGKILL after a grace period), then NATS.

On Linux each child gets `PR_SET_PDEATHSIG(SIGTERM)`, so a `kill -9` of `up` does not orphan it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM this child when the process that started it dies."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def http_ok(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


class StartFailed(RuntimeError):
    pass


@dataclass
class Backoff:
    """0.5 s doubling to 30 s; `reset()` after a child ran healthy long enough."""

    initial: float = 0.5
    maximum: float = 30.0
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.initial

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.initial


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    health_url: str | None = None  # None: alive is healthy


@dataclass
class Child:
    spec: ChildSpec
    backoff: Backoff
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    healthy_since: float | None = None
    restart_at: float | None = None  # set while waiting out the backoff
    restarts: int = 0


class NatsHandle(Protocol):
    """What the supervisor needs of the embedded server (bus.embedded.EmbeddedNats fits)."""

    port: int
    process: subprocess.Popen[bytes] | None
    owned: bool

    def stop(self, timeout: float = 10.0) -> None: ...


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        env: Mapping[str, str] | None = None,
        nats: NatsHandle | None = None,
        nats_restart: Callable[[int], NatsHandle] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        healthy_reset_s: float = 60.0,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        nats_check_every_s: float = 1.0,
        nats_unanswered_limit: int = 3,
        clock: Callable[[], float] = time.monotonic,
        log: IO[str] | None = None,
    ) -> None:
        self.children = [Child(s, Backoff(backoff_initial, backoff_max)) for s in specs]
        self.env = dict(env if env is not None else os.environ)
        self.nats = nats
        self.nats_restart = nats_restart
        self.nats_backoff = Backoff(backoff_initial, backoff_max)
        self.nats_restart_at: float | None = None
        self.nats_restarts = 0
        self._nats_unanswered = 0
        self._nats_checked_at = 0.0
        self.healthy_reset_s = healthy_reset_s
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.nats_check_every_s = nats_check_every_s
        self.nats_unanswered_limit = nats_unanswered_limit
        self.clock = clock
        self._log = log

    # ------------------------------------------------------------ helpers

    def log(self, text: str) -> None:
        print(f"trading-mcp up: {text}", file=self._log or sys.stderr, flush=True)

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            child.spec.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches `up` only; it stops the children in order
            preexec_fn=die_with_parent,  # noqa: PLW1509 (no threads here)
        )
        child.started_at = self.clock()
        child.healthy_since = None
        child.restart_at = None

    def _healthy(self, child: Child) -> bool:
        return child.spec.health_url is None or http_ok(child.spec.health_url)

    # ------------------------------------------------------------ start

    def start(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Start every child in order, each once the previous one is healthy. Raises StartFailed."""
        for child in self.children:
            self._spawn(child)
            assert child.proc is not None
            deadline = self.clock() + self.start_timeout_s
            while not self._healthy(child):
                if child.proc.poll() is not None:
                    raise StartFailed(
                        f"{child.spec.name} exited with code {exit_text(child.proc.returncode)} while starting; "
                        "see the log above"
                    )
                if should_stop():
                    raise StartFailed("interrupted while starting")
                if self.clock() > deadline:
                    raise StartFailed(
                        f"{child.spec.name}: {child.spec.health_url} did not answer within {self.start_timeout_s:.0f} s"
                    )
                time.sleep(0.1)
            child.healthy_since = self.clock()

    # ------------------------------------------------------------ run

    def poll(self) -> None:
        """One round: NATS first (the children need it), then every child."""
        self._poll_nats()
        now = self.clock()
        for child in self.children:
            proc = child.proc
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._spawn(child)
                continue
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                if child.healthy_since is None and self._healthy(child):
                    child.healthy_since = now
                continue
            if child.healthy_since is not None and now - child.healthy_since >= self.healthy_reset_s:
                child.backoff.reset()
            delay = child.backoff.next()
            child.restart_at = now + delay
            self.log(f"{child.spec.name} exited with code {exit_text(code)}; restarting it in {delay:.1f} s")

    def _poll_nats(self) -> None:
        if self.nats is None or self.nats_restart is None:
            return
        now = self.clock()
        if self.nats_restart_at is not None:
            if now < self.nats_restart_at:
                return
            self._restart_nats()
            return
        proc = self.nats.process
        dead_code = proc.poll() if proc is not None else None
        if dead_code is None:
            if now - self._nats_checked_at < self.nats_check_every_s:
                return
            self._nats_checked_at = now
            if port_open(self.nats.port):
                self._nats_unanswered = 0
                return
            self._nats_unanswered += 1
            if self._nats_unanswered < self.nats_unanswered_limit:
                return
            why = f"port {self.nats.port} did not answer {self._nats_unanswered} checks in a row"
        else:
            why = f"exited with code {exit_text(dead_code)}"
        self._nats_unanswered = 0
        with contextlib.suppress(Exception):  # a hung server we own: make sure it is gone
            if proc is not None and proc.poll() is None and self.nats.owned:
                proc.kill()
                proc.wait(5)
        self.log(f"nats-server {why}; restarting it on port {self.nats.port}")
        self._restart_nats()

    def _restart_nats(self) -> None:
        assert self.nats is not None and self.nats_restart is not None
        port = self.nats.port
        try:
            self.nats = self.nats_restart(port)
        except Exception as exc:
            delay = self.nats_backoff.next()
            self.nats_restart_at = self.clock() + delay
            self.log(f"nats-server did not start again ({exc}); retrying in {delay:.1f} s")
            return
        self.nats_restart_at = None
        self.nats_restarts += 1
        self.nats_backoff.reset()
        self.log(f"nats-server is back on port {self.nats.port}")

    def run(self, should_stop: Callable[[], bool], interval: float = 0.2) -> None:
        while not should_stop():
            self.poll()
            time.sleep(interval)

    # ------------------------------------------------------------ stop

    def stop(self) -> None:
        """Children in reverse start order, then the nats-server this process owns."""
        for child in reversed(self.children):
            proc, child.proc, child.restart_at = child.proc, None, None
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.log(f"stopped {child.spec.name}")
        if self.nats is not None and self.nats.owned:
            self.nats.stop()
            self.log("stopped nats-server")
