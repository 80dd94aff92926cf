"""Hybrid regime weighting, and the Decision every strategy returns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from strategy_helpers import T0, run_live, targets

from strategies import STRATEGIES, Bar, Hybrid, StrategyBook, build_strategy

SMALL = {
    "momentum": {"lookback": 10, "vol_min_periods": 5},
    "mean_reversion": {"window": 10},
    "regime_lag": 2,
    "regime_window": 20,
    "neutral_band": 0.2,
}


def trending(n: int = 80) -> list[float]:
    # returns that persist: runs of five +2 % bars, then five +0.2 % bars -> positive autocorrelation, VR(2) > 1
    out, p = [], 100.0
    for i in range(n):
        p *= 1.02 if (i // 5) % 2 == 0 else 1.002
        out.append(p)
    return out


def zigzag(n: int = 80) -> list[float]:
    return [100.0 + (3.0 if i % 2 else -3.0) + 0.01 * i for i in range(n)]


def test_a_trending_series_follows_momentum_and_says_so() -> None:
    closes = trending()
    d = run_live(Hybrid(SMALL), closes)[-1]
    assert d.rationale["regime"] == "trending" and d.rationale["variance_ratio"] > 1.2
    assert d.target == d.rationale["momentum"]["target"] > 0  # long, vol-scaled
    assert "mean_reversion" in d.rationale and d.rationale["momentum_weight"] == 1.0
    targets(Hybrid(SMALL), closes)


def test_a_ranging_series_follows_mean_reversion() -> None:
    closes = zigzag()
    decisions = run_live(Hybrid(SMALL), closes)
    last = decisions[-1]
    assert last.rationale["regime"] == "ranging" and last.rationale["variance_ratio"] < 0.8
    assert all(d.target == d.rationale["mean_reversion"]["target"] for d in decisions[30:])
    targets(Hybrid(SMALL), closes)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_says_insufficient_data_until_warm_up_then_decides(name: str) -> None:
    strategy = build_strategy(name)
    closes = (100 * np.exp(np.cumsum(np.random.default_rng(5).normal(0, 0.01, strategy.warmup + 5)))).tolist()
    decisions = run_live(strategy, closes)
    for d in decisions[: strategy.warmup - 1]:
        assert d.status == "insufficient_data" and d.side == "hold" and d.target == 0 and d.confidence == 0
        assert d.rationale["bars_needed"] == strategy.warmup
    assert all(d.status == "ready" for d in decisions[strategy.warmup - 1 :])
    assert all(0.0 <= d.confidence <= 1.0 and math.isfinite(d.target) for d in decisions)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_vectorized_targets_equal_bar_by_bar_targets_on_a_long_random_walk(name: str) -> None:
    closes = (100 * np.exp(np.cumsum(np.random.default_rng(11).normal(0, 0.012, 3000)))).round(2).tolist()
    params = {"momentum": {"lookback": 60}, "mean_reversion": {"rsi_confirm": True}, "hybrid": {}}[name]
    t = targets(build_strategy(name, params), closes)
    assert len(set(t)) > 2


def test_decision_side_compares_with_the_previous_target() -> None:
    closes = [100.0] * 10 + [90.0, 99.0]
    ds = run_live(build_strategy("mean_reversion", {"window": 10}), closes)
    assert [d.side for d in ds[9:]] == ["hold", "buy", "flat"]
    assert ds[11].summary.startswith("z-score")


def test_a_book_keeps_one_state_per_symbol_for_live_use() -> None:
    book = StrategyBook(build_strategy("mean_reversion", {"window": 3}))
    for a, b in [(10.0, 50.0), (10.0, 50.0), (10.0, 50.0), (8.0, 50.0)]:
        da = book.on_bar("AAA", Bar.from_price(T0, a))
        db = book.on_bar("BBB", Bar.from_price(T0, b))
    assert da.symbol == "AAA" and da.target == 1.0 and db.target == 0.0
    assert book.state("AAA") is not book.state("BBB")
    assert da.model_dump(mode="json")["ts"].endswith("Z")
