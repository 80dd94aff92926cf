"""`trading-mcp serve` as a real process: the MCP Inspector CLI (an independent client), options, and refusals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from bus.embedded import EmbeddedNats, free_port

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).parent / "trading-mcp")
INSPECTOR = ROOT / ".tools" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
TOKEN = "process-test-token-0123456789abcdef"


def _inspector(*args: str, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    assert INSPECTOR.exists(), f"{INSPECTOR} is missing: `make test` installs the MCP Inspector with npm"
    done = subprocess.run([str(INSPECTOR), "--cli", *args], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _env(nats: EmbeddedNats, **extra: str) -> dict[str, str]:
    return {**os.environ, "NATS_URL": nats.url, **extra}


@contextlib.contextmanager
def _serve_http(args: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    proc = subprocess.Popen([EXE, "serve", *args, "--port", str(port)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "serve exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not become healthy in 30 s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_mcp_inspector_lists_the_tools_and_calls_get_positions_over_stdio(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    server = [EXE, "serve", "--transport", "stdio", "--data-dir", str(tmp_path)]
    listed = _inspector(*server, "--method", "tools/list", env=_env(nats_server))
    called = _inspector(*server, "--method", "tools/call", "--tool-name", "get_positions", env=_env(nats_server))
    tools = {t["name"]: t for t in listed["tools"]}
    assert {"get_positions", "list_fills", "list_signals", "get_market_snapshot"} <= tools.keys()
    assert tools["get_positions"]["annotations"]["readOnlyHint"] is True
    assert tools["get_positions"]["outputSchema"]["type"] == "object"
    assert (
        not tools["list_signals"]["description"].startswith(" ")
        and "\n    " not in tools["list_signals"]["description"]
    )
    assert called["isError"] is False and called["structuredContent"]["positions"] == []
    assert called["structuredContent"]["account"]["equity"] == "100000"
    assert called["content"][0]["text"].endswith("No positions: the paper account is flat and has no fills.")


def test_the_mcp_inspector_lists_the_tools_and_calls_get_positions_over_streamable_http(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    args = ["--transport", "streamable-http", "--data-dir", str(tmp_path)]
    with _serve_http(args, _env(nats_server), free_port()) as base:
        listed = _inspector(f"{base}/mcp", "--method", "tools/list", env=_env(nats_server))
        called = _inspector(
            f"{base}/mcp",
            "--method",
            "tools/call",
            "--tool-name",
            "list_fills",
            "--tool-arg",
            "limit=5",
            env=_env(nats_server),
        )
        positions = _inspector(
            f"{base}/mcp", "--method", "tools/call", "--tool-name", "get_positions", env=_env(nats_server)
        )
    assert "get_positions" in {t["name"] for t in listed["tools"]}
    assert called["structuredContent"] == {"fills": []} and called["isError"] is False
    assert positions["structuredContent"]["positions"] == []


def test_serve_beyond_loopback_without_a_token_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRADING_MCP_AUTH_TOKEN"}
    env["TRADING_MCP_NATS_PORT"] = str(free_port())
    done = subprocess.run(
        [EXE, "serve", "--transport", "streamable-http", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to serve MCP over HTTP on 0.0.0.0 (beyond loopback) without a bearer token" in done.stderr
    assert "TRADING_MCP_AUTH_TOKEN" in done.stderr
    assert not (tmp_path / "nats.json").exists(), "nothing starts before the configuration is accepted"


async def test_serve_on_all_interfaces_with_a_token_rejects_requests_without_it_and_serves_the_sdk_client_with_it(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    args = ["--transport", "streamable-http", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]
    with _serve_http(args, _env(nats_server, TRADING_MCP_AUTH_TOKEN=TOKEN), free_port()) as base:
        request = urllib.request.Request(
            f"{base}/mcp",
            data=b"{}",
            method="POST",
            headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
        )
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("a request without the token was served")
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
        authorized = httpx2.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"})
        async with Client(streamable_http_client(f"{base}/mcp", http_client=authorized)) as client:
            result = await client.call_tool("get_positions", {})
    assert result.structured_content["positions"] == []


async def test_serve_with_toolsets_and_read_only_registers_only_those_read_only_tools(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=EXE,
        args=["serve", "--transport", "stdio", "--data-dir", str(tmp_path), "--toolsets", "positions", "--read-only"],
        env=_env(nats_server),
    )
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
        instructions = client.instructions or ""
    assert {t.name for t in tools} == {"get_positions", "list_fills", "get_safety_status"}
    assert "Read-only mode" in instructions


def test_serve_with_an_unknown_toolset_exits_naming_the_available_ones(tmp_path: Path) -> None:
    env = {**os.environ, "TRADING_MCP_NATS_PORT": str(free_port())}
    done = subprocess.run(
        [EXE, "serve", "--data-dir", str(tmp_path), "--toolsets", "market,orderz"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    known = "market, strategies, positions, risk, order_check, orders"
    assert f"unknown toolset(s) orderz; available: {known}" in done.stderr
