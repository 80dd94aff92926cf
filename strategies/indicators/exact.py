"""Exact replays: what the incremental indicators return bar by bar, to the last bit, computed over whole arrays.

Unlike the numpy twins of `batch` (same definitions, other rounding), these repeat the incremental classes'
arithmetic in the same order: elementwise steps as numpy ufuncs (IEEE operations round the same way), running
sums as `np.add.accumulate` (a left-to-right loop, the same roundings as `s += d`), logarithms with `math.log`
itself, and the few recurrences no ufunc repeats exactly (the EWMA) as plain loops. RollingStats' exact
recomputations (every max(n, 512) values, after a cancellation, on a narrow window) cut its running sums into
segments at the same values. tests/strategies compare each with its class on series that hit every branch.
"""

from __future__ import annotations

import math

import numpy as np

from strategies.indicators.rolling import REFRESH_EVERY

F = np.ndarray
NAN = math.nan


def logs(x: F) -> F:
    """math.log of each value (numpy's log may round differently)."""
    return np.fromiter(map(math.log, x.tolist()), dtype=np.float64, count=len(x))


def roc(x: F, n: int) -> F:
    """ROC(n).update."""
    out = np.full(len(x), NAN)
    if len(x) > n:
        out[n:] = x[n:] / x[:-n] - 1.0
    return out


def ewma_vol(x: F, lam: float, min_periods: int, periods_per_year: float) -> F:
    """EWMAVol(lam, min_periods, periods_per_year).update."""
    out = np.full(len(x), NAN)
    if len(x) <= min_periods:
        return out
    lr = logs(x[1:] / x[:-1])
    seed = 0.0
    for r in lr[:min_periods].tolist():
        seed += r * r
    variance = seed / min_periods
    var = [variance]
    append = var.append
    rest = lr[min_periods:]
    for g in ((1.0 - lam) * rest * rest).tolist():  # gain · r · r, rounded as the class rounds it
        variance = lam * variance + g
        append(variance)
    out[min_periods:] = np.sqrt(np.array(var) * periods_per_year)
    return out


def _refresh(window: list[float]) -> tuple[float, float]:
    m = math.fsum(window) / len(window)
    return m, math.fsum([(v - m) * (v - m) for v in window])


def rolling_stats(x: F, n: int) -> tuple[F, F]:
    """(mean, std) after each value of RollingStats(n).update: NaN until n values."""
    size = len(x)
    mean, std = np.full(size, NAN), np.full(size, NAN)
    if size < n:
        return mean, std
    every, narrow = max(n, REFRESH_EVERY), 1e-7 * n
    ms, m2s = np.empty(size), np.empty(size)
    t = n - 1
    m, m2 = _refresh(x[:n].tolist())  # the window is full: mean and M2 exactly
    ms[t], m2s[t], since = m, m2, 0
    s = t + 1
    while s < size:
        e = min(size, s + every - since)
        new, old = x[s:e], x[s - n : e - n]
        dx = new - old
        cand = np.add.accumulate(np.concatenate(([m], dx / n)))
        m_new, m_old = cand[1:], cand[:-1]
        cand2 = np.add.accumulate(np.concatenate(([m2], dx * (new - m_new + old - m_old))))[1:]
        a = old - m_old
        redo = (cand2 < 1e-9 * a * a) | (cand2 < narrow * m_new * m_new)
        if e - s == every - since:
            redo[-1] = True  # `since` reaches `every`
        k = int(np.argmax(redo)) if redo.any() else e - s
        ms[s : s + k], m2s[s : s + k] = m_new[:k], cand2[:k]
        if k < e - s:
            t = s + k
            m, m2 = _refresh(x[t - n + 1 : t + 1].tolist())
            ms[t], m2s[t], since = m, m2, 0
            s = t + 1
        else:
            m, m2, since = m_new[-1], cand2[-1], since + k
            s = e
    ms, m2s = ms[n - 1 :], m2s[n - 1 :]
    with np.errstate(invalid="ignore"):
        sd = np.where(m2s > 0.0, np.sqrt(np.maximum(m2s, 0.0) / n), 0.0)
    # a run of n equal values: the mean is that value and the std exactly 0
    same = np.zeros(size, dtype=bool)
    same[1:] = x[1:] == x[:-1]
    idx = np.arange(size)
    run = idx - np.maximum.accumulate(np.where(same, 0, idx)) + 1
    const = (run >= n)[n - 1 :]
    mean[n - 1 :] = np.where(const, x[n - 1 :], ms)
    std[n - 1 :] = np.where(const, 0.0, sd)
    return mean, std


def zscore(x: F, n: int) -> F:
    """ZScore(n).update."""
    mean, std = rolling_stats(x, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(std > 0.0, (x - mean) / std, np.where(std == 0.0, 0.0, NAN))


def variance_ratio(x: F, q: int, window: int) -> F:
    """VarianceRatio(q, window).update."""
    out = np.full(len(x), NAN)
    if len(x) < q + window:
        return out
    lx = logs(x)
    _, s1 = rolling_stats(lx[1:] - lx[:-1], window)  # value t-1 is bar t's
    _, sq = rolling_stats(lx[q:] - lx[:-q], window)  # value t-q is bar t's
    a, b = s1[q - 1 :], sq
    with np.errstate(invalid="ignore", divide="ignore"):
        vr = np.where(a > 0.0, (b * b) / (q * a * a), 1.0)
    vr[np.isnan(b)] = NAN
    out[q:] = vr
    return out
