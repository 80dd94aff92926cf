"""The backtester's two fast ways through a strategy equal feeding the bars to `update` one by one:
`StrategyState.scan` (fused per strategy) gives the same change bars, targets and state after, to the last float;
`Strategy.exact_targets` (whole arrays, `strategies.indicators.exact`) the same targets, to the bit."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pytest

from strategies import build_strategy
from strategies.indicators import ROC, EWMAVol, RollingStats, VarianceRatio, ZScore, exact

SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("momentum", {}),
    ("momentum", {"lookback": 5, "vol_min_periods": 3, "long_only": True, "target_step": 0.1}),
    ("momentum", {"variant": "ma_cross"}),
    ("momentum", {"variant": "ma_cross", "fast": 2, "slow": 3, "long_only": True}),
    ("mean_reversion", {}),
    ("mean_reversion", {"window": 4, "rsi_confirm": True, "rsi_period": 3}),
    ("mean_reversion", {"window": 3, "entry_z": 1.0, "exit_z": 0.1, "long_only": True}),
    ("hybrid", {}),
    ("hybrid", {"momentum": {"variant": "ma_cross", "fast": 5, "slow": 30}}),
    (
        "hybrid",
        {
            "momentum": {"lookback": 3, "vol_min_periods": 1},
            "mean_reversion": {"window": 3, "rsi_confirm": True},
            "regime_lag": 2,
            "regime_window": 3,
            "neutral_band": 0.05,
        },
    ),
]


def series(seed: int, n: int = 6_000) -> list[float]:
    """A random walk with the cases the indicators special-case: constant runs, a price gap that rolls out of
    the windows, values that differ in the last digits, and a slow drift (narrow windows)."""
    rng = np.random.default_rng(seed)
    x = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    x[500:800] = x[500]
    x[1500:1504] = x[1500] * 50.0
    x[2500:2900] = 50.0 + (np.arange(400) % 2) * 1e-9
    x[3500:4000] = 80.0 + np.arange(500) * 1e-7
    out: list[float] = x.round(6).tolist()
    return out


def dump(obj: object) -> Any:
    """Everything a state holds (recursively, deques as lists, floats by repr), but the scan's warm flag."""
    if isinstance(obj, deque | list):
        return [dump(v) for v in obj]
    if isinstance(obj, float):
        return repr(obj)
    fields: dict[str, Any] = {}
    if type(obj).__module__.startswith("strategies"):
        fields.update(getattr(obj, "__dict__", {}))
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    fields[name] = getattr(obj, name)
        return {k: dump(v) for k, v in fields.items() if k not in ("_warm", "p")}
    return obj


@pytest.mark.parametrize(("name", "params"), SETTINGS)
@pytest.mark.parametrize("seed", [1, 2])
def test_scanning_gives_the_targets_and_the_state_of_updating_bar_by_bar(
    name: str, params: dict[str, Any], seed: int
) -> None:
    closes = series(seed)
    one, scanned = build_strategy(name, params).new_state("X"), build_strategy(name, params).new_state("X")
    changes, last = [], 0.0
    for i, x in enumerate(closes):
        t = one.update(x, x, x, x)
        if t != last:
            changes.append((i, t))
            last = t
    got, last, i, n = [], 0.0, 0, len(closes)
    while i < n:
        # stop at arbitrary ends too (the backtester scans chunk by chunk)
        end = min(n, i + 777)
        j, t = scanned.scan(closes, closes, closes, closes, i, end, last)
        if j < end:
            got.append((j, t))
            last = t
        i = j + 1 if j < end else end
    assert got == changes
    assert dump(scanned) == dump(one)


def test_a_state_whose_update_was_replaced_is_scanned_through_it() -> None:
    state = build_strategy("hybrid", {}).new_state("X")
    calls = 0
    inner = state.update

    def counted(o: float, h: float, lo: float, c: float) -> float:
        nonlocal calls
        calls += 1
        return inner(o, h, lo, c)

    state.update = counted  # type: ignore[method-assign,assignment]
    closes = series(3)
    i, last = 0, 0.0
    while i < len(closes):
        j, last = state.scan(closes, closes, closes, closes, i, len(closes), last)
        i = j + 1
    assert calls == len(closes)


@pytest.mark.parametrize(("name", "params"), SETTINGS)
@pytest.mark.parametrize("seed", [1, 2])
def test_exact_targets_are_the_targets_of_updating_bar_by_bar_to_the_bit(
    name: str, params: dict[str, Any], seed: int
) -> None:
    closes = series(seed)
    strategy = build_strategy(name, params)
    exact = strategy.exact_targets(np.array(closes))
    if exact is None:
        return  # this setting has no exact replay: the backtester scans it
    update = strategy.new_state("X").update
    live = np.array([update(x, x, x, x) for x in closes])
    assert np.array_equal(exact, live)
    assert np.array_equal(np.signbit(exact), np.signbit(live))


@pytest.mark.parametrize("n", [2, 3, 20, 120, 700])
@pytest.mark.parametrize("seed", [1, 2])
def test_exact_indicator_replays_equal_the_incremental_classes(n: int, seed: int) -> None:
    x = np.array(series(seed))
    stats, z = RollingStats(n), ZScore(n)
    std, zs = [], []
    for v in x.tolist():
        stats.update(v)
        std.append(stats.std)
        zs.append(z.update(v))
    assert np.array_equal(exact.rolling_stats(x, n)[1], np.array(std), equal_nan=True)
    assert np.array_equal(exact.zscore(x, n), np.array(zs), equal_nan=True)
    vr, ewma, roc = VarianceRatio(max(2, n // 10), n), EWMAVol(n / (n + 1), max(1, n // 5)), ROC(n)
    expected = np.array([(vr.update(v), ewma.update(v), roc.update(v)) for v in x.tolist()])
    assert np.array_equal(exact.variance_ratio(x, max(2, n // 10), n), expected[:, 0], equal_nan=True)
    assert np.array_equal(exact.ewma_vol(x, n / (n + 1), max(1, n // 5), 252.0), expected[:, 1], equal_nan=True)
    assert np.array_equal(exact.roc(x, n), expected[:, 2], equal_nan=True)
