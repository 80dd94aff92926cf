"""Run the MCP server (any transport) with its state, and the bridge when asked."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import structlog
import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from bus.embedded import EmbeddedNats, ensure_embedded
from bus.jetstream import connect, ensure_streams, log_if_failed
from mcp_server.bridge import DURABLE as BRIDGE_DURABLE
from mcp_server.bridge import Bridge
from mcp_server.risk_control import TOKEN_FILE, ControlFollower, load_or_create_token
from mcp_server.server import build_server
from mcp_server.settings import ServeSettings
from mcp_server.state import AppState
from observability.consumer_lag import watch_consumer_lag
from observability.http import ops_routes
from tools.risk import RiskGate

log = structlog.get_logger("mcp_server")


@contextlib.asynccontextmanager
async def running_state(settings: ServeSettings) -> AsyncIterator[AppState]:
    """NATS (embedded for the data dir unless NATS_URL is set), streams, and the rebuilt state."""
    embedded: EmbeddedNats | None = None
    url = settings.nats_url
    if url is None:
        embedded = await asyncio.to_thread(ensure_embedded, settings.data_dir)
        url = embedded.url
    nc = await connect(url, "mcp_server")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        state = AppState(nc, js)
        await state.start()
        log.info("state rebuilt", positions=len(state.portfolio.positions), signals=len(state.signals.recent(10**6)))
        try:
            yield state
        finally:
            await state.stop()
    finally:
        await nc.close()
        if embedded is not None:
            embedded.stop()


async def run_serve(settings: ServeSettings) -> None:
    async with running_state(settings) as state:
        stop = asyncio.Event()
        bridge_task = None
        state.gate = RiskGate(settings.risk_limits())  # the one gate: bridge and MCP order tools
        token = load_or_create_token(settings.operator_token_file or settings.data_dir / TOKEN_FILE)
        control = ControlFollower(state.js, state.gate, token, settings.risk_limits())
        await control.refresh()  # a kill switch set before this start holds from the first order on
        control_task = asyncio.create_task(control.run(stop), name="risk-control")
        if settings.bridge:
            bridge = Bridge(state, state.gate, settings.bridge_mode, settings.default_quantity)
            bridge_task = asyncio.create_task(bridge.run(stop), name="bridge")
            bridge_task.add_done_callback(log_if_failed)
            watch_consumer_lag(state.js, [("SIGNALS", BRIDGE_DURABLE)])
        server = build_server(state)
        try:
            if settings.transport == "stdio":
                await _run_stdio(server)
            else:
                await _run_http(server, settings, state)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(control_task, 3)
            if bridge_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(bridge_task, 3)


async def _run_stdio(server) -> None:  # type: ignore[no-untyped-def]
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await server.run_stdio_async()


async def _run_http(server, settings: ServeSettings, state: AppState) -> None:  # type: ignore[no-untyped-def]
    async def ready() -> dict[str, bool]:
        return {"nats": state.nc.is_connected}

    for route in ops_routes(ready):
        server.custom_route(route.path, methods=["GET"], include_in_schema=False)(_endpoint(route))
    if settings.transport == "sse":
        app = server.sse_app(host=settings.host)
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp", host=settings.host)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None)
    await uvicorn.Server(config).serve()


def _endpoint(route):  # type: ignore[no-untyped-def]
    async def call(request: Request) -> Response:
        return await route.endpoint(request)

    return call


def main(settings: ServeSettings) -> None:
    asyncio.run(run_serve(settings))
