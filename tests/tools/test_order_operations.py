"""Order operations: preview, place through the gate, cancel, list, get; state from the streams."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from execsim.engine import Engine, EngineConfig
from schemas.orders import Fill, OrderCancel, OrderEvent, OrderIntent, RiskDenied
from tools.clock import TestClock
from tools.orders import LocalAccount, OrderBook, OrderInputError, OrderOperations, OrderRequest
from tools.portfolio import Portfolio
from tools.risk import RiskGate, RiskLimits

D = Decimal


@dataclass
class EnginePort:
    """An in-process execution port: the real engine, its events fed back to the book and portfolio."""

    engine: Engine
    book: OrderBook
    portfolio: Portfolio
    denied: list[RiskDenied] = field(default_factory=list)
    sent: list[OrderIntent] = field(default_factory=list)

    def _feed(self, events: list[OrderEvent | Fill]) -> None:
        for e in events:
            if isinstance(e, Fill):
                self.book.on_fill(e)
                self.portfolio.apply(e)
            else:
                self.book.on_event(e)

    async def send(self, intent: OrderIntent) -> None:
        self.sent.append(intent)
        self.book.on_intent(intent)
        self._feed(self.engine.submit(intent))

    async def cancel(self, cancel: OrderCancel) -> None:
        self._feed(self.engine.cancel(cancel.client_order_id, cancel.reason))

    async def deny(self, denied: RiskDenied) -> None:
        self.denied.append(denied)


def ops(**limits: object) -> tuple[OrderOperations, EnginePort]:
    clock = TestClock(datetime(2026, 1, 5, 15, tzinfo=UTC))
    portfolio, book = Portfolio(), OrderBook()
    engine = Engine(clock, EngineConfig(fee_bps=D(10)))
    engine.set_price("AAPL", D(100))
    account = LocalAccount(portfolio, book, {"AAPL": D(100)})
    port = EnginePort(engine, book, portfolio)
    gate = RiskGate(RiskLimits(**limits), clock)  # type: ignore[arg-type]
    return OrderOperations(gate, account, port, clock, fee_estimate=engine.estimate_fee), port


async def test_an_approved_market_order_is_sent_filled_and_tracked_from_the_reports() -> None:
    o, port = ops()
    result = await o.place(OrderRequest(symbol="AAPL", side="buy", quantity=D(10), client_order_id="m1"))
    assert result.submitted and result.reason_code == "approved"
    order = o.get("m1")
    assert (order.status, order.filled_quantity, order.avg_fill_price) == ("filled", D(10), D(100))
    assert port.portfolio.quantity("AAPL") == D(10)
    assert o.list() == [] and [x.client_order_id for x in o.list("all")] == ["m1"]


async def test_a_denied_order_is_not_sent_and_the_denial_goes_out_with_its_reason() -> None:
    o, port = ops(max_order_quantity=D(5))
    result = await o.place(OrderRequest(symbol="AAPL", side="buy", quantity=D(6)))
    assert not result.submitted and result.reason_code == "max_order_quantity"
    assert port.sent == [] and [d.reason_code for d in port.denied] == ["max_order_quantity"]


async def test_open_orders_count_toward_the_projected_position() -> None:
    o, port = ops(max_position=D(15))
    await o.place(OrderRequest(symbol="AAPL", side="buy", quantity=D(10), order_type="limit", limit_price=D(90)))
    result = await o.place(OrderRequest(symbol="AAPL", side="buy", quantity=D(6)))
    assert result.reason_code == "max_position" and len(port.sent) == 1


async def test_repeating_a_client_order_id_returns_the_same_order_and_a_different_order_is_an_error() -> None:
    o, port = ops()
    req = OrderRequest(symbol="AAPL", side="buy", quantity=D(1), client_order_id="same")
    await o.place(req)
    again = await o.place(req)
    assert again.duplicate and not again.submitted and len(port.sent) == 1
    with pytest.raises(OrderInputError) as err:
        await o.place(req.model_copy(update={"quantity": D(2)}))
    assert err.value.code == "duplicate_client_order_id" and len(port.sent) == 1


async def test_cancel_ends_an_open_order_and_cancels_pass_even_when_trading_is_halted() -> None:
    o, port = ops()
    await o.place(
        OrderRequest(
            symbol="AAPL", side="buy", quantity=D(1), order_type="limit", limit_price=D(90), client_order_id="l1"
        )
    )
    o.gate.kill()
    denied = await o.place(OrderRequest(symbol="AAPL", side="sell", quantity=D(1)))
    assert denied.reason_code == "trading_halted"
    result = await o.cancel("l1")
    assert result.cancel_requested and o.get("l1").status == "canceled"
    with pytest.raises(OrderInputError) as err:
        await o.cancel("l1")
    assert err.value.code == "order_not_open"
    with pytest.raises(OrderInputError) as unknown:
        await o.cancel("nope")
    assert unknown.value.code == "unknown_order"


async def test_preview_estimates_price_notional_and_fee_and_asks_the_gate_without_counting() -> None:
    o, port = ops(max_orders_per_window=1, max_order_notional=D(5000))
    p = o.preview(OrderRequest(symbol="AAPL", side="buy", quantity=D(10)))
    assert (p.estimated_price, p.estimated_notional, p.estimated_fee, p.approved) == (D(100), D(1000), D(1), True)
    limit = o.preview(OrderRequest(symbol="AAPL", side="buy", quantity=D(60), order_type="limit", limit_price=D(90)))
    assert limit.estimated_notional == D(5400) and limit.reason_code == "max_order_notional"
    assert (await o.place(OrderRequest(symbol="AAPL", side="buy", quantity=D(1)))).submitted
    assert port.sent and not o.preview(OrderRequest(symbol="AAPL", side="buy", quantity=D(1))).approved


async def test_a_market_order_for_a_symbol_without_a_price_is_an_input_error_that_sends_nothing() -> None:
    o, port = ops()
    with pytest.raises(OrderInputError) as err:
        await o.place(OrderRequest(symbol="MSFT", side="buy", quantity=D(1)))
    assert err.value.code == "no_price" and port.sent == [] and port.denied == []


def test_an_order_request_whose_prices_do_not_fit_its_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs limit_price"):
        OrderRequest(symbol="AAPL", side="buy", quantity=D(1), order_type="limit")
    with pytest.raises(ValidationError, match="takes no stop_price"):
        OrderRequest(symbol="AAPL", side="buy", quantity=D(1), stop_price=D(1))


async def test_replace_needs_an_open_order() -> None:
    o, _ = ops()
    with pytest.raises(OrderInputError) as err:
        await o.place(OrderRequest(symbol="AAPL", side="buy", quantity=D(1), replaces="ghost"))
    assert err.value.code == "order_not_open"
