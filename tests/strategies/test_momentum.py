"""Momentum on series whose right answer is known by construction."""

from __future__ import annotations

import math

import pytest
from strategy_helpers import run_live, targets

from strategies import Momentum, StrategyError, build_strategy


def geometric(start: float, r: float, n: int) -> list[float]:
    return [start * math.exp(r * i) for i in range(n)]


def test_roc_goes_long_a_steady_uptrend_sized_to_the_volatility_target() -> None:
    # constant log return 0.02 -> EWMA vol exactly 0.02 * sqrt(252) = 0.3175; 0.15 / 0.3175 = 0.472 -> 0.25 step
    closes = geometric(100, 0.02, 40)
    s = Momentum({"lookback": 10, "vol_min_periods": 5, "vol_target": 0.15, "target_step": 0.25})
    t = targets(s, closes)
    assert s.warmup == 11
    assert t[:10] == [0.0] * 10
    assert t[10:] == [0.25] * 30
    d = run_live(s, closes)[-1]
    assert d.rationale["ewma_vol_annualized"] == pytest.approx(0.02 * math.sqrt(252), rel=1e-6)
    assert d.rationale["raw_size"] == pytest.approx(0.15 / (0.02 * math.sqrt(252)), rel=1e-6)


def test_roc_caps_the_size_at_max_leverage_when_volatility_is_low() -> None:
    closes = geometric(100, 0.001, 40)  # vol 1.6 %/yr -> raw 9.4, capped at 1
    assert targets(Momentum({"lookback": 10, "vol_min_periods": 5}), closes)[-1] == 1.0


def test_roc_shorts_a_downtrend_and_long_only_goes_flat_instead() -> None:
    closes = geometric(100, -0.001, 40)
    assert targets(Momentum({"lookback": 10, "vol_min_periods": 5}), closes)[-1] == -1.0
    assert targets(Momentum({"lookback": 10, "vol_min_periods": 5, "long_only": True}), closes)[-1] == 0.0


def test_roc_confidence_is_the_lookback_t_stat_over_two() -> None:
    closes = geometric(100, 0.001, 40)  # every return equal: t = L r / (r sqrt L) = sqrt(10) > 2
    d = run_live(Momentum({"lookback": 10, "vol_min_periods": 5}), closes)[-1]
    assert d.rationale["t_stat"] == pytest.approx(math.sqrt(10), rel=1e-4)
    assert d.confidence == 1.0


def test_ma_cross_flips_exactly_on_the_bar_the_fast_average_crosses() -> None:
    # V shape: down 10 bars, then up. fast SMA(2) vs slow SMA(4)
    closes = [float(x) for x in [20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 11, 12, 13, 14, 15]]
    s = Momentum({"variant": "ma_cross", "fast": 2, "slow": 4})
    t = targets(s, closes)
    # at i=12: fast=(11+12)/2=11.5, slow=(10+11+12+11)/4... recompute: closes[9:13]=11,10,11,12 -> 11.0 -> up
    # at i=11: fast=(10+11)/2=10.5, slow=(12+11+10+11)/4=11.0 -> still down
    assert t[:3] == [0.0, 0.0, 0.0]
    assert t[3:12] == [-1.0] * 9
    assert t[12:] == [1.0] * 4
    decisions = run_live(s, closes)
    assert decisions[12].side == "buy" and decisions[12].previous_target == -1.0
    assert decisions[13].side == "hold"


def test_ma_cross_long_only_is_flat_where_it_would_be_short() -> None:
    closes = [float(x) for x in [20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 11, 12, 13, 14, 15]]
    t = targets(Momentum({"variant": "ma_cross", "fast": 2, "slow": 4, "long_only": True}), closes)
    assert t[3:12] == [0.0] * 9 and t[12:] == [1.0] * 4


def test_ma_cross_keeps_its_position_while_the_averages_are_level() -> None:
    closes = [10.0, 11, 12, 13, 14] + [14.0] * 10
    t = targets(Momentum({"variant": "ma_cross", "fast": 2, "slow": 4}), closes)
    assert t[-1] == 1.0  # once the averages meet on flat prices, the long is kept


def test_fast_must_be_shorter_than_slow() -> None:
    with pytest.raises(StrategyError, match="fast .* must be smaller than slow") as e:
        build_strategy("momentum", {"variant": "ma_cross", "fast": "50", "slow": "20"})
    assert e.value.code == "invalid_params"
