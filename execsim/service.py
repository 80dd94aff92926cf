"""The simulator service: the engine between NATS streams.

Inputs, each from a durable pull consumer with explicit acks:
- `decisions.order_intent` and `decisions.order_cancel` (durable `execsim-orders`, stream order);
- `signals.normalized` (durable `execsim-market`): each signal is a bar for its symbol (a
  price-only signal is a bar with open = high = low = close) that works resting orders.
A clock tick works orders whose latency has passed and expires DAY orders.

Outputs: lifecycle events on `executions.report`, fills on `executions.fill`, each with
`Nats-Msg-Id` = its event / fill id. A batch of messages is acked only after all its events are
stored. If a publish fails (NATS down), the engine is rebuilt from the streams before going on,
exactly as after a kill -9 and restart (see `execsim.rebuild`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import structlog
import uvicorn
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from starlette.applications import Starlette

from bus.jetstream import connect, ensure_streams, log_if_failed, publish
from execsim.engine import Engine, Event
from execsim.rebuild import rebuild
from execsim.settings import ExecSimSettings
from observability import metrics
from observability.consumer_lag import watch_consumer_lag
from observability.http import ops_routes
from schemas.market import Bar
from schemas.orders import Fill, OrderCancel, OrderIntent
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.clock import Clock, LiveClock

log = structlog.get_logger("execsim")
_stdlog = logging.getLogger(__name__)

DURABLE = "execsim-orders"
MARKET_DURABLE = "execsim-market"
TICK_SECONDS = 0.05

__all__ = ["DURABLE", "MARKET_DURABLE", "ExecSimService", "ExecSimSettings", "main", "run_execsim"]


class ExecSimService:
    """Feeds messages to the engine and publishes what it answers. One batch at a time."""

    def __init__(self, js: JetStreamContext, engine: Engine, market_durable: str | None = None) -> None:
        self.js = js
        self.engine = engine
        self.market_durable = market_durable
        self._lock = asyncio.Lock()
        self._broken = False

    async def handle(self, msg: Msg) -> None:
        """One message (the per-message handler `bus.jetstream.consume` expects)."""
        await self.handle_batch([msg])

    async def handle_batch(self, msgs: list[Msg]) -> None:
        """Apply the messages to the engine in order and store every resulting event. Raises if
        any publish failed; the caller must not ack then (they will be redelivered)."""
        async with self._lock:
            if self._broken:
                await self._rebuild()
            started = time.perf_counter()
            events: list[Event] = []
            for msg in msgs:
                events.extend(self._apply(msg))
            try:
                await self._publish(events)
            except Exception:
                self._broken = True  # the engine moved on but the streams did not: rebuild before more
                raise
            finally:
                metrics.exec_sim_open_orders.set(self.engine.open_count())
            if msgs:
                metrics.exec_sim_simulation_duration_seconds.observe((time.perf_counter() - started) / len(msgs))

    async def tick(self) -> None:
        async with self._lock:
            if self._broken:
                await self._rebuild()
            events = self.engine.tick()
            metrics.exec_sim_open_orders.set(self.engine.open_count())
            if events:
                try:
                    await self._publish(events)
                except Exception:
                    self._broken = True
                    raise

    def _apply(self, msg: Msg) -> list[Event]:
        subject = msg.subject
        if subject == Subject.ORDER_INTENT.value:
            intent = OrderIntent.model_validate_json(msg.data)
            events = self.engine.submit(intent)
            if events:
                metrics.exec_sim_orders_received_total.labels(intent.order_type).inc()
            else:
                log.info("order already handled", client_order_id=intent.client_order_id)
            return events
        if subject == Subject.ORDER_CANCEL.value:
            cancel = OrderCancel.model_validate_json(msg.data)
            return self.engine.cancel(cancel.client_order_id, cancel.reason or f"canceled_by_{cancel.origin}")
        if subject == Subject.SIGNALS_NORMALIZED.value:
            return self.engine.on_bar(Bar.from_signal(NormalizedSignal.model_validate_json(msg.data)))
        return []

    async def _publish(self, events: list[Event]) -> None:
        pending = []
        for event in events:
            if isinstance(event, Fill):
                pending.append(
                    publish(
                        self.js,
                        Subject.EXECUTION_FILL,
                        event,
                        msg_id=event.fill_id,
                        correlation_id=event.correlation_id,
                    )
                )
            else:
                pending.append(
                    publish(
                        self.js,
                        Subject.EXECUTION_REPORT,
                        event,
                        msg_id=event.event_id,
                        correlation_id=event.correlation_id,
                    )
                )
        if not pending:
            return
        results = await asyncio.gather(*pending, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} of {len(results)} publishes failed: {failures[0]!r}")
        for event in events:
            if isinstance(event, Fill):
                metrics.exec_sim_fills_generated_total.labels(event.side).inc()
                log.info(
                    "fill",
                    correlation_id=event.correlation_id,
                    client_order_id=event.client_order_id,
                    symbol=event.symbol,
                    side=event.side,
                    quantity=str(event.quantity),
                    price=str(event.price),
                )
            else:
                metrics.exec_sim_reports_total.labels(event.status).inc()

    async def _rebuild(self) -> None:
        fresh = Engine(self.engine.clock, self.engine.config)
        known = await rebuild(self.js, fresh, self.market_durable)
        self.engine = fresh
        self._broken = False
        metrics.exec_sim_rebuilds_total.inc()
        log.warning("engine rebuilt from the streams after a failed publish", orders=known)


async def consume_batches(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    subjects: list[str],
    handler,  # type: ignore[no-untyped-def]
    stop: asyncio.Event,
    batch: int = 128,
) -> None:
    """A durable pull consumer that hands whole fetched batches to `handler`; ack after, nak on error."""
    config = api.ConsumerConfig(
        durable_name=durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        filter_subjects=subjects if len(subjects) > 1 else None,
        filter_subject=subjects[0] if len(subjects) == 1 else None,
        ack_wait=30.0,
        max_ack_pending=4096,
    )
    sub = None
    delay = 0.2
    while sub is None and not stop.is_set():
        try:
            sub = await js.pull_subscribe(subjects[0], durable=durable, stream=stream, config=config)
        except Exception as exc:
            _stdlog.warning("cannot create consumer %s on %s (%r); retrying", durable, stream, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    if sub is None:
        return
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=0.5)
            except TimeoutError:
                continue
            except Exception as exc:
                _stdlog.warning("fetch from %s failed (%r); retrying", durable, exc)
                await asyncio.sleep(0.5)
                continue
            try:
                await handler(msgs)
            except Exception:
                _stdlog.exception("a batch from %s failed; redelivering", durable)
                for msg in msgs:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=1.0)
                await asyncio.sleep(0.2)
                continue
            await asyncio.gather(*(m.ack() for m in msgs), return_exceptions=True)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def start_consumers(
    js: JetStreamContext, service: ExecSimService, stop: asyncio.Event, batch: int = 128
) -> list[asyncio.Task[None]]:
    """The simulator's two durable consumers, feeding `service`: order intents and cancels (DECISIONS), and
    the market data it fills against (SIGNALS). They run until `stop` is set."""
    consumers = [
        ("orders", "DECISIONS", DURABLE, [Subject.ORDER_INTENT.value, Subject.ORDER_CANCEL.value]),
        ("market", "SIGNALS", MARKET_DURABLE, [Subject.SIGNALS_NORMALIZED.value]),
    ]
    return [
        asyncio.create_task(
            consume_batches(
                js,
                stream=stream,
                durable=durable,
                subjects=subjects,
                handler=service.handle_batch,
                stop=stop,
                batch=batch,
            ),
            name=name,
        )
        for name, stream, durable, subjects in consumers
    ]


async def _tick_loop(service: ExecSimService, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_SECONDS)
        if service.engine.open_count():
            try:
                await service.tick()
            except Exception as exc:
                _stdlog.warning("tick failed (%r); the engine will be rebuilt", exc)


async def run_execsim(settings: ExecSimSettings, clock: Clock | None = None) -> None:
    nc = await connect(settings.nats_url, "execsim")
    js = nc.jetstream()
    await ensure_streams(js)
    engine = Engine(clock or LiveClock(), settings.engine_config())
    known = await rebuild(js, engine, MARKET_DURABLE)
    log.info("execsim ready", orders_rebuilt=known, open_orders=engine.open_count(), nats=settings.nats_url)
    service = ExecSimService(js, engine, MARKET_DURABLE)
    stop = asyncio.Event()

    async def ready() -> dict[str, bool]:
        return {"nats": nc.is_connected}

    watch_consumer_lag(js, [("DECISIONS", DURABLE), ("SIGNALS", MARKET_DURABLE)])
    app = Starlette(routes=ops_routes(ready))
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, lifespan="off")
    )
    tasks = [
        *start_consumers(js, service, stop, batch=settings.batch),
        asyncio.create_task(_tick_loop(service, stop), name="tick"),
    ]
    for task in tasks:
        task.add_done_callback(log_if_failed)
    try:
        await server.serve()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 3)
        await nc.close()


def main(settings: ExecSimSettings) -> None:
    asyncio.run(run_execsim(settings))  # uvicorn turns SIGINT / SIGTERM into a clean shutdown
