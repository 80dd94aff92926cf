"""The user's path through real processes: `trading-mcp up`, `send-signal`, restart, and the stdio server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

from mcp import Client, StdioServerParameters

from bus.embedded import EmbeddedNats, free_port

EXE = str(Path(sys.executable).parent / "trading-mcp")


def _up(data_dir: Path, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["TRADING_MCP_NATS_PORT"] = str(ports["nats"])
    return subprocess.Popen(
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
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _wait_banner(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            raise AssertionError(f"up exited early: {''.join(lines)}")
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(lines)
    raise AssertionError("no banner")


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


async def test_up_send_signal_and_restart_keep_the_position(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {"gw": free_port(), "mcp": free_port(), "ex": free_port(), "nats": free_port()}
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
        for port in (ports["gw"], ports["mcp"], ports["ex"]):
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
        assert result.structured_content == {"positions": []}


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
