"""On real daily data (bundled AAPL/MSFT), each strategy's trades equal an independent pandas reference."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pandas_reference as ref
import pytest

from execsim.backtest import BacktestConfig, load_bundled, run_backtest
from strategies import build_strategy

COMMISSION = 0.002
CASH = Decimal(10_000)


def frame(symbol: str) -> pd.DataFrame:
    return load_bundled(symbol).to_frame()


def compare(symbol: str, name: str, params: dict, expected_targets: pd.Series) -> int:
    bars = load_bundled(symbol)
    result = run_backtest(
        build_strategy(name, params), bars, BacktestConfig(cash=CASH, commission=Decimal(str(COMMISSION)))
    )
    expected = ref.execute(bars.to_frame(), expected_targets, float(CASH), COMMISSION)
    got = [t for t in result.trades if not t.open]
    assert len(got) == len(expected) and len(got) > 5
    for g, e in zip(got, expected, strict=True):
        assert (g.side, g.entry_time, g.exit_time, int(g.quantity)) == (
            e["side"],
            e["entry_time"].to_pydatetime(),
            e["exit_time"].to_pydatetime(),
            e["quantity"],
        )
        assert float(g.entry_price) == pytest.approx(e["entry_price"], abs=1e-6)
        assert float(g.exit_price) == pytest.approx(e["exit_price"], abs=1e-6)
        assert float(g.pnl) == pytest.approx(e["pnl"], abs=1e-4)
    return len(got)


def test_momentum_roc_trades_match_the_reference_on_aapl() -> None:
    p = {"lookback": 126, "vol_min_periods": 20, "vol_com": 60.0, "vol_target": 0.15, "target_step": 0.25}
    compare("AAPL", "momentum", p, ref.roc_targets(frame("AAPL")["close"], p))


@pytest.mark.parametrize("long_only", [False, True])
def test_momentum_ma_cross_trades_match_the_reference_on_msft(long_only: bool) -> None:
    p = {"variant": "ma_cross", "fast": 20, "slow": 50, "long_only": long_only}
    compare("MSFT", "momentum", p, ref.ma_cross_targets(frame("MSFT")["close"], p))


@pytest.mark.parametrize("rsi_confirm", [False, True])
def test_mean_reversion_trades_match_the_reference_on_ibm(rsi_confirm: bool) -> None:
    p = {"window": 20, "rsi_confirm": rsi_confirm}
    compare("IBM", "mean_reversion", p, ref.mean_reversion_targets(frame("IBM")["close"], p))


def test_hybrid_trades_match_the_reference_on_aapl() -> None:
    mom = {"lookback": 126, "vol_min_periods": 20, "vol_com": 60.0, "vol_target": 0.15, "target_step": 0.25}
    mr = {"window": 20}
    params = {"momentum": mom, "mean_reversion": mr, "regime_lag": 5, "regime_window": 120, "neutral_band": 0.15}
    warmup = build_strategy("hybrid", params).warmup
    expected = ref.hybrid_targets(frame("AAPL")["close"], mom, mr, 5, 120, 0.15, warmup)
    compare("AAPL", "hybrid", params, expected)
