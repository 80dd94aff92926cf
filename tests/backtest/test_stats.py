"""Statistics on equity curves and trade lists whose values are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from execsim.backtest.stats import compute_stats, infer_periods_per_year


def days(n: int) -> np.ndarray:
    return np.arange(n).astype("timedelta64[D]") + np.datetime64("2020-01-01", "ns")


def test_drawdown_returns_and_trade_statistics() -> None:
    equity = np.array([100.0, 110.0, 99.0, 121.0])
    s = compute_stats(
        days(4), equity, np.array([1.0, 2.0, 2.0, 3.0]), np.array([0, 1, 1, 0]), [10.0, -5.0, 5.0], 1, 0.5, 4
    )
    assert s["max_drawdown"] == pytest.approx(99 / 110 - 1)
    assert s["total_return"] == pytest.approx(0.21)
    assert s["buy_and_hold_return"] == pytest.approx(2.0)
    assert s["win_rate"] == pytest.approx(2 / 3)
    assert s["profit_factor"] == pytest.approx(3.0)
    assert s["expectancy"] == pytest.approx(10 / 3)
    assert s["exposure"] == 0.5 and s["trades"] == 3 and s["denied_orders"] == 1 and s["orders"] == 4
    r = np.array([0.1, -0.1, 121 / 99 - 1])
    assert s["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    assert s["sortino"] == pytest.approx(r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)) * math.sqrt(252))
    assert s["cagr"] == pytest.approx(1.21 ** (365.25 / 3) - 1)


def test_undefined_statistics_are_none_not_infinite() -> None:
    s = compute_stats(days(3), np.full(3, 100.0), np.ones(3), np.zeros(3), [], 0, 0.0, 0)
    assert s["sharpe"] is None and s["win_rate"] is None and s["profit_factor"] is None and s["expectancy"] is None
    s = compute_stats(days(3), np.array([100.0, 101, 102]), np.ones(3), np.zeros(3), [3.0], 0, 0.0, 2)
    assert s["profit_factor"] is None and s["win_rate"] == 1.0


def test_bar_spacing_sets_the_annualization() -> None:
    assert infer_periods_per_year(days(10)) == 252.0
    weekly = np.arange(10).astype("timedelta64[W]").astype("timedelta64[D]") + np.datetime64("2020-01-01", "ns")
    assert infer_periods_per_year(weekly) == 52.0
    hourly = np.arange(10).astype("timedelta64[h]") + np.datetime64("2020-01-01", "ns")
    assert infer_periods_per_year(hourly) == pytest.approx(365.25 * 24)
