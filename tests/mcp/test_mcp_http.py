"""Streamable HTTP and SSE with the SDK's real clients on a real uvicorn; Host/Origin checks; the bearer token."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from bus.embedded import free_port
from mcp_server.server import build_server
from mcp_server.settings import ConfigError, ServeSettings
from mcp_server.transports import http_app
from tests.conftest import serve_uvicorn
from tests.mcp.helpers import add_fill, offline_state

TOKEN = "t0ken-for-tests-0123456789abcdef"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@contextlib.asynccontextmanager
async def served(tmp_path: Path, **overrides: object) -> AsyncIterator[str]:
    state = offline_state()
    add_fill(state, 1, "buy", "10", "190.25")
    port = free_port()
    overrides = {"transport": "streamable-http", **overrides}
    settings = ServeSettings(data_dir=tmp_path, port=port, **overrides)  # type: ignore[arg-type]

    async def ready() -> dict[str, bool]:
        return {"nats": True}

    async with serve_uvicorn(http_app(build_server(state), settings, ready), port) as base:
        yield base


async def test_streamable_http_serves_the_tools_at_mcp_to_the_sdk_client_and_keeps_healthz_and_metrics(
    tmp_path: Path,
) -> None:
    async with served(tmp_path) as base:
        async with Client(f"{base}/mcp") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("get_positions", {})
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{base}/healthz")
            metrics = await http.get(f"{base}/metrics")
    assert {"get_positions", "list_fills", "list_signals", "get_market_snapshot"} <= names
    assert result.structured_content["positions"][0]["symbol"] == "AAPL"
    assert "AAPL long 10" in result.content[0].text
    assert health.status_code == 200
    assert 'mcp_tool_calls_total{outcome="ok",tool="get_positions"}' in metrics.text


async def test_sse_serves_the_same_tools_to_the_sdk_sse_client(tmp_path: Path) -> None:
    async with served(tmp_path, transport="sse") as base, Client(sse_client(f"{base}/sse")) as client:
        result = await client.call_tool("get_positions", {})
        prompts = {p.name for p in (await client.list_prompts()).prompts}
    assert result.structured_content["positions"][0]["symbol"] == "AAPL"
    assert "explain_position" in prompts


async def test_a_foreign_host_or_origin_header_is_refused_and_a_configured_origin_is_accepted(tmp_path: Path) -> None:
    async with served(tmp_path, allowed_origins="https://console.example.org") as base, httpx.AsyncClient() as http:
        url = f"{base}/mcp"
        rebound = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "host": "evil.example:80"})
        cross_site = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "origin": "https://evil.example"})
        allowed = await http.post(
            url, json=INITIALIZE, headers={**MCP_HEADERS, "origin": "https://console.example.org"}
        )
    assert rebound.status_code == 421
    assert cross_site.status_code == 403
    assert allowed.status_code == 200


async def test_metrics_under_a_foreign_host_is_refused_like_the_mcp_endpoint_and_answered_under_loopback(
    tmp_path: Path,
) -> None:
    async with served(tmp_path, allowed_hosts="console.example.org:*") as base, httpx.AsyncClient() as http:
        rebound = await http.get(f"{base}/metrics", headers={"host": "evil.example:80"})
        allowed = await http.get(f"{base}/metrics", headers={"host": "console.example.org:8080"})
        loopback = await http.get(f"{base}/metrics")
        probe = await http.get(f"{base}/healthz", headers={"host": "10.0.0.7:8002"})  # a probe by pod address
    assert rebound.status_code == 421 and "mcp_" not in rebound.text
    assert allowed.status_code == loopback.status_code == 200 and "mcp_tool_calls_total" in loopback.text
    assert probe.status_code == 200


async def test_with_a_token_configured_requests_without_it_get_401_and_the_sdk_client_with_it_works(
    tmp_path: Path,
) -> None:
    async with served(tmp_path, auth_token=SecretStr(TOKEN)) as base:
        async with httpx.AsyncClient() as http:
            missing = await http.post(f"{base}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            wrong = await http.post(
                f"{base}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": "Bearer nope"}
            )
            metrics = await http.get(f"{base}/metrics")
            health = await http.get(f"{base}/healthz")
        authorized = httpx2.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"})
        async with Client(streamable_http_client(f"{base}/mcp", http_client=authorized)) as client:
            result = await client.call_tool("get_positions", {})
    assert missing.status_code == wrong.status_code == metrics.status_code == 401
    assert missing.json()["code"] == "unauthorized" and missing.headers["www-authenticate"].startswith("Bearer")
    assert health.status_code == 200
    assert not result.is_error and result.structured_content["positions"][0]["symbol"] == "AAPL"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "mcp.example.org"])
def test_http_beyond_loopback_without_a_token_is_refused_before_anything_starts(host: str, tmp_path: Path) -> None:
    settings = ServeSettings(data_dir=tmp_path, transport="streamable-http", host=host)
    with pytest.raises(ConfigError, match="without a bearer token: set TRADING_MCP_AUTH_TOKEN"):
        settings.check_exposure()
    with pytest.raises(ConfigError, match="shorter than 24"):
        ServeSettings(data_dir=tmp_path, transport="sse", host=host, auth_token=SecretStr("short")).check_exposure()
    ServeSettings(data_dir=tmp_path, transport="stdio", host=host).check_exposure()
    ServeSettings(data_dir=tmp_path, transport="sse", host="127.0.0.1").check_exposure()
