"""The simulator's memory stays flat: past FINISHED_KEPT finished orders, the oldest leaves the engine and only its
id's key stays, so an intent for it that comes again (a redelivery, an intent re-published by the authority) is
still handled once: no report, no fill. The same holds after a rebuild from the streams."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import nats
import pytest
from nats.js import api

from bus.jetstream import publish
from execsim import service as execsim_service
from execsim.engine import Engine, EngineConfig
from execsim.service import ExecSimService, FinishedOrders, rebuild
from schemas.orders import OrderIntent
from schemas.subjects import Subject
from tests.conftest import stream_count
from tests.execsim.process_helpers import signal
from tools.clock import LiveClock

D = Decimal
KEPT = 3


def _intent(coid: str) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        symbol="AAPL",
        side="buy",
        quantity=D(1),
        order_type="market",
        time_in_force="DAY",
        reference_price=D(100),
        origin="mcp",
        created_at=datetime.now(UTC),
        correlation_id=f"corr-{coid}",
    )


async def _intent_messages(js: nats.js.JetStreamContext, count: int) -> list[nats.aio.msg.Msg]:
    sub = await js.pull_subscribe(
        Subject.ORDER_INTENT.value,
        stream="DECISIONS",
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL),
    )
    try:
        return await sub.fetch(count, timeout=5)
    finally:
        await sub.unsubscribe()


async def test_an_intent_for_an_order_that_left_memory_fills_nothing_again(
    js: nats.js.JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execsim_service, "FINISHED_KEPT", KEPT)
    price = signal("AAPL", "100")
    await publish(js, Subject.SIGNALS_NORMALIZED, price, msg_id=price.signal_id, correlation_id="p")
    service = ExecSimService(js, Engine(LiveClock(), EngineConfig()))
    coids = [f"o{i}" for i in range(KEPT + 4)]
    for coid in coids:
        await publish(js, Subject.ORDER_INTENT, _intent(coid), msg_id=coid, correlation_id=coid)
    intents = await _intent_messages(js, len(coids))
    for msg in intents:
        await service.handle_batch([msg])
    fills = await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value)
    reports = await stream_count(js, "EXECUTIONS", Subject.EXECUTION_REPORT.value)
    assert fills == len(coids)

    # the four oldest left the engine; the newest KEPT are whole
    assert [service.engine.order(c) is None for c in coids] == [True] * 4 + [False] * KEPT
    assert len(service.finished) == 4

    # every intent again, as a redelivery would bring them: nothing is published
    await service.handle_batch(intents)
    assert await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value) == fills
    assert await stream_count(js, "EXECUTIONS", Subject.EXECUTION_REPORT.value) == reports

    # a simulator rebuilt from the streams forgets the same orders and refuses them the same way
    finished = FinishedOrders()
    fresh = Engine(LiveClock(), EngineConfig())
    assert await rebuild(js, fresh, finished=finished) == len(coids)
    assert [fresh.order(c) is None for c in coids] == [True] * 4 + [False] * KEPT
    rebuilt = ExecSimService(js, fresh)
    rebuilt.finished = finished
    await rebuilt.handle_batch(intents)
    assert await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value) == fills
    assert await stream_count(js, "EXECUTIONS", Subject.EXECUTION_REPORT.value) == reports
