"""The simulator service: consume `decisions.order_intent` (durable `execsim`), publish reports and fills.

Each intent's events are published (with `Nats-Msg-Id` = event / fill id) before the intent is acked,
so a crash at any point means a redelivery, and the engine — rebuilt at start from the reports it
already published — treats a known `client_order_id` as the same order: no second fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import structlog
import uvicorn
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette

from bus.jetstream import Follower, connect, consume, ensure_streams, log_if_failed, publish
from execsim.engine import Engine, EngineConfig
from observability import metrics
from observability.consumer_lag import watch_consumer_lag
from observability.http import ops_routes
from schemas.orders import Fill, OrderEvent, OrderIntent
from schemas.subjects import Subject
from tools.clock import Clock, LiveClock

log = structlog.get_logger("execsim")

DURABLE = "execsim"


class ExecSimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_EXECSIM_", extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    host: str = "127.0.0.1"
    port: int = 8004
    slippage_bps: Decimal = Field(default=Decimal(0), ge=0, le=1000)
    fee_bps: Decimal = Field(default=Decimal(0), ge=0, le=1000)


async def rebuild(js: JetStreamContext, engine: Engine) -> int:
    """Teach the engine every order it already answered, from the executions and decisions streams."""
    answered: set[str] = set()

    def on_report(msg: Msg) -> None:
        answered.add(OrderEvent.model_validate_json(msg.data).client_order_id)

    reports = Follower(js, stream="EXECUTIONS", subject=Subject.EXECUTION_REPORT.value, handler=on_report)
    await reports.start()
    await reports.caught_up.wait()
    await reports.stop()

    def on_intent(msg: Msg) -> None:
        intent = OrderIntent.model_validate_json(msg.data)
        if intent.client_order_id in answered:
            engine.remember(intent)

    intents = Follower(js, stream="DECISIONS", subject=Subject.ORDER_INTENT.value, handler=on_intent)
    await intents.start()
    await intents.caught_up.wait()
    await intents.stop()
    return len(answered)


class ExecSimService:
    def __init__(self, js: JetStreamContext, engine: Engine):
        self.js = js
        self.engine = engine

    async def handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        intent = OrderIntent.model_validate_json(msg.data)
        structlog.contextvars.bind_contextvars(correlation_id=intent.correlation_id)
        try:
            events = self.engine.submit(intent)
            if events:
                metrics.exec_sim_orders_received_total.labels(intent.order_type).inc()
            for event in events:
                if isinstance(event, Fill):
                    await publish(
                        self.js,
                        Subject.EXECUTION_FILL,
                        event,
                        msg_id=event.fill_id,
                        correlation_id=intent.correlation_id,
                    )
                    metrics.exec_sim_fills_generated_total.labels(event.side).inc()
                    log.info(
                        "fill",
                        client_order_id=event.client_order_id,
                        symbol=event.symbol,
                        side=event.side,
                        quantity=str(event.quantity),
                        price=str(event.price),
                    )
                else:
                    await publish(
                        self.js,
                        Subject.EXECUTION_REPORT,
                        event,
                        msg_id=event.event_id,
                        correlation_id=intent.correlation_id,
                    )
            if not events:
                log.info("order already handled", client_order_id=intent.client_order_id)
        finally:
            metrics.exec_sim_simulation_duration_seconds.observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("correlation_id")


async def run_execsim(settings: ExecSimSettings, clock: Clock | None = None) -> None:
    nc = await connect(settings.nats_url, "execsim")
    js = nc.jetstream()
    await ensure_streams(js)
    engine = Engine(clock or LiveClock(), EngineConfig(settings.slippage_bps, settings.fee_bps))
    known = await rebuild(js, engine)
    log.info("execsim ready", orders_rebuilt=known, nats=settings.nats_url)
    service = ExecSimService(js, engine)
    stop = asyncio.Event()

    async def ready() -> dict[str, bool]:
        return {"nats": nc.is_connected}

    watch_consumer_lag(js, [("DECISIONS", DURABLE)])
    app = Starlette(routes=ops_routes(ready))
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, lifespan="off")
    )
    consumer = asyncio.create_task(
        consume(
            js,
            stream="DECISIONS",
            durable=DURABLE,
            subject=Subject.ORDER_INTENT.value,
            handler=service.handle,
            stop=stop,
        )
    )
    consumer.add_done_callback(log_if_failed)
    try:
        await server.serve()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer, 3)
        await nc.close()


def main(settings: ExecSimSettings) -> None:
    asyncio.run(run_execsim(settings))  # uvicorn turns SIGINT / SIGTERM into a clean shutdown
