"""Every incremental indicator equals its numpy twin and a naive reference, bar by bar (Hypothesis)."""

from __future__ import annotations

import math

import naive_indicators as naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.indicators import (
    ADX,
    EMA,
    ROC,
    RSI,
    SMA,
    Bollinger,
    EWMAVol,
    RollingStats,
    VarianceRatio,
    ZScore,
    batch,
)

RTOL = 1e-9


@st.composite
def prices(draw: st.DrawFn, min_size: int = 1, max_size: int = 90) -> list[float]:
    """Cent prices in segments: constant runs, random walks and gaps (jumps of up to 10x either way)."""
    size = draw(st.integers(min_size, max_size))
    out: list[float] = []
    level = draw(st.integers(100, 1_000_000))  # cents
    while len(out) < size:
        kind = draw(st.sampled_from(["constant", "walk", "gap"]))
        length = draw(st.integers(1, 25))
        if kind == "gap":
            level = max(1, int(level * draw(st.sampled_from([0.1, 0.5, 2.0, 10.0]))))
        for _ in range(length):
            if kind == "walk":
                level = max(1, level + draw(st.integers(-level // 20 - 1, level // 20 + 1)))
            out.append(level / 100)
    return out[:size]


def incremental(indicator: object, xs: list[float]) -> np.ndarray:
    return np.array([indicator.update(x) for x in xs])  # type: ignore[attr-defined]


def assert_same(
    inc: np.ndarray, vec: np.ndarray, ref: list[float], scale: float, atol_factor: float = 1e-9, rtol: float = RTOL
) -> None:
    ref_a = np.array(ref, dtype=float)
    assert np.array_equal(np.isnan(inc), np.isnan(ref_a)), "warm-up differs from the reference"
    assert np.array_equal(np.isnan(vec), np.isnan(ref_a)), "batch warm-up differs from the reference"
    atol = atol_factor * scale
    np.testing.assert_allclose(inc, ref_a, rtol=rtol, atol=atol, equal_nan=True)
    np.testing.assert_allclose(vec, ref_a, rtol=rtol, atol=atol, equal_nan=True)


windows = st.integers(1, 30)


@settings(max_examples=150, deadline=None)
@given(xs=prices(), n=windows)
def test_sma_incremental_equals_batch_and_definition(xs: list[float], n: int) -> None:
    assert_same(incremental(SMA(n), xs), batch.sma(np.array(xs), n), naive.sma(xs, n), max(xs))


@settings(max_examples=150, deadline=None)
@given(xs=prices(), n=windows)
def test_rolling_std_is_stable_and_exactly_zero_on_constant_windows(xs: list[float], n: int) -> None:
    stats = RollingStats(n)
    inc = incremental(stats, xs)
    _, vec = batch.rolling_mean_std(np.array(xs), n)
    assert_same(inc, vec, naive.std(xs, n), max(xs))
    for t in range(n - 1, len(xs)):
        if len(set(xs[t - n + 1 : t + 1])) == 1:
            assert inc[t] == 0.0 and vec[t] == 0.0


@settings(max_examples=150, deadline=None)
@given(xs=prices(), n=st.integers(2, 30))
def test_zscore_incremental_equals_batch_and_definition(xs: list[float], n: int) -> None:
    # (x - mean) / std amplifies the rounding of a running sum when the window barely moves against the price
    # level (Hypothesis found 3e-7 relative on a flat window at 10^4): equal to 1e-6 relative, as variance_ratio
    assert_same(incremental(ZScore(n), xs), batch.zscore(np.array(xs), n), naive.zscore(xs, n), 1.0, 1e-6, rtol=1e-6)


@settings(max_examples=100, deadline=None)
@given(xs=prices(), n=st.integers(2, 30))
def test_bollinger_bands_are_mean_plus_minus_k_std(xs: list[float], n: int) -> None:
    bb = Bollinger(n, 2.0)
    rows = []
    for x in xs:
        bb.update(x)
        rows.append((bb.middle, bb.upper, bb.lower))
    mid, up, lo, _ = batch.bollinger(np.array(xs), n, 2.0)
    ref_mid, ref_std = naive.sma(xs, n), naive.std(xs, n)
    ref_up = [m + 2 * s for m, s in zip(ref_mid, ref_std, strict=True)]
    ref_lo = [m - 2 * s for m, s in zip(ref_mid, ref_std, strict=True)]
    got = np.array(rows)
    assert_same(got[:, 0], mid, ref_mid, max(xs))
    assert_same(got[:, 1], up, ref_up, max(xs))
    assert_same(got[:, 2], lo, ref_lo, max(xs))


@settings(max_examples=150, deadline=None)
@given(xs=prices(), n=windows)
def test_ema_incremental_equals_batch_and_definition(xs: list[float], n: int) -> None:
    assert_same(incremental(EMA(n), xs), batch.ema(np.array(xs), n), naive.ema(xs, n), max(xs))


@settings(max_examples=150, deadline=None)
@given(xs=prices(), n=windows)
def test_rate_of_change_incremental_equals_batch_and_definition(xs: list[float], n: int) -> None:
    assert_same(incremental(ROC(n), xs), batch.roc(np.array(xs), n), naive.roc(xs, n), 1.0)


@settings(max_examples=150, deadline=None)
@given(xs=prices(), m=st.integers(1, 25), lam=st.floats(0.0, 0.99))
def test_ewma_volatility_incremental_equals_batch_and_definition(xs: list[float], m: int, lam: float) -> None:
    assert_same(
        incremental(EWMAVol(lam, m, 252.0), xs),
        batch.ewma_vol(np.array(xs), lam, m, 252.0),
        naive.ewma_vol(xs, lam, m, 252.0),
        1.0,
    )


@settings(max_examples=150, deadline=None)
@given(xs=prices(), n=windows)
def test_rsi_incremental_equals_batch_and_definition(xs: list[float], n: int) -> None:
    assert_same(incremental(RSI(n), xs), batch.rsi(np.array(xs), n), naive.rsi(xs, n), 100.0)


@settings(max_examples=120, deadline=None)
@given(xs=prices(min_size=1, max_size=90), n=st.integers(1, 20), data=st.data())
def test_adx_incremental_equals_batch_and_definition(xs: list[float], n: int, data: st.DataObject) -> None:
    spread = [data.draw(st.integers(0, 300)) / 100 for _ in xs]
    hi = [x + s for x, s in zip(xs, spread, strict=True)]
    lo = [max(0.01, x - s / 2) for x, s in zip(xs, spread, strict=True)]
    ind = ADX(n)
    inc = np.array([ind.update(h, low, c) for h, low, c in zip(hi, lo, xs, strict=True)])
    vec, _, _ = batch.adx(np.array(hi), np.array(lo), np.array(xs), n)
    assert_same(inc, vec, naive.adx(hi, lo, xs, n), 100.0, 1e-7)


@settings(max_examples=120, deadline=None)
@given(xs=prices(min_size=1, max_size=90), q=st.integers(2, 6), w=st.integers(2, 30))
def test_variance_ratio_incremental_equals_batch_and_definition(xs: list[float], q: int, w: int) -> None:
    inc = incremental(VarianceRatio(q, w), xs)
    # a ratio of two variances: when the 1-bar variance is nearly zero (a long constant run, then a jump)
    # the ratio reaches millions and inherits the variances' rounding relative to that size
    vr_ref = naive.variance_ratio(xs, q, w)
    # a ratio of two variances of running sums: relative 1e-7 on values near 10^8 (Hypothesis found 1.05e-7)
    assert_same(inc, batch.variance_ratio(np.array(xs), q, w), vr_ref, 1.0, 1e-6, rtol=1e-6)


def test_constant_prices_give_flat_indicators() -> None:
    xs = [42.5] * 60
    assert incremental(RollingStats(10), xs)[-1] == 0.0
    assert incremental(ZScore(10), xs)[-1] == 0.0
    assert incremental(RSI(14), xs)[-1] == 50.0
    assert incremental(EWMAVol(0.9, 5), xs)[-1] == 0.0
    assert incremental(VarianceRatio(2, 10), xs)[-1] == 1.0
    assert incremental(SMA(10), xs)[-1] == 42.5


def test_warm_up_edges_return_nan_until_exactly_ready() -> None:
    sma = SMA(5)
    values = [sma.update(float(x)) for x in range(1, 7)]
    assert all(math.isnan(v) for v in values[:4]) and values[4] == 3.0 and values[5] == 4.0
    r = RSI(3)
    assert [math.isnan(r.update(x)) for x in (1.0, 2.0, 3.0)] == [True, True, True]
    assert r.update(4.0) == 100.0 and r.ready


def test_long_series_do_not_drift_from_the_definition() -> None:
    rng = np.random.default_rng(3)
    xs = (1000 * np.exp(np.cumsum(rng.normal(0, 0.02, 200_000)))).round(2).tolist()
    s = RollingStats(50)
    inc = incremental(s, xs)
    np.testing.assert_allclose(inc[-100:], naive.std(xs[-149:], 50)[-100:], rtol=1e-9)


@pytest.mark.parametrize("n", [2, 7, 20, 120, 600])
def test_rolling_std_stays_on_the_definition_between_exact_recomputations(n: int) -> None:
    """Thousands of updates per window size: walks, 10x gaps, constant runs and one-cent wiggles, each bar
    checked against the two-pass batch twin, across many of the exact recomputations (every max(n, 512))."""
    rng = np.random.default_rng(n)
    xs: list[float] = []
    level = 50_000  # cents
    while len(xs) < 6_000:
        kind = rng.choice(["walk", "gap", "constant", "wiggle"])
        if kind == "gap":
            level = max(1, int(level * rng.choice([0.1, 0.5, 2.0, 10.0])))
        for _ in range(int(rng.integers(1, 400))):
            if kind == "walk":
                level = max(1, level + int(rng.integers(-level // 50 - 1, level // 50 + 2)))
            elif kind == "wiggle":
                level = max(1, level + int(rng.integers(-1, 2)))
            xs.append(level / 100)
    inc = incremental(RollingStats(n), xs)
    _, vec = batch.rolling_mean_std(np.array(xs), n)
    np.testing.assert_allclose(inc, vec, rtol=RTOL, atol=1e-12 * max(xs), equal_nan=True)
    for t in range(n - 1, len(xs)):
        if xs[t] == xs[t - n + 1] and len(set(xs[t - n + 1 : t + 1])) == 1:
            assert inc[t] == 0.0


def test_bad_windows_are_refused_with_a_clear_message() -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="window must be a positive integer"):
            SMA(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lag q must be at least 2"):
        VarianceRatio(1, 10)
