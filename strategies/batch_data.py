"""Batch inputs for the vectorized strategy twins, memoizing each indicator by its parameters.

A parameter sweep asks for the same indicator (say a 20-bar z-score) for many parameter sets; it is
computed once here and shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from strategies.indicators import batch


class BatchData:
    def __init__(self, open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> None:
        self.open = np.ascontiguousarray(open, dtype=np.float64)
        self.high = np.ascontiguousarray(high, dtype=np.float64)
        self.low = np.ascontiguousarray(low, dtype=np.float64)
        self.close = np.ascontiguousarray(close, dtype=np.float64)
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.close)

    def _memo(self, key: tuple[Any, ...], compute: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def sma(self, n: int) -> np.ndarray:
        return self._memo(("sma", n), lambda: batch.sma(self.close, n))

    def zscore(self, n: int) -> np.ndarray:
        return self._memo(("zscore", n), lambda: batch.zscore(self.close, n))

    def rsi(self, n: int) -> np.ndarray:
        return self._memo(("rsi", n), lambda: batch.rsi(self.close, n))

    def roc(self, n: int) -> np.ndarray:
        return self._memo(("roc", n), lambda: batch.roc(self.close, n))

    def ewma_vol(self, lam: float, min_periods: int, periods_per_year: float) -> np.ndarray:
        key = ("ewma_vol", lam, min_periods, periods_per_year)
        return self._memo(key, lambda: batch.ewma_vol(self.close, lam, min_periods, periods_per_year))

    def variance_ratio(self, q: int, window: int) -> np.ndarray:
        return self._memo(("vr", q, window), lambda: batch.variance_ratio(self.close, q, window))


def forward_fill(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each position takes the value at the latest valid position at or before it (index 0 must be valid)."""
    idx = np.where(valid, np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    return values[idx]


def last_index(mask: np.ndarray) -> np.ndarray:
    """For each position, the latest index at or before it where `mask` holds (-1 if none)."""
    idx = np.where(mask, np.arange(len(mask)), -1)
    return np.maximum.accumulate(idx)
