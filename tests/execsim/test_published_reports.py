"""What the simulator publishes per order (`schemas.orders.superseded_reports`): a market order that fills while the
simulator handles its intent gets its fill alone, neither an `accepted` that `filled` replaces at once nor the `filled`
report after the fill that completed it (eight NATS messages fewer per signal: for each, the publish, its ack, the
delivery to the authority, its ack). An order that rests is still `accepted` at once, and a simulator rebuilt from the
streams knows both orders as they are: the filled one finished, the resting one open."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import nats

from bus.jetstream import publish
from execsim.engine import Engine, EngineConfig
from execsim.fold import StreamFold
from execsim.service import ExecSimService, absorb_tails, rebuild
from schemas.orders import OrderEvent, OrderIntent
from schemas.subjects import Subject
from tests.execsim.process_helpers import read_stream
from tests.execsim.test_finished_orders import _intent_messages
from tools.clock import LiveClock

D = Decimal


def _intent(coid: str, order_type: str = "market", limit: str | None = None) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid, symbol="AAPL", side="buy", quantity=D(2), order_type=order_type,  # type: ignore[arg-type]
        limit_price=D(limit) if limit else None, time_in_force="GTC", reference_price=D(100), origin="mcp",
        created_at=datetime.now(UTC), correlation_id=f"corr-{coid}",
    )  # fmt: skip


async def test_a_market_order_filled_at_once_gets_its_fill_alone_and_a_resting_one_a_report(
    js: nats.js.JetStreamContext,
) -> None:
    service = ExecSimService(js, Engine(LiveClock(), EngineConfig()))  # no market yet: fills at reference_price
    for intent in (_intent("mkt"), _intent("rest", "limit", limit="50")):
        await publish(js, Subject.ORDER_INTENT, intent, msg_id=intent.client_order_id, correlation_id="c")
    for msg in await _intent_messages(js, 2):
        await service.handle_batch([msg])

    executions = await read_stream(js, "EXECUTIONS", "executions.>")
    reports = [
        (r.client_order_id, r.status)
        for r in (OrderEvent.model_validate_json(d) for s, d in executions if s == Subject.EXECUTION_REPORT.value)
    ]
    assert reports == [("rest", "accepted")]
    assert [s for s, _ in executions].count(Subject.EXECUTION_FILL.value) == 1

    fresh = Engine(LiveClock(), EngineConfig())
    assert await rebuild(js, fresh) == 2
    mkt, rest = fresh.order("mkt"), fresh.order("rest")
    assert mkt is not None and mkt.status == "filled" and not mkt.is_open
    assert rest is not None and rest.status == "accepted" and rest.is_open

    fold = StreamFold()  # the fold a snapshot stores: the order its fill completed is finished, the resting one is not
    await absorb_tails(js, fold, None, None)
    assert list(fold.finished) == ["mkt"]
    assert (fold.records["mkt"].status, fold.records["mkt"].terminal) == ("filled", True)
