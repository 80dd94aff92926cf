"""Marks come from market data; a fill processed after a later bar must not roll the mark back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from schemas.orders import Fill
from tools.portfolio import Portfolio


def _fill(fill_id: str, side: str, quantity: str, price: str) -> Fill:
    return Fill(
        fill_id=fill_id, client_order_id=fill_id, symbol="AAPL", side=side, quantity=Decimal(quantity),  # type: ignore[arg-type]
        price=Decimal(price), fee=Decimal(0), ts=datetime(2026, 1, 2, tzinfo=UTC), correlation_id="c",
    )  # fmt: skip


def test_a_fill_marks_the_symbol_only_while_no_market_price_is_known() -> None:
    p = Portfolio(starting_cash=Decimal(1000), cash=Decimal(1000))
    p.apply(_fill("f1", "buy", "10", "50"))
    assert p.mark_price("AAPL") == 50  # no market data yet: the fill is the best price known
    p.mark("AAPL", Decimal("55"))  # a later bar closes at 55
    p.apply(_fill("f2", "buy", "10", "52"))  # filled at an earlier bar's open, processed after that close
    assert p.mark_price("AAPL") == 55
    assert p.market_value() == 20 * Decimal(55)
