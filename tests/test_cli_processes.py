"""The user's path through real processes: `trading-mcp up`, `send-signal`, restart, supervision, and the
stdio server."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from bus.embedded import EmbeddedNats, free_port

EXE = str(Path(sys.executable).parent / "trading-mcp")

# `up` starts the order authority (`trading-mcp authority`); without its package `up` cannot start.
requires_authority = pytest.mark.skipif(
    importlib.util.find_spec("authority.service") is None, reason="the authority package is not there yet"
)


def free_ports() -> dict[str, int]:
    picked: set[int] = set()
    while len(picked) < 5:
        picked.add(free_port())
    return dict(zip(("gw", "mcp", "ex", "au", "nats"), sorted(picked), strict=True))


# where each `up` started by _up writes its stderr (unless the test passes its own), for _wait_banner's failure message
_UP_LOGS: dict[int, Path] = {}


def _up(data_dir: Path, ports: dict[str, int], stderr: int | object = None) -> subprocess.Popen[bytes]:
    """Start `trading-mcp up`; its stderr goes to `stderr`, else to a fresh log file beside the data dir."""
    log = None
    if stderr is None:
        log = data_dir.parent / f"up-{len(list(data_dir.parent.glob('up-*.log')))}.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        stderr = open(log, "wb")  # noqa: SIM115  (the child holds it; ours is closed below)
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["TRADING_MCP_NATS_PORT"] = str(ports["nats"])
    proc = subprocess.Popen(
        [
            EXE,
            "up",
            "--data-dir",
            str(data_dir),
            "--gateway-port",
            str(ports["gw"]),
            "--mcp-port",
            str(ports["mcp"]),
            "--execsim-port",
            str(ports["ex"]),
            "--authority-port",
            str(ports["au"]),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,  # type: ignore[arg-type]
    )
    if log is not None:
        stderr.close()  # type: ignore[union-attr]
        _UP_LOGS[proc.pid] = log
    return proc


def processes_of(data_dir: Path) -> dict[int, str]:
    """pid -> command line of every live process whose command line names the data dir."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(data_dir) in cmdline and "zombie" not in (proc / "status").read_text():
                found[int(proc.name)] = cmdline
        except OSError:
            continue
    return found


