"""Numpy twins of the incremental indicators: same definitions, same warm-up, whole arrays at once."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from strategies.indicators.rolling import _check_window

F = np.ndarray


def _nan(n: int) -> F:
    return np.full(n, np.nan)


def _as_array(x: F) -> F:
    return np.ascontiguousarray(x, dtype=np.float64)


def linear_filter(x: F, alpha: float, start: int, seed: float, decay: float | None = None) -> F:
    """y[start] = seed, y[t] = decay · y[t-1] + alpha · x[t] after (decay = 1 - alpha unless given); NaN before.

    Solved in blocks with the closed form y[s+j] = b^j · (y[s] + alpha · Σ_{i<=j} b^-i · x[s+i]),
    b = 1 - alpha; the block length keeps b^-j far from overflow, so the error stays a few ulps per bar.
    """
    x = _as_array(x)
    y = _nan(len(x))
    if start >= len(x):
        return y
    y[start] = seed
    b = 1.0 - alpha if decay is None else decay
    if b <= 0.0:
        y[start + 1 :] = x[start + 1 :]
        return y
    if b < 1e-100:  # b^-1 would overflow the closed form; such a fast decay is cheap to run directly
        prev = seed
        for t in range(start + 1, len(x)):
            prev = b * prev + alpha * x[t]
            y[t] = prev
        return y
    block = max(1, min(4096, int(300.0 / -np.log(b)) if b < 1.0 else 4096))
    powers = b ** -np.arange(1, block + 1, dtype=np.float64)
    s = start
    while s + 1 < len(x):
        m = min(block, len(x) - 1 - s)
        acc = np.cumsum(powers[:m] * x[s + 1 : s + 1 + m])
        y[s + 1 : s + 1 + m] = (y[s] + alpha * acc) / powers[:m]
        s += m
    return y


def sma(x: F, n: int) -> F:
    x = _as_array(x)
    _check_window(n)
    out = _nan(len(x))
    if len(x) >= n:
        out[n - 1 :] = sliding_window_view(x, n).mean(axis=1)
    return out


def rolling_mean_std(x: F, n: int) -> tuple[F, F]:
    x = _as_array(x)
    _check_window(n)
    mean, std = _nan(len(x)), _nan(len(x))
    if len(x) >= n:
        w = sliding_window_view(x, n)
        m = w.mean(axis=1)
        s = np.sqrt(np.maximum(((w - m[:, None]) ** 2).mean(axis=1), 0.0))
        const = w.max(axis=1) == w.min(axis=1)
        m[const] = x[n - 1 :][const]
        s[const] = 0.0
        mean[n - 1 :], std[n - 1 :] = m, s
    return mean, std


def zscore(x: F, n: int) -> F:
    x = _as_array(x)
    mean, std = rolling_mean_std(x, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(std > 0.0, (x - mean) / std, np.where(std == 0.0, 0.0, np.nan))
    return z


def bollinger(x: F, n: int = 20, k: float = 2.0) -> tuple[F, F, F, F]:
    """(middle, upper, lower, percent_b)."""
    x = _as_array(x)
    mean, std = rolling_mean_std(x, n)
    upper, lower = mean + k * std, mean - k * std
    width = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        pb = np.where(width > 0.0, (x - lower) / width, np.where(np.isnan(width), np.nan, 0.5))
    return mean, upper, lower, pb


def ema(x: F, n: int) -> F:
    x = _as_array(x)
    _check_window(n)
    if len(x) < n:
        return _nan(len(x))
    return linear_filter(x, 2.0 / (n + 1), n - 1, float(np.sum(x[:n])) / n)


def roc(x: F, n: int) -> F:
    x = _as_array(x)
    _check_window(n)
    out = _nan(len(x))
    if len(x) > n:
        out[n:] = x[n:] / x[:-n] - 1.0
    return out


def log_returns(x: F) -> F:
    """r[t] = ln(x[t] / x[t-1]); r[0] = NaN."""
    x = _as_array(x)
    out = _nan(len(x))
    out[1:] = np.log(x[1:] / x[:-1])
    return out


def ewma_vol(x: F, lam: float = 60 / 61, min_periods: int = 20, periods_per_year: float = 252.0) -> F:
    x = _as_array(x)
    _check_window(min_periods)
    r2 = log_returns(x) ** 2
    if len(x) <= min_periods:
        return _nan(len(x))
    seed = float(np.sum(r2[1 : min_periods + 1])) / min_periods
    var = linear_filter(r2, 1.0 - lam, min_periods, seed, decay=lam)
    return np.sqrt(var * periods_per_year)


def _wilder(y: F, n: int, first: int) -> F:
    """Wilder average of y whose first valid value is at index `first`; seed = mean of y[first-n+1 .. first]."""
    if len(y) <= first:
        return _nan(len(y))
    return linear_filter(y, 1.0 / n, first, float(np.sum(y[first - n + 1 : first + 1])) / n)


def rsi(x: F, n: int = 14) -> F:
    x = _as_array(x)
    _check_window(n)
    d = np.diff(x, prepend=np.nan)
    gain = np.where(d > 0.0, d, 0.0)
    loss = np.where(d < 0.0, -d, 0.0)
    g, lo = _wilder(gain, n, n), _wilder(loss, n, n)
    total = g + lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0.0, 100.0 * g / total, np.where(np.isnan(total), np.nan, 50.0))


def adx(high: F, low: F, close: F, n: int = 14) -> tuple[F, F, F]:
    """(adx, plus_di, minus_di)."""
    high, low, close = _as_array(high), _as_array(low), _as_array(close)
    _check_window(n)
    size = len(close)
    up = np.diff(high, prepend=np.nan)
    down = -np.diff(low, prepend=np.nan)
    pdm = np.where((up > down) & (up > 0.0), up, 0.0)
    mdm = np.where((down > up) & (down > 0.0), down, 0.0)
    pc = np.concatenate(([np.nan], close[:-1]))
    tr = np.maximum(high - low, np.maximum(np.abs(high - pc), np.abs(low - pc)))
    tr[0] = 0.0
    atr, ap, am = _wilder(tr, n, n), _wilder(pdm, n, n), _wilder(mdm, n, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        pdi = np.where(atr > 0.0, 100.0 * ap / atr, np.where(np.isnan(atr), np.nan, 0.0))
        mdi = np.where(atr > 0.0, 100.0 * am / atr, np.where(np.isnan(atr), np.nan, 0.0))
        s = pdi + mdi
        dx = np.where(s > 0.0, 100.0 * np.abs(pdi - mdi) / s, np.where(np.isnan(s), np.nan, 0.0))
    out = _wilder(dx, n, 2 * n - 1) if size >= 2 * n else _nan(size)
    return out, pdi, mdi


def variance_ratio(x: F, q: int = 5, window: int = 120) -> F:
    x = _as_array(x)
    _check_window(window)
    if q < 2:
        raise ValueError(f"variance-ratio lag q must be at least 2, got {q!r}")
    out = _nan(len(x))
    if len(x) < q + window:
        return out
    lx = np.log(x)
    r1 = _nan(len(x))
    r1[1:] = lx[1:] - lx[:-1]
    rq = _nan(len(x))
    rq[q:] = lx[q:] - lx[:-q]
    _, s1 = rolling_mean_std(r1[1:], window)
    _, sq = rolling_mean_std(rq[q:], window)
    s1 = s1[q - 1 :]  # align: both end at the same bar
    with np.errstate(invalid="ignore", divide="ignore"):
        vr = np.where(s1 > 0.0, sq * sq / (q * s1 * s1), 1.0)
    vr[np.isnan(sq)] = np.nan
    out[q:] = vr
    return out
