"""Clients of every protocol revision we support (2025-06-18, 2025-11-25 with the initialize handshake; 2026-07-28
without one) over stdio (`trading-mcp serve` as a real process) and streamable HTTP (a real uvicorn): each lists
the tools, calls a read-only one and ends up on the revision it pinned. tools/list order is deterministic, and
`serve --transport sse` still works but says once, on stderr, that SSE is deprecated."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from bus.embedded import EmbeddedNats, free_port
from tests.conftest import wait_for
from tests.mcp.test_mcp_http import served

EXE = str(Path(sys.executable).parent / "trading-mcp")
VERSIONS = ["2025-06-18", "2025-11-25", "2026-07-28"]
Target = StdioServerParameters | str  # a stdio server to start, or a streamable HTTP URL


@contextlib.asynccontextmanager
async def pinned(target: Target, version: str) -> AsyncIterator[tuple[Any, str]]:
    """An SDK client on `version`, and the version the connection ended up on.

    2026-07-28 has no initialize: `Client(mode=version)` adopts it per request (we also ask the server, with
    `server/discover`, that it speaks it). 2025-11-25 is what `Client(mode="legacy")` offers in initialize. The
    SDK's Client cannot offer an older revision, so 2025-06-18 is a `ClientSession` whose initialize offers it."""
    if version in MODERN_PROTOCOL_VERSIONS:
        async with Client(target, mode=version) as client:
            discovered = types.DiscoverResult.model_validate(await client.session.send_discover(version))
            assert version in discovered.supported_versions
            yield client, client.protocol_version
    elif version == LATEST_HANDSHAKE_VERSION:
        async with Client(target, mode="legacy") as client:
            yield client, client.protocol_version
    else:
        transport = (
            stdio_client(target) if isinstance(target, StdioServerParameters) else streamable_http_client(target)
        )
        async with transport as (read, write), ClientSession(read, write) as session:
            offer = types.InitializeRequestParams(
                protocol_version=version,
                capabilities=types.ClientCapabilities(),
                client_info=types.Implementation(name="pinned-test-client", version="1"),
            )
            answer = await session.send_request(types.InitializeRequest(params=offer), types.InitializeResult)
            session.adopt(answer)
            await session.send_notification(types.InitializedNotification())
            yield session, answer.protocol_version


def _stdio(nats: EmbeddedNats, data_dir: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=EXE,
        args=["serve", "--transport", "stdio", "--data-dir", str(data_dir)],
        env={**os.environ, "NATS_URL": nats.url},
    )


async def _list_and_call(target: Target, version: str) -> tuple[str, list[str], Any]:
    async with pinned(target, version) as (client, negotiated):
        names = [t.name for t in (await client.list_tools()).tools]
        positions = await client.call_tool("get_positions", {})
    return negotiated, names, positions


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_client_pinned_to_each_version_lists_and_calls_tools_over_stdio(
    version: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    negotiated, names, positions = await _list_and_call(_stdio(nats_server, tmp_path), version)
    assert negotiated == version
    assert {"get_positions", "list_signals"} <= set(names)
    assert not positions.is_error and positions.structured_content["positions"] == []
    assert positions.content[0].type == "text" and positions.content[0].text


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_client_pinned_to_each_version_lists_and_calls_tools_over_streamable_http(
    version: str, tmp_path: Path
) -> None:
    async with served(tmp_path) as base:
        negotiated, names, positions = await _list_and_call(f"{base}/mcp", version)
    assert negotiated == version
    assert {"get_positions", "list_signals"} <= set(names)
    assert not positions.is_error and positions.structured_content["positions"][0]["symbol"] == "AAPL"


async def test_tools_list_comes_in_the_same_order_on_every_call_and_from_two_server_processes(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    orders = []
    for n in range(2):  # two processes, one after the other, each asked twice
        params = _stdio(nats_server, tmp_path / f"server{n}")
        async with Client(params) as client:
            orders += [[t.name for t in (await client.list_tools()).tools] for _ in range(2)]
    assert len(orders[0]) > 3
    assert all(order == orders[0] for order in orders), orders


async def test_serve_with_the_sse_transport_still_serves_and_logs_one_deprecation_warning_on_stderr(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    from mcp.client.sse import sse_client

    port = free_port()
    stderr = tmp_path / "stderr.log"
    env = {**os.environ, "NATS_URL": nats_server.url}
    cmd = [EXE, "serve", "--transport", "sse", "--data-dir", str(tmp_path), "--port", str(port)]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        await wait_for(_healthy(proc, port), 30, "serve --transport sse to answer /healthz")
        async with Client(sse_client(f"http://127.0.0.1:{port}/sse")) as client:
            positions = await client.call_tool("get_positions", {})
    finally:
        proc.terminate()
        proc.wait(15)
    warnings = [line for line in stderr.read_text().splitlines() if "deprecated" in line.lower()]
    assert positions.structured_content["positions"] == []
    assert len(warnings) == 1, stderr.read_text()
    assert "sse" in warnings[0].lower() and "streamable-http" in warnings[0]


def _healthy(proc: subprocess.Popen[bytes], port: int) -> Callable[[], bool]:
    import urllib.request

    def check() -> bool:
        assert proc.poll() is None, "serve exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return r.status == 200  # type: ignore[no-any-return]
        except OSError:
            return False

    return check
