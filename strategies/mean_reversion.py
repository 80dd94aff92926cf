"""Mean reversion on the z-score of the close against its rolling mean (Bollinger-style).

Each bar, in this order (defaults after Avellaneda & Lee 2010: enter at |z| ≥ 1.25, exit at |z| ≤ 0.5):
- z ≤ -entry_z (and RSI ≤ rsi_oversold when `rsi_confirm`) -> long `size`;
- z ≥ +entry_z (and RSI ≥ rsi_overbought when `rsi_confirm`, never with `long_only`) -> short `size`;
- a long closes once z ≥ -exit_z, a short once z ≤ +exit_z (reverted into the exit band, or past it);
- otherwise the target is kept.
z is 0 over a constant window. confidence: positioned, min(1, |z| / (2·entry_z)); flat, max(0, 1 - |z| / entry_z).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from strategies.base import Strategy, StrategyState, clean
from strategies.batch_data import BatchData, last_index
from strategies.indicators import RSI, ZScore, exact


class MeanReversionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(20, ge=2, le=10_000, description="bars of the rolling mean and standard deviation")
    entry_z: float = Field(1.25, gt=0, le=20, description="open when |z| reaches this")
    exit_z: float = Field(0.5, ge=0, le=20, description="close when z is back inside ±exit_z")
    size: float = Field(1.0, gt=0, le=5, description="|target| while positioned, fraction of equity")
    long_only: bool = Field(False, description="never short")
    rsi_confirm: bool = Field(False, description="also require RSI beyond the oversold/overbought level to enter")
    rsi_period: int = Field(14, ge=1, le=10_000)
    rsi_oversold: float = Field(30.0, ge=0, le=100)
    rsi_overbought: float = Field(70.0, ge=0, le=100)

    @model_validator(mode="after")
    def _thresholds(self) -> MeanReversionParams:
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z ({self.exit_z}) must be smaller than entry_z ({self.entry_z})")
        if self.rsi_oversold >= self.rsi_overbought:
            raise ValueError("rsi_oversold must be below rsi_overbought")
        return self


class MeanReversionState(StrategyState):
    strategy_name = "mean_reversion"

    def __init__(self, symbol: str, p: MeanReversionParams, warmup: int) -> None:
        super().__init__(symbol, warmup)
        self.p = p
        self._z = ZScore(p.window)
        self._rsi = RSI(p.rsi_period) if p.rsi_confirm else None
        self._entry, self._exit, self._size = p.entry_z, p.exit_z, p.size
        self._short = not p.long_only

    def update(self, open: float, high: float, low: float, close: float) -> float:
        self.bars += 1
        pos = self.previous_target = self.target
        z = self._z.update(close)
        rsi = self._rsi
        if rsi is not None:
            rsi.update(close)
        if self.bars < self.warmup:
            return pos
        entry = self._entry
        if z <= -entry and (rsi is None or rsi.value <= self.p.rsi_oversold):
            self.target = self._size
        elif z >= entry and self._short and (rsi is None or rsi.value >= self.p.rsi_overbought):
            self.target = -self._size
        elif (pos > 0.0 and z >= -self._exit) or (pos < 0.0 and z <= self._exit):
            self.target = 0.0
        return self.target

    def _steady(self) -> bool:
        return self.bars >= self.warmup and self._z.stats.ready

    def _scan_steady(self, closes: Sequence[float], start: int, end: int, last: float) -> tuple[int, float]:
        """`update` fused with its z-score's rolling statistics (their arithmetic, in the same order)."""
        zs = self._z
        st = zs.stats
        buf = st._buf
        append, refresh, sqrt = buf.append, st._refresh, math.sqrt
        n, every, narrow = st.n, st._every, st._narrow
        m_, m2_, since, run, seen, mean, std = st._mean, st._m2, st._since, st._run, st._last, st.mean, st.std
        z = zs.value
        rsi = self._rsi
        rsi_update = rsi.update if rsi is not None else None
        oversold, overbought = self.p.rsi_oversold, self.p.rsi_overbought
        entry, exit_, size, short = self._entry, self._exit, self._size, self._short
        target, pos = self.target, self.previous_target
        i = start
        while i < end:
            x = closes[i]
            i += 1
            pos = target
            # RollingStats.update on a full window
            if x == seen:
                run += 1
            else:
                run = 1
                seen = x
            old = buf[0]
            append(x)
            dx = x - old
            m = m_ + dx / n
            m2 = m2_ + dx * (x - m + old - m_)
            since += 1
            if since >= every or m2 < 1e-9 * (old - m_) * (old - m_) or m2 < narrow * m * m:
                m, m2 = refresh(buf)
                since = 0
            m_, m2_ = m, m2
            if run >= n:
                mean, std = x, 0.0
            else:
                mean = m
                std = sqrt(m2 / n) if m2 > 0.0 else 0.0
            z = (x - mean) / std if std > 0.0 else 0.0
            if rsi_update is not None:
                rsi_update(x)
            if z <= -entry and (rsi is None or rsi.value <= oversold):
                target = size
            elif z >= entry and short and (rsi is None or rsi.value >= overbought):
                target = -size
            elif (pos > 0.0 and z >= -exit_) or (pos < 0.0 and z <= exit_):
                target = 0.0
            if target != last:
                break
        self.bars += i - start
        st._mean, st._m2, st._since, st._run, st._last, st.mean, st.std = m_, m2_, since, run, seen, mean, std
        zs.value = z
        self.target, self.previous_target = target, pos
        return (i - 1, target) if target != last else (end, last)

    def confidence(self) -> float:
        z = abs(self._z.value)
        if self.target != 0.0:
            return min(1.0, z / (2.0 * self._entry))
        return max(0.0, 1.0 - z / self._entry)

    def rationale(self) -> dict[str, Any]:
        s = self._z.stats
        out: dict[str, Any] = {
            "zscore": clean(self._z.value, 4),
            "rolling_mean": clean(s.mean),
            "rolling_std": clean(s.std),
            "window": self.p.window,
            "entry_z": self._entry,
            "exit_z": self._exit,
            "target": self.target,
        }
        if self._rsi is not None:
            out["rsi"] = clean(self._rsi.value, 2)
        return out

    def summary(self) -> str:
        z = self._z.value
        rsi = f", RSI {self._rsi.value:.1f}" if self._rsi is not None else ""
        return f"z-score {z:+.2f} vs the {self.p.window}-bar mean{rsi} -> target {self.target:+.1%} of equity"


