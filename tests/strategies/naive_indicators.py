"""Naive reference indicators: each value recomputed from its definition with plain Python, no state."""

from __future__ import annotations

import math
import statistics

NAN = math.nan


def sma(x: list[float], n: int) -> list[float]:
    return [math.fsum(x[t - n + 1 : t + 1]) / n if t >= n - 1 else NAN for t in range(len(x))]


def std(x: list[float], n: int) -> list[float]:
    return [statistics.pstdev(x[t - n + 1 : t + 1]) if t >= n - 1 else NAN for t in range(len(x))]


def zscore(x: list[float], n: int) -> list[float]:
    out = []
    for t in range(len(x)):
        if t < n - 1:
            out.append(NAN)
            continue
        w = x[t - n + 1 : t + 1]
        s = statistics.pstdev(w)
        out.append(0.0 if max(w) == min(w) else (x[t] - statistics.fmean(w)) / s)
    return out


def ema(x: list[float], n: int) -> list[float]:
    a = 2 / (n + 1)
    out, y = [], NAN
    for t, v in enumerate(x):
        if t == n - 1:
            y = math.fsum(x[:n]) / n
        elif t >= n:
            y = a * v + (1 - a) * y
        out.append(y)
    return out


def roc(x: list[float], n: int) -> list[float]:
    return [x[t] / x[t - n] - 1 if t >= n else NAN for t in range(len(x))]


def ewma_vol(x: list[float], lam: float, m: int, ppy: float) -> list[float]:
    out, var = [NAN], NAN
    r2 = [math.log(x[t] / x[t - 1]) ** 2 for t in range(1, len(x))]
    for k, v in enumerate(r2, start=1):
        if k == m:
            var = math.fsum(r2[:m]) / m
        elif k > m:
            var = lam * var + (1 - lam) * v
        out.append(math.sqrt(var * ppy) if k >= m else NAN)
    return out[: len(x)]


def _wilder(y: list[float], n: int, first: int) -> list[float]:
    out, avg = [], NAN
    for t, v in enumerate(y):
        if t == first:
            avg = math.fsum(y[first - n + 1 : first + 1]) / n
        elif t > first:
            avg = avg + (v - avg) / n
        out.append(avg)
    return out


def rsi(x: list[float], n: int) -> list[float]:
    d = [0.0] + [x[t] - x[t - 1] for t in range(1, len(x))]
    g = _wilder([max(v, 0.0) for v in d], n, n)
    lo = _wilder([max(-v, 0.0) for v in d], n, n)
    return [NAN if math.isnan(a) else (100 * a / (a + b) if a + b > 0 else 50.0) for a, b in zip(g, lo, strict=True)]


def adx(h: list[float], lo: list[float], c: list[float], n: int) -> list[float]:
    tr, pdm, mdm = [0.0], [0.0], [0.0]
    for t in range(1, len(c)):
        up, down = h[t] - h[t - 1], lo[t - 1] - lo[t]
        pdm.append(up if up > down and up > 0 else 0.0)
        mdm.append(down if down > up and down > 0 else 0.0)
        tr.append(max(h[t] - lo[t], abs(h[t] - c[t - 1]), abs(lo[t] - c[t - 1])))
    atr, ap, am = _wilder(tr, n, n), _wilder(pdm, n, n), _wilder(mdm, n, n)
    dx = []
    for a, p, m in zip(atr, ap, am, strict=True):
        if math.isnan(a):
            dx.append(NAN)
            continue
        pdi, mdi = (100 * p / a, 100 * m / a) if a > 0 else (0.0, 0.0)
        dx.append(100 * abs(pdi - mdi) / (pdi + mdi) if pdi + mdi > 0 else 0.0)
    return _wilder(dx, n, 2 * n - 1) if len(c) >= 2 * n else [NAN] * len(c)


def variance_ratio(x: list[float], q: int, w: int) -> list[float]:
    out = []
    for t in range(len(x)):
        if t < q + w - 1:
            out.append(NAN)
            continue
        r1 = [math.log(x[k]) - math.log(x[k - 1]) for k in range(t - w + 1, t + 1)]
        rq = [math.log(x[k]) - math.log(x[k - q]) for k in range(t - w + 1, t + 1)]
        v1 = 0.0 if max(r1) == min(r1) else statistics.pvariance(r1)
        vq = 0.0 if max(rq) == min(rq) else statistics.pvariance(rq)
        out.append(vq / (q * v1) if v1 > 0 else 1.0)
    return out
