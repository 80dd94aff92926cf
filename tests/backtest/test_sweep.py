"""The vectorized sweep gives the same trades as the event-driven backtest, and ranks parameter sets."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from execsim.backtest import BacktestConfig, BacktestError, load_bundled, run_backtest
from execsim.backtest.broker import risk_limits
from execsim.backtest.data import Bars
from execsim.backtest.sweep import FillPrices, evaluate, parse_axis, run_sweep, simulate
from strategies import BatchData, build_strategy
from tools.risk import RiskGate, RiskLimits

CASES = [
    ("momentum", {"lookback": 60}),
    ("momentum", {"variant": "ma_cross", "fast": 10, "slow": 40}),
    ("mean_reversion", {"window": 15, "entry_z": 1.5}),
    ("mean_reversion", {"rsi_confirm": True}),
    ("hybrid", {}),
]
CONFIGS = [
    BacktestConfig(cash=Decimal(10_000), commission=Decimal("0.002")),
    BacktestConfig(cash=Decimal(10_000), commission=Decimal("0.001"), slippage_bps=Decimal(5), fractional=True),
    BacktestConfig(cash=Decimal(10_000), max_position=Decimal(1500)),
    # a small account: many target changes size to zero whole units (the event-driven path skips those early)
    BacktestConfig(cash=Decimal(120), commission=Decimal("0.001")),
    # free and fractional under a limit: the sweep's float-only path (a flat price model, a position-only gate)
    BacktestConfig(cash=Decimal(10_000), fractional=True, max_position=Decimal("700.5")),
]
IDS = ["commission", "slippage-fractional", "risk-limit", "small-account", "free-fractional-limit"]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize(("name", "params"), CASES)
def test_sweep_path_trades_equal_event_driven_trades(name: str, params: dict, config: BacktestConfig) -> None:
    bars = load_bundled("AAPL")
    strategy = build_strategy(name, params)
    event = run_backtest(strategy, bars, config)
    data = BatchData(bars.open, bars.high, bars.low, bars.close)
    stats, fast = evaluate(strategy, data, bars, config, RiskGate(risk_limits(config.max_position)))
    assert len(fast) == len(event.trades) > 3
    for f, e in zip(fast, event.trades, strict=True):
        assert (f.side, f.entry_bar, f.exit_bar) == (e.side, e.entry_bar, e.exit_bar)
        assert f.quantity == pytest.approx(float(e.quantity), rel=1e-12)
        assert f.entry_price == pytest.approx(float(e.entry_price), abs=1e-8)
        assert f.exit_price == pytest.approx(float(e.exit_price), abs=1e-8)
        assert f.pnl == pytest.approx(float(e.pnl), abs=1e-6)
    assert stats["denied_orders"] == event.stats["denied_orders"]
    assert stats["sharpe"] == pytest.approx(event.stats["sharpe"], rel=1e-9)
    assert stats["final_equity"] == pytest.approx(float(event.final_equity), rel=1e-12)


def test_the_fill_prices_computed_in_one_go_equal_the_engines_one_by_one() -> None:
    bars = load_bundled("AAPL")
    rng = np.random.default_rng(7)
    halves = np.array([100.00005, 1.23455, 1.00015, 99.99995, 12.34565, 0.00015, 250.12345])  # ties at 4 places
    opens = np.concatenate(
        [
            halves,
            rng.uniform(0.5, 5_000.0, 20_000),
            np.round(rng.uniform(1, 500, 2_000), 5),  # many exact ties
            np.round(rng.uniform(1e6, 9e9, 5_000), 5),  # large prices: the product's ulp is far above 1e-5
            rng.uniform(1e-6, 1e-3, 2_000),  # tiny ones (shortest decimals in exponent form)
        ]
    )
    n = len(opens)
    fake = replace(bars, ts=bars.ts[:1].repeat(n), open=opens, high=opens, low=opens, close=opens)
    prices = FillPrices(fake, BacktestConfig())
    got = prices.market_floats(np.arange(n))
    assert got is not None
    want = [float(FillPrices(fake, BacktestConfig()).fill_price(i, "buy")) for i in range(n)]
    assert got.tolist() == want
    assert got[:7].tolist() == [100.0, 1.2346, 1.0002, 100.0, 12.3456, 0.0002, 250.1234]
    assert FillPrices(fake, BacktestConfig(slippage_bps=Decimal(1))).market_floats(np.arange(n)) is None


@pytest.mark.parametrize("fractional", [False, True])
def test_the_float_only_path_makes_the_orders_and_denials_of_the_gate_checked_path(fractional: bool) -> None:
    bars: Bars = load_bundled("AAPL")
    strategy = build_strategy("mean_reversion", {"window": 15, "entry_z": 1.5})
    targets = strategy.targets(BatchData(bars.open, bars.high, bars.low, bars.close))
    limit = Decimal("700.5") if fractional else Decimal(700)
    config = BacktestConfig(cash=Decimal(10_000), fractional=fractional, max_position=limit)
    plain = RiskGate(RiskLimits(max_position=limit))
    # one more check (that never binds) and the float path is off: every order goes through the gate
    checked = RiskGate(RiskLimits(max_position=limit, max_order_quantity=Decimal(10**9)))
    fast, slow = simulate(targets, bars, config, plain), simulate(targets, bars, config, checked)
    assert fast.denials == slow.denials > 0
    assert fast.fills == slow.fills
    assert len(fast.fills) > 50
    assert plain.orders_in_window() == checked.orders_in_window() == len(fast.fills)


def test_axes_parse_integers_floats_and_steps() -> None:
    assert parse_axis("window=5..8").values == (5, 6, 7, 8)
    assert parse_axis("fast=5..20:5").values == (5, 10, 15, 20)
    assert parse_axis("entry_z=1.0..1.5:0.25").values == (1.0, 1.25, 1.5)
    assert parse_axis("momentum.lookback=20..40:20").key == "momentum.lookback"
    for bad in ("window", "window=5", "window=9..5", "window=a..b", "window=1..5:0"):
        with pytest.raises(BacktestError) as e:
            parse_axis(bad)
        assert e.value.code == "invalid_sweep"


def test_a_two_parameter_sweep_ranks_by_the_chosen_stat_and_skips_invalid_sets() -> None:
    bars = load_bundled("MSFT")
    axes = [parse_axis("fast=10..50:10"), parse_axis("slow=30..60:10")]
    seen: list[int] = []
    result = run_sweep(
        "momentum", {"variant": "ma_cross"}, axes, bars, rank_by="total_return", progress=lambda d, t: seen.append(d)
    )
    assert seen[-1] == 20 and len(seen) == 20
    assert len(result.rows) + len(result.skipped) == 20
    assert all(p["fast"] >= p["slow"] for p, _ in result.skipped) and len(result.skipped) == 6
    returns = [r.stats["total_return"] for r in result.rows]
    assert returns == sorted(returns, reverse=True)
    best = result.rows[0].params
    single = run_backtest(build_strategy("momentum", {"variant": "ma_cross", **best}), bars, BacktestConfig())
    assert single.stats["total_return"] == pytest.approx(returns[0], rel=1e-9)


def test_a_sweep_refuses_unknown_ranking_stats_and_three_axes() -> None:
    bars = load_bundled("IBM")
    with pytest.raises(BacktestError, match="cannot rank by"):
        run_sweep("mean_reversion", {}, [parse_axis("window=5..6")], bars, rank_by="luck")
    with pytest.raises(BacktestError, match="one or two"):
        run_sweep("mean_reversion", {}, [parse_axis(f"{k}=1..2") for k in ("a", "b", "c")], bars)