class MeanReversion(Strategy):
    name = "mean_reversion"
    params_model = MeanReversionParams
    params: MeanReversionParams

    @property
    def warmup(self) -> int:
        p = self.params
        return max(p.window, p.rsi_period + 1) if p.rsi_confirm else p.window

    def new_state(self, symbol: str) -> StrategyState:
        return MeanReversionState(symbol, self.params, self.warmup)

    def targets(self, data: BatchData) -> np.ndarray:
        p = self.params
        return self._targets(data.zscore(p.window), data.rsi(p.rsi_period) if p.rsi_confirm else None)

    def exact_targets(self, closes: np.ndarray) -> np.ndarray | None:
        if self.params.rsi_confirm:
            return None
        return self._targets(exact.zscore(closes, self.params.window), None)

    def _targets(self, z: np.ndarray, rsi: np.ndarray | None) -> np.ndarray:
        p = self.params
        n = len(z)
        warm = np.zeros(n, dtype=bool)
        warm[: min(self.warmup - 1, n)] = True
        enter_long = (z <= -p.entry_z) & ~warm
        enter_short = (z >= p.entry_z) & ~warm & (not p.long_only)
        if rsi is not None:
            enter_long &= rsi <= p.rsi_oversold
            enter_short &= rsi >= p.rsi_overbought
        exit_long = warm | (z >= -p.exit_z) | enter_short
        exit_short = warm | (z <= p.exit_z) | enter_long
        long = last_index(enter_long) > last_index(exit_long)
        short = last_index(enter_short) > last_index(exit_short)
        return np.where(long, p.size, np.where(short, -p.size, 0.0))
