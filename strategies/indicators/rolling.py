"""Rolling-window indicators: SMA, mean and standard deviation, z-score, Bollinger bands.

Numerical stability: the running sum (SMA) and the Welford add/remove update (mean, M2) drift by a few
ulps per bar. The SMA's sum is recomputed exactly from the window (math.fsum) every `n` bars; mean and M2
every max(n, 512) bars, so their drift is bounded by at most 512 updates (a std off by ~1e-10 of itself
at worst, see below) and the O(n) recomputation costs O(1) amortized: at n = 20 and 120 it was a tenth of
a rolling update. M2 is also recomputed at once when a value far from the mean leaves the window (a price
gap rolling out), where the update cancels, and when the window's spread is below ~3e-4 of its mean,
where the update's rounding (~ eps · mean · spread per update) would show in the std.
A run of `n` equal values is tracked, so a constant window gives std exactly 0 (and a z-score of 0).
"""

from __future__ import annotations

import math
from collections import deque

NAN = math.nan
REFRESH_EVERY = 512  # RollingStats recomputes its mean and M2 exactly at least this often


def _check_window(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"window must be a positive integer, got {n!r}")
    return n


class SMA:
    __slots__ = ("n", "_buf", "_sum", "_since", "value")

    def __init__(self, n: int) -> None:
        self.n = _check_window(n)
        self._buf: deque[float] = deque(maxlen=n)
        self._sum = 0.0
        self._since = 0
        self.value = NAN

    @property
    def ready(self) -> bool:
        return len(self._buf) == self.n

    def update(self, x: float) -> float:
        buf = self._buf
        if len(buf) == self.n:
            self._sum += x - buf[0]
        else:
            self._sum += x
        buf.append(x)
        self._since += 1
        if self._since >= self.n:
            self._since = 0
            self._sum = math.fsum(buf)
        if len(buf) == self.n:
            self.value = self._sum / self.n
        return self.value


class RollingStats:
    """Mean and population standard deviation over the last `n` values."""

    __slots__ = ("n", "_buf", "_full", "_mean", "_m2", "_since", "_every", "_run", "_last", "_narrow", "mean", "std")

    def __init__(self, n: int) -> None:
        self.n = _check_window(n)
        self._buf: deque[float] = deque(maxlen=n)
        self._full = False
        self._mean = 0.0
        self._m2 = 0.0
        self._since = 0
        self._every = max(n, REFRESH_EVERY)
        self._run = 0
        self._last = NAN
        self._narrow = 1e-7 * n  # M2 below narrow · mean² is recomputed (see the module docstring)
        self.mean = NAN
        self.std = NAN

    @property
    def ready(self) -> bool:
        return self._full

    def update(self, x: float) -> float:
        """Returns the standard deviation (NaN until `n` values); `mean` is set alongside."""
        if x == self._last:
            run = self._run = self._run + 1
        else:
            run = self._run = 1
            self._last = x
        buf = self._buf
        n = self.n
        if self._full:
            old = buf[0]
            buf.append(x)
            m_old = self._mean
            dx = x - old
            m = m_old + dx / n
            m2 = self._m2 + dx * (x - m + old - m_old)
            since = self._since + 1
            # every max(n, 512) bars, when a far value left the window (M2 lost its digits), and when the window
            # is so narrow that the update's rounding is no longer tiny next to M2: recompute
            if since >= self._every or m2 < 1e-9 * (old - m_old) * (old - m_old) or m2 < self._narrow * m * m:
                m, m2 = self._refresh(buf)
            else:
                self._since = since
                self._mean = m
                self._m2 = m2
        elif self._fill(x):
            m, m2 = self._mean, self._m2
        else:
            return self.std
        if run >= n:
            self.mean = x
            self.std = 0.0
            return 0.0
        self.mean = m
        std = self.std = math.sqrt(m2 / n) if m2 > 0.0 else 0.0
        return std

    def _fill(self, x: float) -> bool:
        """Warm-up: add `x`; True once the window is full (then mean and M2 are exact)."""
        buf = self._buf
        d = x - self._mean
        self._mean += d / (len(buf) + 1)
        self._m2 += d * (x - self._mean)
        buf.append(x)
        self._since += 1
        if len(buf) < self.n:
            return False
        self._full = True
        self._refresh(buf)
        return True

    def _refresh(self, buf: deque[float]) -> tuple[float, float]:
        self._since = 0
        m = math.fsum(buf) / len(buf)
        m2 = math.fsum([(v - m) * (v - m) for v in buf])
        self._mean, self._m2 = m, m2
        return m, m2


class ZScore:
    """(x - rolling mean) / rolling std over `n` values; 0 when the window is constant."""

    __slots__ = ("stats", "value")

    def __init__(self, n: int) -> None:
        self.stats = RollingStats(n)
        self.value = NAN

    @property
    def ready(self) -> bool:
        return self.stats.ready

    def update(self, x: float) -> float:
        s = self.stats
        std = s.update(x)
        if std > 0.0:
            self.value = (x - s.mean) / std
        elif std == 0.0:
            self.value = 0.0
        return self.value


class Bollinger:
    """Middle band = rolling mean, upper/lower = mean ± k·std; `percent_b` = where x sits (0 lower, 1 upper)."""

    __slots__ = ("k", "stats", "middle", "upper", "lower", "percent_b")

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        if not k > 0:
            raise ValueError(f"band width k must be positive, got {k!r}")
        self.k = k
        self.stats = RollingStats(n)
        self.middle = self.upper = self.lower = self.percent_b = NAN

    @property
    def ready(self) -> bool:
        return self.stats.ready

    def update(self, x: float) -> float:
        s = self.stats
        std = s.update(x)
        if std == std:
            self.middle = s.mean
            self.upper = s.mean + self.k * std
            self.lower = s.mean - self.k * std
            width = self.upper - self.lower
            self.percent_b = (x - self.lower) / width if width > 0.0 else 0.5
        return self.middle
