"""Run the MCP server (any transport) over an account view. What else runs in the process (a decision mode) is
the CLI's choice (cli/serve.py); this module serves MCP and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog
import uvicorn

from bus.account_view import AppState
from mcp_server import toolsets
from mcp_server.server import TradingServer, build_server
from mcp_server.settings import ConfigError, ServeSettings
from mcp_server.tooling import ToolOptions
from mcp_server.toolsets.confirmation import load_key
from mcp_server.transports import http_app
from tools.rate_limit import TokenBucket

log = structlog.get_logger("mcp_server")


def build_for(settings: ServeSettings, state: AppState) -> TradingServer:
    limiter = TokenBucket.per_minute(settings.rate_limit_per_minute, settings.rate_limit_burst)
    key = settings.confirmation_key
    options = ToolOptions(
        confirmation=settings.confirmation,
        confirmation_ttl_seconds=settings.confirmation_ttl_seconds,
        price_band_bps=settings.price_band_bps,
        elicitation_timeout_seconds=settings.elicitation_timeout_seconds,
        confirmation_key=bytes.fromhex(key.get_secret_value()) if key else load_key(settings.data_dir),
    )
    return build_server(
        state,
        toolsets_enabled=settings.toolset_names(),
        read_only=settings.read_only,
        limiter=limiter,
        options=options,
    )


def check(settings: ServeSettings) -> None:
    """Refuse a bad configuration before anything starts (exposure without a token, unknown toolsets)."""
    settings.check_exposure()
    settings.check_confirmation()
    try:
        toolsets.select(settings.toolset_names(), read_only=settings.read_only)
    except toolsets.UnknownToolset as exc:
        raise ConfigError(str(exc)) from exc


async def serve(settings: ServeSettings, state: AppState) -> None:
    """Serve MCP over `state` on the configured transport until stopped (SIGTERM/SIGINT on stdio)."""
    server = build_for(settings, state)
    if settings.transport == "stdio":
        await _run_stdio(server)
    else:
        await _run_http(server, settings, state)


async def _run_stdio(server: TradingServer) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await server.run_stdio_async()


async def _run_http(server: TradingServer, settings: ServeSettings, state: AppState) -> None:
    async def ready() -> dict[str, bool]:
        return {"nats": state.nc.is_connected}

    if settings.transport == "sse":
        log.warning("SSE transport deprecated: it stays for old clients; use --transport streamable-http (/mcp)")
    app = http_app(server, settings, ready)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None)
    await uvicorn.Server(config).serve()
