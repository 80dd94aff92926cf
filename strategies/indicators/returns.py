"""Return-based indicators: rate of change and EWMA volatility of log returns."""

from __future__ import annotations

import math
from collections import deque

from strategies.indicators.rolling import _check_window

NAN = math.nan


class ROC:
    """Rate of change over `n` bars: x_t / x_{t-n} - 1."""

    __slots__ = ("n", "_buf", "value")

    def __init__(self, n: int) -> None:
        self.n = _check_window(n)
        self._buf: deque[float] = deque(maxlen=n + 1)
        self.value = NAN

    @property
    def ready(self) -> bool:
        return len(self._buf) > self.n

    def update(self, x: float) -> float:
        buf = self._buf
        buf.append(x)
        if len(buf) > self.n:
            self.value = x / buf[0] - 1.0
        return self.value


class EWMAVol:
    """Annualized EWMA volatility of log returns (RiskMetrics / Moskowitz–Ooi–Pedersen style).

    variance_t = lam · variance_{t-1} + (1 - lam) · r_t², seeded with the mean of the first `min_periods`
    squared log returns; the value is sqrt(variance · periods_per_year), ready after `min_periods` returns.
    MOP use a centre of mass of 60 days: lam = 60 / 61.
    """

    __slots__ = ("lam", "_gain", "min_periods", "periods_per_year", "_prev", "_count", "_seed", "variance", "value")

    def __init__(self, lam: float = 60 / 61, min_periods: int = 20, periods_per_year: float = 252.0) -> None:
        if not 0.0 <= lam < 1.0:
            raise ValueError(f"lam must be in [0, 1), got {lam!r}")
        self.lam = lam
        self._gain = 1.0 - lam
        self.min_periods = _check_window(min_periods)
        self.periods_per_year = periods_per_year
        self._prev = NAN
        self._count = 0
        self._seed = 0.0
        self.variance = NAN
        self.value = NAN

    @property
    def ready(self) -> bool:
        return self._count >= self.min_periods

    def update(self, x: float) -> float:
        prev = self._prev
        self._prev = x
        if prev != prev:
            return self.value
        r = math.log(x / prev)
        self._count += 1
        if self._count > self.min_periods:
            self.variance = self.lam * self.variance + self._gain * r * r
        else:
            self._seed += r * r
            if self._count < self.min_periods:
                return self.value
            self.variance = self._seed / self.min_periods
        self.value = math.sqrt(self.variance * self.periods_per_year)
        return self.value
