"""Hand-built bars where every fill, fee and trade is known by construction.

With momentum ma_cross fast=1, slow=2 the target after bar t is +1 when close_t > close_{t-1} and -1
when it is below (the SMA(1) is the close, the SMA(2) the mean of the last two closes).
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from execsim.backtest import BacktestConfig, from_dataframe, run_backtest
from strategies import build_strategy

FLIP = {"variant": "ma_cross", "fast": 1, "slow": 2}
CASH = Decimal(10_000)  # the quantities below are worked out for this account


def bars(opens: list[float], closes: list[float]):
    df = pd.DataFrame(
        {
            "time": pd.date_range("2024-01-01", periods=len(closes), freq="D", tz="UTC"),
            "open": opens,
            "high": [max(o, c) for o, c in zip(opens, closes, strict=True)],
            "low": [min(o, c) for o, c in zip(opens, closes, strict=True)],
            "close": closes,
        }
    )
    return from_dataframe(df, "TEST")


OPENS = [10.0, 10.5, 11.5, 12.5, 10.5]
CLOSES = [10.0, 11.0, 12.0, 11.0, 10.0]


def test_a_decision_on_a_close_fills_at_the_next_open_with_commission_on_notional() -> None:
    result = run_backtest(
        build_strategy("momentum", FLIP), bars(OPENS, CLOSES), BacktestConfig(cash=CASH, commission=Decimal("0.002"))
    )
    long = result.trades[0]
    # decided on bar 1's close (11 > 10.5), filled at bar 2's open 11.5: floor(10000 / (11.5 * 1.002)) = 867
    assert (long.side, long.entry_bar, long.entry_price, long.quantity) == ("long", 2, Decimal("11.5"), Decimal(867))
    assert long.exit_bar == 4 and long.exit_price == Decimal("10.5")
    entry_fee = Decimal("11.5") * 867 * Decimal("0.002")  # 19.941
    reversal_fee = Decimal("10.5") * 1733 * Decimal("0.002")  # one order: sell 867 + 866
    closing_fee = (reversal_fee * 867 / 1733).quantize(Decimal("1e-10"))
    assert long.pnl == 867 * (Decimal("10.5") - Decimal("11.5")) - entry_fee - closing_fee
    assert long.fees == entry_fee + closing_fee


def test_a_reversal_is_one_order_that_closes_and_reopens() -> None:
    result = run_backtest(
        build_strategy("momentum", FLIP), bars(OPENS, CLOSES), BacktestConfig(cash=CASH, commission=Decimal("0.002"))
    )
    assert result.stats["orders"] == 2
    long, short = result.trades
    assert long.exit_time == short.entry_time and short.side == "short"
    # equity at bar 4's open: 10000 - 867*11.5 - 19.941 + 867*10.5 = 9112.999 -> trunc(9112.999 / (10.5*1.002)) = 866
    assert short.quantity == Decimal(866) and short.open and short.exit_time is None
    assert result.position.tolist() == [0, 0, 867, 867, -866]


def test_the_equity_curve_marks_the_position_at_each_close() -> None:
    result = run_backtest(
        build_strategy("momentum", FLIP), bars(OPENS, CLOSES), BacktestConfig(cash=CASH, commission=Decimal(0))
    )
    # no costs: 869 units at 11.5 (floor(10000/11.5)); cash 6.5
    assert result.equity[2] == pytest.approx(6.5 + 869 * 12.0)
    assert result.equity[-1] == pytest.approx(float(result.final_equity))
    assert result.stats["total_return"] == pytest.approx(float(result.final_equity) / 10_000 - 1)


def test_a_target_change_on_the_last_bar_is_not_executed() -> None:
    result = run_backtest(
        build_strategy("momentum", FLIP), bars([10.0, 10.0, 10.0], [10.0, 10.0, 11.0]), BacktestConfig(cash=CASH)
    )
    assert result.trades == [] and result.stats["orders"] == 0


def test_fractional_sizing_keeps_four_decimals_and_whole_units_round_down() -> None:
    cfg = BacktestConfig(cash=CASH, commission=Decimal(0), fractional=True)
    result = run_backtest(build_strategy("momentum", FLIP), bars(OPENS, CLOSES), cfg)
    assert result.trades[0].quantity == Decimal("869.5652")  # 10000 / 11.5 = 869.565217...


def test_slippage_moves_the_fill_against_the_order() -> None:
    cfg = BacktestConfig(cash=CASH, commission=Decimal(0), slippage_bps=Decimal(10))
    long, short = run_backtest(build_strategy("momentum", FLIP), bars(OPENS, CLOSES), cfg).trades
    assert long.entry_price == Decimal("11.5115") and long.exit_price == Decimal("10.4895")


def test_an_order_the_risk_gate_denies_is_recorded_and_not_filled() -> None:
    cfg = BacktestConfig(cash=CASH, commission=Decimal("0.002"), max_position=Decimal(500))
    result = run_backtest(build_strategy("momentum", FLIP), bars(OPENS, CLOSES), cfg)
    assert result.stats["denied_orders"] == 2 and result.stats["orders"] == 0 and result.trades == []
    first = result.denials[0]
    assert (first.reason_code, first.side, first.quantity, first.bar) == ("max_position", "buy", Decimal(867), 2)
    assert result.to_json()["denials"][0]["reason_code"] == "max_position"


def test_trades_inside_one_position_are_one_round_trip_with_average_prices() -> None:
    from execsim.backtest.trades import TradeBook

    book = TradeBook()
    t = pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime()
    book.on_fill(Decimal(10), Decimal(100), Decimal(1), t, 0)
    book.on_fill(Decimal(10), Decimal(110), Decimal(1), t, 1)
    book.on_fill(Decimal(-5), Decimal(120), Decimal(1), t, 2)
    book.on_fill(Decimal(-15), Decimal(90), Decimal(1), t, 3)
    (trade,) = book.trades
    assert trade.quantity == 20 and trade.entry_price == Decimal(105)
    assert trade.exit_price == Decimal("97.5")  # (5*120 + 15*90) / 20
    assert trade.pnl == (5 * 120 + 15 * 90) - (10 * 100 + 10 * 110) - 4
    assert book.position == 0 and book.open_trade(Decimal(1)) is None


def test_the_broker_validates_any_order_outside_the_shapes_it_trusts() -> None:
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from execsim.backtest.broker import Broker

    broker = Broker("ABC", datetime(2024, 1, 2, tzinfo=UTC), Decimal("0.001"), Decimal(0), None, "momentum")
    first = broker.market("buy", Decimal("1.5"), Decimal("100.25"), 0.5, {"target": 1.0})
    second = broker.market("sell", Decimal("1.5"), Decimal("101"), 0.25, {"target": 0.0})
    assert [(f.side, f.quantity, f.price) for f in first + second] == [
        ("buy", Decimal("1.5"), Decimal("100.2500")),
        ("sell", Decimal("1.5"), Decimal("101.0000")),
    ]
    with pytest.raises(ValidationError, match="decimal places"):  # 11 decimals: beyond the wire format
        broker.market("buy", Decimal("0.00000000001"), Decimal("100"), 0.5, {})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        broker.market("buy", Decimal(1), Decimal("100"), 1.5, {})


def test_bar_times_are_exact_to_the_microsecond() -> None:
    df = pd.DataFrame(
        {
            "time": ["2024-01-02T14:30:00.000001Z", "2024-01-02T14:30:00.999999Z"],
            "open": [1.0, 1.0],
            "high": [1.0, 1.0],
            "low": [1.0, 1.0],
            "close": [1.0, 1.0],
        }
    )
    bars = from_dataframe(df, "ABC")
    assert [bars.time(0).isoformat(), bars.time(1).isoformat()] == [
        "2024-01-02T14:30:00.000001+00:00",
        "2024-01-02T14:30:00.999999+00:00",
    ]
