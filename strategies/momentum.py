"""Momentum, two variants.

`roc` — time-series momentum after Moskowitz, Ooi & Pedersen (2012): the sign of the `lookback`-bar
return picks the direction; the size is `vol_target` / EWMA volatility (annualized, centre of mass
`vol_com` bars), capped at `max_leverage` and rounded down to a multiple of `target_step` (so the position
is not resized on every tick of the volatility estimate).
    target = sign(roc) · floor(min(max_leverage, vol_target / vol) / target_step) · target_step
    confidence = min(1, |t| / 2), t = ln(1 + roc) / (vol / sqrt(periods_per_year) · sqrt(lookback)):
    the lookback return in units of its own standard deviation; |t| ≥ 2 is full confidence.

`ma_cross` — after warm-up the target is +max_leverage while the fast SMA is above the slow one and
-max_leverage (0 with `long_only`) while it is below, so it changes exactly when they cross; a tie
(|fast - slow| ≤ 1e-9·slow) keeps the previous target.
    confidence = min(1, |fast / slow - 1| / confidence_gap).

`long_only` turns every short target into 0 in both variants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from strategies.base import Strategy, StrategyState, clean
from strategies.batch_data import BatchData, forward_fill
from strategies.indicators import ROC, SMA, EWMAVol, exact

TIE = 1e-9
STEP_EPS = 1e-9


class MomentumParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: Literal["roc", "ma_cross"] = Field("roc", description="roc: time-series momentum; ma_cross: SMA cross")
    lookback: int = Field(252, ge=1, le=10_000, description="roc: bars of the lookback return (252 ≈ 12 months)")
    vol_target: float = Field(0.15, gt=0, le=5, description="roc: annualized volatility the position aims for")
    vol_com: float = Field(60.0, ge=0, le=10_000, description="roc: EWMA centre of mass in bars (lam = com/(1+com))")
    vol_min_periods: int = Field(20, ge=1, le=10_000, description="roc: returns before the volatility is trusted")
    target_step: float = Field(0.25, gt=0, le=5, description="roc: target is rounded down to a multiple of this")
    max_leverage: float = Field(1.0, gt=0, le=5, description="largest |target|; ma_cross's position size")
    fast: int = Field(20, ge=1, le=10_000, description="ma_cross: fast SMA bars")
    slow: int = Field(50, ge=2, le=10_000, description="ma_cross: slow SMA bars")
    long_only: bool = Field(False, description="go flat instead of short")
    confidence_gap: float = Field(0.05, gt=0, le=1, description="ma_cross: |fast/slow - 1| of full confidence")
    periods_per_year: float = Field(252.0, gt=0, le=1e7, description="bars per year, to annualize volatility")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MomentumParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self

    @property
    def vol_lambda(self) -> float:
        return self.vol_com / (1.0 + self.vol_com)


class RocState(StrategyState):
    strategy_name = "momentum"

    def __init__(self, symbol: str, p: MomentumParams) -> None:
        super().__init__(symbol, max(p.lookback, p.vol_min_periods) + 1)
        self.p = p
        self._roc = ROC(p.lookback)
        self._vol = EWMAVol(p.vol_lambda, p.vol_min_periods, p.periods_per_year)
        self._max = p.max_leverage
        self._vt = p.vol_target
        self._step = p.target_step
        self._long_only = p.long_only

    def update(self, open: float, high: float, low: float, close: float) -> float:
        self.bars += 1
        self.previous_target = self.target
        r = self._roc.update(close)
        v = self._vol.update(close)
        if self.bars < self.warmup:
            return self.target
        raw = self._max
        if v != 0.0:
            scaled = self._vt / v
            if scaled < raw:
                raw = scaled
        mag = math.floor(raw / self._step + STEP_EPS) * self._step
        if r > 0.0:
            self.target = mag
        elif r < 0.0 and not self._long_only:
            self.target = -mag
        else:
            self.target = 0.0
        return self.target

    def _steady(self) -> bool:
        return (
            self.bars >= self.warmup and len(self._roc._buf) > self._roc.n and self._vol._count >= self._vol.min_periods
        )

    def _scan_steady(self, closes: Sequence[float], start: int, end: int, last: float) -> tuple[int, float]:
        """`update` fused with its ROC and EWMA volatility (their arithmetic, in the same order)."""
        roc, vol = self._roc, self._vol
        buf = roc._buf
        append = buf.append
        prev, lam, gain, ppy, variance = vol._prev, vol.lam, vol._gain, vol.periods_per_year, vol.variance
        top, vt, step, long_only = self._max, self._vt, self._step, self._long_only
        log, sqrt, floor = math.log, math.sqrt, math.floor
        target, previous, r, v = self.target, self.previous_target, roc.value, vol.value
        i = start
        while i < end:
            x = closes[i]
            i += 1
            previous = target
            append(x)
            r = x / buf[0] - 1.0
            lr = log(x / prev)
            prev = x
            variance = lam * variance + gain * lr * lr
            v = sqrt(variance * ppy)
            raw = top
            if v != 0.0:
                scaled = vt / v
                if scaled < raw:
                    raw = scaled
            mag = floor(raw / step + STEP_EPS) * step
            if r > 0.0:
                target = mag
            elif r < 0.0 and not long_only:
                target = -mag
            else:
                target = 0.0
            if target != last:
                break
        done = i - start
        self.bars += done
        vol._count += done
        roc.value, vol._prev, vol.variance, vol.value = r, prev, variance, v
        self.target, self.previous_target = target, previous
        return (i - 1, target) if target != last else (end, last)

    def _t_stat(self) -> float:
        r, v = self._roc.value, self._vol.value
        if v == 0.0:
            return math.inf if r != 0.0 else 0.0
        return math.log1p(r) / (v / math.sqrt(self.p.periods_per_year) * math.sqrt(self.p.lookback))

    def confidence(self) -> float:
        return min(1.0, abs(self._t_stat()) / 2.0)

    def rationale(self) -> dict[str, Any]:
        v = self._vol.value
        return {
            "variant": "roc",
            "lookback": self.p.lookback,
            "lookback_return": clean(self._roc.value),
            "ewma_vol_annualized": clean(v),
            "vol_target": self.p.vol_target,
            "raw_size": clean(self._max if v == 0.0 else min(self._max, self._vt / v)),
            "t_stat": clean(self._t_stat(), 4),
            "target": self.target,
        }

    def summary(self) -> str:
        r, v = self._roc.value, self._vol.value
        return (
            f"{self.p.lookback}-bar return {r:+.2%} with volatility {v:.1%}/yr "
            f"-> target {self.target:+.1%} of equity (vol target {self.p.vol_target:.0%})"
        )


class MaCrossState(StrategyState):
    strategy_name = "momentum"

    def __init__(self, symbol: str, p: MomentumParams) -> None:
        super().__init__(symbol, p.slow)
        self.p = p
        self._fast = SMA(p.fast)
        self._slow = SMA(p.slow)
        self._up = p.max_leverage
        self._down = 0.0 if p.long_only else -p.max_leverage

    def update(self, open: float, high: float, low: float, close: float) -> float:
        self.bars += 1
        self.previous_target = self.target
        f = self._fast.update(close)
        s = self._slow.update(close)
        if self.bars < self.warmup:
            return self.target
        d = f - s
        tol = TIE * abs(s)
        if d > tol:
            self.target = self._up
        elif d < -tol:
            self.target = self._down
        return self.target

    def _steady(self) -> bool:
        return self.bars >= self.warmup and self._fast.ready and self._slow.ready

    def _scan_steady(self, closes: Sequence[float], start: int, end: int, last: float) -> tuple[int, float]:
        """`update` fused with its two SMAs (their arithmetic, in the same order)."""
        fast, slow = self._fast, self._slow
        fbuf, sbuf = fast._buf, slow._buf
        fappend, sappend = fbuf.append, sbuf.append
        fn, sn = fast.n, slow.n
        fsum_, ssum_, fsince, ssince = fast._sum, slow._sum, fast._since, slow._since
        f, s = fast.value, slow.value
        up, down = self._up, self._down
        fsum = math.fsum
        target, previous = self.target, self.previous_target
        i = start
        while i < end:
            x = closes[i]
            i += 1
            previous = target
            fsum_ += x - fbuf[0]
            fappend(x)
            fsince += 1
            if fsince >= fn:
                fsince = 0
                fsum_ = fsum(fbuf)
            f = fsum_ / fn
            ssum_ += x - sbuf[0]
            sappend(x)
            ssince += 1
            if ssince >= sn:
                ssince = 0
                ssum_ = fsum(sbuf)
            s = ssum_ / sn
            d = f - s
            tol = TIE * abs(s)
            if d > tol:
                target = up
            elif d < -tol:
                target = down
            if target != last:
                break
        self.bars += i - start
        fast._sum, slow._sum, fast._since, slow._since, fast.value, slow.value = fsum_, ssum_, fsince, ssince, f, s
        self.target, self.previous_target = target, previous
        return (i - 1, target) if target != last else (end, last)

    def confidence(self) -> float:
        return min(1.0, abs(self._fast.value / self._slow.value - 1.0) / self.p.confidence_gap)

    def rationale(self) -> dict[str, Any]:
        return {
            "variant": "ma_cross",
            "fast_sma": clean(self._fast.value),
            "slow_sma": clean(self._slow.value),
            "fast": self.p.fast,
            "slow": self.p.slow,
            "gap": clean(self._fast.value / self._slow.value - 1.0),
            "long_only": self.p.long_only,
            "target": self.target,
        }

    def summary(self) -> str:
        f, s = self._fast.value, self._slow.value
        where = "above" if f > s else "below" if f < s else "level with"
        return f"SMA{self.p.fast} {f:.4g} is {where} SMA{self.p.slow} {s:.4g} -> target {self.target:+.1%} of equity"


class Momentum(Strategy):
    name = "momentum"
    params_model = MomentumParams
    params: MomentumParams

    @property
    def warmup(self) -> int:
        p = self.params
        return max(p.lookback, p.vol_min_periods) + 1 if p.variant == "roc" else p.slow

    def new_state(self, symbol: str) -> StrategyState:
        if self.params.variant == "roc":
            return RocState(symbol, self.params)
        return MaCrossState(symbol, self.params)

    def targets(self, data: BatchData) -> np.ndarray:
        p = self.params
        n = len(data)
        warm = min(self.warmup - 1, n)
        if p.variant == "roc":
            r = data.roc(p.lookback)
            v = data.ewma_vol(p.vol_lambda, p.vol_min_periods, p.periods_per_year)
            return self._roc_targets(r, v, warm)
        f, s = data.sma(p.fast), data.sma(p.slow)
        d = f - s
        tol = TIE * np.abs(s)
        down = 0.0 if p.long_only else -p.max_leverage
        values = np.where(d > tol, p.max_leverage, np.where(d < -tol, down, 0.0))
        valid = (d > tol) | (d < -tol)
        valid[:warm] = True
        values[:warm] = 0.0
        if n:
            valid[0] = True
        return forward_fill(values, valid)

    def exact_targets(self, closes: np.ndarray) -> np.ndarray | None:
        p = self.params
        if p.variant != "roc":
            return None  # its fused scan is fast already
        r = exact.roc(closes, p.lookback)
        v = exact.ewma_vol(closes, p.vol_lambda, p.vol_min_periods, p.periods_per_year)
        return self._roc_targets(r, v, min(self.warmup - 1, len(closes)))

    def _roc_targets(self, r: np.ndarray, v: np.ndarray, warm: int) -> np.ndarray:
        p = self.params
        with np.errstate(invalid="ignore", divide="ignore"):
            raw = np.where(v == 0.0, p.max_leverage, np.minimum(p.max_leverage, p.vol_target / v))
        mag = np.floor(raw / p.target_step + STEP_EPS) * p.target_step
        out: np.ndarray = np.where(r > 0.0, mag, np.where((r < 0.0) & (not p.long_only), -mag, 0.0))
        out[:warm] = 0.0
        return out