def pid_of(data_dir: Path, service: str) -> int | None:
    pids = [pid for pid, cmd in processes_of(data_dir).items() if f"cli.main {service} " in cmd]
    return pids[0] if len(pids) == 1 else None


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def send_signal(
    data_dir: Path, gw_port: int, symbol: str = "AAPL", price: str = "190.25"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "send-signal", "--data-dir", str(data_dir), "--url", f"http://127.0.0.1:{gw_port}/webhook",
         "--symbol", symbol, "--price", price, "--action", "buy", "--quantity", "10"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


async def signal_symbols(mcp_port: int) -> list[str]:
    async with Client(f"http://127.0.0.1:{mcp_port}/mcp") as client:
        result = await client.call_tool("list_signals", {})
    return [s["symbol"] for s in result.structured_content["signals"]]


def _wait_banner(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            raise AssertionError(f"up exited early: {''.join(lines)}{_stderr_tail(proc)}")
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(lines)
    raise AssertionError(f"no banner{_stderr_tail(proc)}")


def _stderr_tail(proc: subprocess.Popen[bytes]) -> str:
    log = _UP_LOGS.get(proc.pid)
    if log is None:
        return ""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)  # the exit's last words are written before it ends
    return f"\n--- up's stderr ({log}), last 4000 characters ---\n{log.read_text(errors='replace')[-4000:]}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0


async def _aapl_quantity(url: str) -> Decimal | None:
    async with Client(url) as client:
        result = await client.call_tool("get_positions", {})
    for p in result.structured_content["positions"]:
        if p["symbol"] == "AAPL":
            return Decimal(p["quantity"])
    return None


@requires_authority
async def test_up_send_signal_and_restart_keep_the_position(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = free_ports()
    proc = _up(data_dir, ports)
    try:
        banner = _wait_banner(proc)
        assert f"http://127.0.0.1:{ports['mcp']}/mcp" in banner and "mcpServers" in banner
        secret = (data_dir / "webhook_secret").read_text().strip()
        assert secret.startswith("whsec_")
        sent = subprocess.run(
            [
                EXE,
                "send-signal",
                "--data-dir",
                str(data_dir),
                "--url",
                f"http://127.0.0.1:{ports['gw']}/webhook",
                "--symbol",
                "AAPL",
                "--price",
                "190.25",
                "--action",
                "buy",
                "--quantity",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0 and sent.stdout.startswith("202 "), sent.stdout + sent.stderr
        url = f"http://127.0.0.1:{ports['mcp']}/mcp"
        deadline = time.monotonic() + 10
        while await _aapl_quantity(url) != 10:
            assert time.monotonic() < deadline, "no AAPL position within 10 s"
        nats_pid = json.loads((data_dir / "nats.json").read_text())["pid"]
        for port in (ports["gw"], ports["mcp"], ports["ex"], ports["au"]):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                assert r.status == 200
    finally:
        _stop(proc)
    assert not (data_dir / "nats.json").exists(), "the embedded nats-server state file outlived `up`"
    assert not Path(f"/proc/{nats_pid}").exists() or "zombie" in Path(f"/proc/{nats_pid}/status").read_text(), (
        "Ctrl-C must stop the nats-server child too"
    )

    proc = _up(data_dir, ports)
    try:
        _wait_banner(proc)
        assert (data_dir / "webhook_secret").read_text().strip() == secret, "the secret must be reused"
        assert await _aapl_quantity(f"http://127.0.0.1:{ports['mcp']}/mcp") == 10
    finally:
        _stop(proc)


@requires_authority
async def test_up_restarts_a_killed_service_and_the_embedded_nats_server_and_sigterm_leaves_nothing(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    ports = free_ports()
    log = tmp_path / "up.log"
    with open(log, "wb") as err:
        proc = _up(data_dir, ports, stderr=err)
    try:
        _wait_banner(proc)
        # a service killed -9 is started again, on its port
        first = pid_of(data_dir, "execsim")
        assert first is not None, processes_of(data_dir)
        os.kill(first, signal.SIGKILL)
        until(lambda: pid_of(data_dir, "execsim") not in (None, first), 15, "a new execsim process")
        until(lambda: healthy(f"http://127.0.0.1:{ports['ex']}/healthz"), 30, "the new execsim healthy")
        assert "execsim exited with code -9 (SIGKILL); restarting it in 0.5 s" in log.read_text()

        # the embedded nats-server killed -9 comes back on the same port and store; the services reconnect
        nats_pid = json.loads((data_dir / "nats.json").read_text())["pid"]
        os.kill(nats_pid, signal.SIGKILL)

        def new_nats() -> bool:
            try:
                state = json.loads((data_dir / "nats.json").read_text())
            except (OSError, ValueError):
                return False
            return bool(state["pid"] != nats_pid and state["port"] == ports["nats"])

        until(new_nats, 20, "a new nats-server on the same port")
        until(lambda: healthy(f"http://127.0.0.1:{ports['mcp']}/readyz"), 30, "the MCP server reconnected")
        until(lambda: healthy(f"http://127.0.0.1:{ports['gw']}/readyz"), 30, "the gateway reconnected")
        sent = send_signal(data_dir, ports["gw"], symbol="AFTER")
        assert sent.returncode == 0 and sent.stdout.startswith("202 "), sent.stdout + sent.stderr
        deadline = time.monotonic() + 20
        while "AFTER" not in await signal_symbols(ports["mcp"]):
            assert time.monotonic() < deadline, "the signal sent after the NATS restart never reached the MCP server"
        assert pid_of(data_dir, "execsim") is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log.read_text()[-3000:]
    until(lambda: not processes_of(data_dir), 10, "every process of the data dir gone")
    assert not (data_dir / "nats.json").exists()


async def test_serve_over_stdio_answers_tools_list(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=EXE,
        args=["serve", "--transport", "stdio", "--data-dir", str(tmp_path)],
        env={**os.environ, "NATS_URL": nats_server.url},
    )
    async with Client(params) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"get_positions", "list_signals", "list_fills"} <= tools.keys()
        assert tools["get_positions"].annotations.read_only_hint is True
        assert tools["get_positions"].output_schema is not None
        result = await client.call_tool("get_positions", {})
        assert result.structured_content["positions"] == []


async def test_serve_over_stdio_starts_the_embedded_server_when_none_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["TRADING_MCP_NATS_PORT"] = str(free_port())
    params = StdioServerParameters(
        command=EXE, args=["serve", "--transport", "stdio", "--data-dir", str(tmp_path)], env=env
    )
    async with Client(params) as client:
        assert (tmp_path / "nats.json").exists()
        result = await client.call_tool("list_fills", {})
        assert result.structured_content == {"fills": []}
