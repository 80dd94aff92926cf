"""Rebuild the engine after a restart from what the streams already hold.

- EXECUTIONS: every report and fill the simulator published — each order's status, filled
  quantity, fill count and whether its stop triggered.
- DECISIONS: the intents (an intent with no report yet was never acked: it will be redelivered)
  and the cancels of orders not seen yet.
- SIGNALS, up to the market consumer's ack floor: the last bar per symbol (later ones will be
  redelivered and worked).

Open orders come back open with what is left of them, so nothing is lost and nothing fills twice:
a fill id is `<client order id>.f<n>` and `n` continues from the fills already published.

Part of the service's NATS adapter (like service.py), not of the pure engine: it reads the streams
and hands the engine plain values through `Engine.restore` / `restore_market`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bus.jetstream import Follower
from execsim.engine import Engine
from schemas.market import Bar
from schemas.orders import TERMINAL_STATUSES, Fill, OrderCancel, OrderEvent, OrderIntent
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject

ZERO = Decimal(0)


@dataclass
class _Record:
    status: str = "accepted"
    filled: Decimal = ZERO
    fills: int = 0
    notional: Decimal = ZERO
    triggered: bool = False
    terminal: bool = False
    fill_ids: set[str] = field(default_factory=set)


async def _read(js: JetStreamContext, stream: str, subject: str, handler) -> None:  # type: ignore[no-untyped-def]
    follower = Follower(js, stream=stream, subject=subject, handler=handler)
    await follower.start()
    await follower.caught_up.wait()
    await follower.stop()


async def rebuild(js: JetStreamContext, engine: Engine, market_durable: str | None = None) -> int:
    """Restore `engine` from the streams; returns the number of orders it knows again."""
    records: dict[str, _Record] = {}

    def on_execution(msg: Msg) -> None:
        if msg.subject == Subject.EXECUTION_FILL.value:
            fill = Fill.model_validate_json(msg.data)
            rec = records.setdefault(fill.client_order_id, _Record())
            if fill.fill_id in rec.fill_ids:
                return
            rec.fill_ids.add(fill.fill_id)
            rec.fills += 1
            rec.filled += fill.quantity
            rec.notional += fill.quantity * fill.price
        elif msg.subject == Subject.EXECUTION_REPORT.value:
            event = OrderEvent.model_validate_json(msg.data)
            rec = records.setdefault(event.client_order_id, _Record())
            if event.reason == "duplicate_client_order_id" and event.event_id.count(".") > 1:
                return  # a refused second intent with this id: says nothing about the first
            if event.status == "triggered":
                rec.triggered = True
            if not rec.terminal:
                rec.status = event.status
                rec.terminal = event.status in TERMINAL_STATUSES

    await _read(js, "EXECUTIONS", "executions.>", on_execution)

    intents: dict[str, OrderIntent] = {}
    cancels: list[str] = []

    def on_decision(msg: Msg) -> None:
        if msg.subject == Subject.ORDER_INTENT.value:
            intent = OrderIntent.model_validate_json(msg.data)
            intents.setdefault(intent.client_order_id, intent)
        elif msg.subject == Subject.ORDER_CANCEL.value:
            cancels.append(OrderCancel.model_validate_json(msg.data).client_order_id)

    await _read(js, "DECISIONS", "decisions.>", on_decision)
    restored = 0
    for coid, intent in intents.items():
        rec = records.get(coid)
        if rec is None:
            continue
        status = rec.status
        if not rec.terminal and rec.filled >= intent.quantity:
            status = "filled"
        elif not rec.terminal and rec.fills:
            status = "partially_filled"
        engine.restore(
            intent,
            status=status,
            filled=rec.filled,
            fills=rec.fills,
            notional=rec.notional,
            triggered=rec.triggered,
        )
        restored += 1
    for coid in cancels:
        if coid not in intents:
            engine.cancel(coid)

    if market_durable is not None:
        floor = await _ack_floor(js, "SIGNALS", market_durable)

        def on_signal(msg: Msg) -> None:
            if msg.metadata.sequence.stream <= floor:
                engine.restore_market(Bar.from_signal(NormalizedSignal.model_validate_json(msg.data)))

        if floor > 0:
            await _read(js, "SIGNALS", Subject.SIGNALS_NORMALIZED.value, on_signal)
    return restored


async def _ack_floor(js: JetStreamContext, stream: str, durable: str) -> int:
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
