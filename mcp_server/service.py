"""Run the MCP server (any transport) with its state, and the bridge when asked."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import structlog
import uvicorn

from bus.embedded import EmbeddedNats, ensure_embedded
from bus.jetstream import connect, ensure_streams, log_if_failed
from mcp_server import toolsets
from mcp_server.bridge import DURABLE as BRIDGE_DURABLE
from mcp_server.bridge import Bridge
from mcp_server.rate_limit import TokenBucket
from mcp_server.server import TradingServer, build_server
from mcp_server.settings import AgentSettings, ConfigError, ServeSettings
from mcp_server.state import AppState
from mcp_server.strategy_mode import StrategyConfigError, StrategyMode, parse_choices
from mcp_server.tooling import ToolOptions
from mcp_server.toolsets.confirmation import load_key
from mcp_server.transports import http_app
from observability.consumer_lag import watch_consumer_lag

log = structlog.get_logger("mcp_server")


@contextlib.asynccontextmanager
async def running_state(settings: ServeSettings | AgentSettings) -> AsyncIterator[AppState]:
    """NATS (embedded for the data dir unless NATS_URL is set), streams, and the rebuilt state."""
    embedded: EmbeddedNats | None = None
    url = settings.nats_url
    if url is None:
        embedded = await asyncio.to_thread(ensure_embedded, settings.data_dir)
        url = embedded.url
    nc = await connect(url, "mcp_server", role="mcp", data_dir=settings.data_dir)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        state = AppState(nc, js)
        await state.start()
        log.info(
            "account folded from the journal",
            journal_seq=state.account.seq,
            positions=len(state.portfolio.positions),
            open_orders=state.account.open_order_count(),
            trading_state=state.gate.state.value,
        )
        try:
            yield state
        finally:
            await state.stop()
    finally:
        await nc.close()
        if embedded is not None:
            embedded.stop()


def build_for(settings: ServeSettings, state: AppState) -> TradingServer:
    limiter = TokenBucket(settings.rate_limit_per_minute, settings.rate_limit_burst)
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
    strategy_mode(settings)


def strategy_mode(settings: ServeSettings) -> StrategyMode | None:
    """The bridge's strategies when it runs in strategy mode (a bad choice is a ConfigError)."""
    if settings.bridge_mode != "strategy":
        return None
    try:
        return StrategyMode(
            parse_choices(settings.strategies, settings.strategies_file),
            commission=settings.strategy_commission,
            slippage_bps=settings.strategy_slippage_bps,
            fractional=settings.strategy_fractional,
        )
    except (StrategyConfigError, OSError) as exc:
        raise ConfigError(f"bridge strategy mode: {exc}") from exc


def agent_settings(settings: ServeSettings) -> AgentSettings:
    """The agent decision mode's settings: TRADING_MCP_AGENT_* and ANTHROPIC_API_KEY, checked before anything starts."""
    agent = AgentSettings(data_dir=settings.data_dir)
    agent.check()
    return agent


async def run_serve(settings: ServeSettings) -> None:
    check(settings)
    if settings.bridge and settings.bridge_mode == "agent":
        agent_settings(settings)
    async with running_state(settings) as state:
        stop = asyncio.Event()
        bridge_task = None
        if settings.bridge and settings.bridge_mode == "agent":
            from mcp_server.agent.service import DURABLE as AGENT_DURABLE
            from mcp_server.agent.service import run_agent_worker

            bridge_task = asyncio.create_task(run_agent_worker(state, agent_settings(settings), stop), name="agent")
            bridge_task.add_done_callback(log_if_failed)
            watch_consumer_lag(state.js, [("SIGNALS", AGENT_DURABLE)])
        elif settings.bridge:
            bridge = Bridge(state, settings.bridge_mode, settings.default_quantity, strategies=strategy_mode(settings))
            bridge_task = asyncio.create_task(bridge.run(stop), name="bridge")
            bridge_task.add_done_callback(log_if_failed)
            watch_consumer_lag(state.js, [("SIGNALS", BRIDGE_DURABLE)])
        server = build_for(settings, state)
        try:
            if settings.transport == "stdio":
                await _run_stdio(server)
            else:
                await _run_http(server, settings, state)
        finally:
            stop.set()
            if bridge_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(bridge_task, 3)


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


def main(settings: ServeSettings) -> None:
    asyncio.run(run_serve(settings))
