"""Portfolio invariants (Hypothesis) and views."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.orders import Fill
from tools.portfolio import Portfolio

D = Decimal
TS = datetime(2026, 1, 5, tzinfo=UTC)
TOLERANCE = D("1e-9")

SYMBOLS = st.sampled_from(["AAPL", "MSFT", "IBM"])
QTY = st.decimals(min_value=D("0.01"), max_value=D(500), places=2)
PRICE = st.decimals(min_value=D("0.5"), max_value=D(2000), places=2)
FEE = st.decimals(min_value=D(0), max_value=D(5), places=2)
TRADES = st.lists(st.tuples(SYMBOLS, st.sampled_from(["buy", "sell"]), QTY, PRICE, FEE), min_size=1, max_size=40)


def _fill(i: int, symbol: str, side: str, qty: Decimal, price: Decimal, fee: Decimal) -> Fill:
    return Fill(
        fill_id=f"f{i}",
        client_order_id=f"o{i}",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        quantity=qty,
        price=price,
        fee=fee,
        ts=TS,
        correlation_id="c",
    )


def _apply_all(trades: list[tuple[str, str, Decimal, Decimal, Decimal]]) -> tuple[Portfolio, list[Fill]]:
    p = Portfolio(starting_cash=D(100_000))
    fills = [_fill(i, *t) for i, t in enumerate(trades)]
    for f in fills:
        p.apply(f)
    return p, fills


@settings(max_examples=200, deadline=None)
@given(TRADES)
def test_the_position_is_the_sum_of_signed_fills(trades: list[tuple[str, str, Decimal, Decimal, Decimal]]) -> None:
    p, fills = _apply_all(trades)
    for symbol in {f.symbol for f in fills}:
        signed = sum((f.quantity if f.side == "buy" else -f.quantity for f in fills if f.symbol == symbol), D(0))
        assert p.quantity(symbol) == signed


@settings(max_examples=200, deadline=None)
@given(TRADES, st.dictionaries(SYMBOLS, PRICE))
def test_cash_plus_market_value_is_starting_cash_plus_realized_plus_unrealized_minus_fees(
    trades: list[tuple[str, str, Decimal, Decimal, Decimal]], marks: dict[str, Decimal]
) -> None:
    p, _ = _apply_all(trades)
    for symbol, price in marks.items():
        p.mark(symbol, price)
    a = p.account()
    lhs = a.cash + a.market_value
    rhs = a.starting_cash + a.realized_pnl + a.unrealized_pnl - a.fees_paid
    assert abs(lhs - rhs) <= TOLERANCE
    assert a.equity == lhs
    assert a.gross_exposure >= abs(a.net_exposure)


@settings(max_examples=200, deadline=None)
@given(TRADES, st.dictionaries(SYMBOLS, PRICE, min_size=3))
def test_closing_everything_leaves_zero_quantity_and_realized_pnl_equal_to_the_trade_pnls(
    trades: list[tuple[str, str, Decimal, Decimal, Decimal]], exit_prices: dict[str, Decimal]
) -> None:
    p, fills = _apply_all(trades)
    for i, (symbol, pos) in enumerate(list(p.positions.items())):
        if pos.quantity != 0:
            closing = _fill(
                10_000 + i, symbol, "sell" if pos.quantity > 0 else "buy", abs(pos.quantity), exit_prices[symbol], D(0)
            )
            fills.append(closing)
            p.apply(closing)
    assert all(pos.quantity == 0 for pos in p.positions.values())
    # flat: the trades' PnL is what was sold minus what was bought
    trade_pnl = sum((f.quantity * f.price * (1 if f.side == "sell" else -1) for f in fills), D(0))
    assert abs(p.realized_pnl() - trade_pnl) <= TOLERANCE
    assert abs(p.cash - (p.starting_cash + trade_pnl - p.fees_paid())) <= TOLERANCE


@settings(max_examples=50, deadline=None)
@given(TRADES)
def test_replaying_the_same_fills_rebuilds_an_identical_portfolio_and_repeats_change_nothing(
    trades: list[tuple[str, str, Decimal, Decimal, Decimal]],
) -> None:
    p, fills = _apply_all(trades)
    again = Portfolio(starting_cash=D(100_000))
    for f in fills + fills:
        again.apply(f)
    assert again.account() == p.account() and again.open_positions() == p.open_positions()


def test_a_position_is_marked_at_the_latest_price_and_shows_its_unrealized_pnl() -> None:
    p = Portfolio(starting_cash=D(10_000))
    p.apply(_fill(1, "AAPL", "buy", D(10), D(100), D(1)))
    p.mark("AAPL", D(110))
    [view] = p.open_positions()
    assert (view.mark_price, view.market_value, view.unrealized_pnl) == (D(110), D(1100), D(100))
    a = p.account()
    assert (a.cash, a.equity, a.gross_exposure, a.net_exposure, a.fees_paid) == (
        D(8999),
        D(10_099),
        D(1100),
        D(1100),
        D(1),
    )


def test_a_short_position_has_negative_net_and_positive_gross_exposure() -> None:
    p = Portfolio(starting_cash=D(10_000))
    p.apply(_fill(1, "AAPL", "sell", D(10), D(100), D(0)))
    p.apply(_fill(2, "MSFT", "buy", D(5), D(100), D(0)))
    a = p.account()
    assert (a.gross_exposure, a.net_exposure, a.cash) == (D(1500), D(-500), D(10_500))
