"""Exponential smoothing: EMA (span `n`, seeded with the SMA of the first `n` values)."""

from __future__ import annotations

import math

from strategies.indicators.rolling import _check_window

NAN = math.nan


class EMA:
    __slots__ = ("n", "alpha", "_count", "_seed_sum", "value")

    def __init__(self, n: int) -> None:
        self.n = _check_window(n)
        self.alpha = 2.0 / (n + 1)
        self._count = 0
        self._seed_sum = 0.0
        self.value = NAN

    @property
    def ready(self) -> bool:
        return self._count >= self.n

    def update(self, x: float) -> float:
        self._count += 1
        if self._count > self.n:
            self.value += self.alpha * (x - self.value)
        else:
            self._seed_sum += x
            if self._count == self.n:
                self.value = self._seed_sum / self.n
        return self.value
