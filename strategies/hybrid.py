"""Hybrid: the variance ratio picks between momentum and mean reversion.

score = VR(regime_lag, regime_window) - 1 (see strategies/indicators/regime.py), and the regime:
- score > +neutral_band        -> "trending": weight 1 on momentum, 0 on mean reversion;
- score < -neutral_band        -> "ranging":  weight 0 on momentum, 1 on mean reversion;
- |score| ≤ neutral_band / 2   -> "neutral":  weight ½ each;
- otherwise the regime is kept (hysteresis: a score wobbling around a band edge does not flip the
  regime, and with it the position, bar after bar). The regime starts neutral.
target = w · momentum target + (1 - w) · mean-reversion target; both sub-strategies run on every bar.
confidence = w · momentum confidence + (1 - w) · mean-reversion confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from strategies.base import Strategy, StrategyState, clean, side_for
from strategies.batch_data import BatchData, forward_fill
from strategies.indicators import VarianceRatio, exact
from strategies.mean_reversion import MeanReversion, MeanReversionParams, MeanReversionState
from strategies.momentum import STEP_EPS, Momentum, MomentumParams, RocState


class HybridParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    momentum: MomentumParams = Field(default_factory=MomentumParams)
    mean_reversion: MeanReversionParams = Field(default_factory=MeanReversionParams)
    regime_lag: int = Field(5, ge=2, le=1000, description="q of the variance ratio (bars per long return)")
    regime_window: int = Field(120, ge=2, le=10_000, description="bars of returns in each variance")
    neutral_band: float = Field(0.15, ge=0, lt=1, description="|VR - 1| at or below this is neutral")


REGIME = {1.0: "trending", 0.0: "ranging", 0.5: "neutral"}


class HybridState(StrategyState):
    strategy_name = "hybrid"

    def __init__(self, symbol: str, strategy: Hybrid) -> None:
        super().__init__(symbol, strategy.warmup)
        p = strategy.params
        self.p = p
        self.mom = strategy.momentum.new_state(symbol)
        self.mr = strategy.mean_reversion.new_state(symbol)
        self._vr = VarianceRatio(p.regime_lag, p.regime_window)
        self._band = p.neutral_band
        self._half_band = p.neutral_band / 2
        self.weight = 0.5

    def update(self, open: float, high: float, low: float, close: float) -> float:
        self.bars += 1
        self.previous_target = self.target
        tm = self.mom.update(open, high, low, close)
        tr = self.mr.update(open, high, low, close)
        score = self._vr.update(close) - 1.0
        if self.bars < self.warmup:
            return self.target
        # the regime rule of the module docstring, with hysteresis: inside neither band the weight is kept
        band = self._band
        if score > band:
            w = self.weight = 1.0
        elif score < -band:
            w = self.weight = 0.0
        elif abs(score) <= self._half_band:
            w = self.weight = 0.5
        else:
            w = self.weight
        self.target = w * tm + (1.0 - w) * tr
        return self.target

    def _steady(self) -> bool:
        vr = self._vr
        return (
            self.bars >= self.warmup
            and isinstance(self.mom, RocState)
            and "update" not in self.mom.__dict__
            and self.mom._steady()
            and isinstance(self.mr, MeanReversionState)
            and "update" not in self.mr.__dict__
            and self.mr._steady()
            and len(vr._closes) > vr.q
            and vr._r1.ready
            and vr._rq.ready
        )

    def _scan_steady(self, closes: Sequence[float], start: int, end: int, last: float) -> tuple[int, float]:
        """`update` fused with both sub-strategies' (the ROC momentum and the z-score mean reversion) and the
        variance ratio's: their arithmetic, in the same order, in one loop of local variables. The state
        after is the one `update` leaves; `tests/strategies` compare the two on random series."""
        log, sqrt, floor = math.log, math.sqrt, math.floor
        mom = self.mom
        mr = self.mr
        assert isinstance(mom, RocState) and isinstance(mr, MeanReversionState)
        # momentum (roc)
        roc, vol = mom._roc, mom._vol
        rbuf = roc._buf
        rappend = rbuf.append
        prev, lam, gain, ppy, variance = vol._prev, vol.lam, vol._gain, vol.periods_per_year, vol.variance
        top, vt, step, long_only = mom._max, mom._vt, mom._step, mom._long_only
        tm, tm_prev, r, v = mom.target, mom.previous_target, roc.value, vol.value
        # mean reversion: its z-score's rolling statistics
        zs = mr._z
        za = zs.stats
        zbuf = za._buf
        zappend, zrefresh = zbuf.append, za._refresh
        zn, zevery, znarrow = za.n, za._every, za._narrow
        zm_, zm2_, zsince, zrun, zseen, zmean, zstd = za._mean, za._m2, za._since, za._run, za._last, za.mean, za.std
        z = zs.value
        rsi = mr._rsi
        rsi_update = rsi.update if rsi is not None else None
        oversold, overbought = mr.p.rsi_oversold, mr.p.rsi_overbought
        entry, exit_, size, short = mr._entry, mr._exit, mr._size, mr._short
        tr, tr_prev = mr.target, mr.previous_target
        # the variance ratio: log closes, 1-bar and q-bar log returns' rolling statistics
        vr = self._vr
        q = vr.q
        logs = vr._closes
        lappend = logs.append
        a, b = vr._r1, vr._rq
        abuf, bbuf = a._buf, b._buf
        aappend, bappend, arefresh, brefresh = abuf.append, bbuf.append, a._refresh, b._refresh
        n, every, narrow = a.n, a._every, a._narrow  # both windows are `regime_window` long
        am_, am2_, asince, arun, aseen, amean, astd = a._mean, a._m2, a._since, a._run, a._last, a.mean, a.std
        bm_, bm2_, bsince, brun, bseen, bmean, bstd = b._mean, b._m2, b._since, b._run, b._last, b.mean, b.std
        ratio = vr.value
        band, half_band, w = self._band, self._half_band, self.weight
        target, previous = self.target, self.previous_target
        i = start
        while i < end:
            x = closes[i]
            i += 1
            previous = target
            # RocState.update
            tm_prev = tm
            rappend(x)
            r = x / rbuf[0] - 1.0
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
                tm = mag
            elif r < 0.0 and not long_only:
                tm = -mag
            else:
                tm = 0.0
            # MeanReversionState.update
            tr_prev = tr
            if x == zseen:
                zrun += 1
            else:
                zrun = 1
                zseen = x
            old = zbuf[0]
            zappend(x)
            dx = x - old
            m = zm_ + dx / zn
            m2 = zm2_ + dx * (x - m + old - zm_)
            zsince += 1
            if zsince >= zevery or m2 < 1e-9 * (old - zm_) * (old - zm_) or m2 < znarrow * m * m:
                m, m2 = zrefresh(zbuf)
                zsince = 0
            zm_, zm2_ = m, m2
            if zrun >= zn:
                zmean, zstd = x, 0.0
            else:
                zmean = m
                zstd = sqrt(m2 / zn) if m2 > 0.0 else 0.0
            z = (x - zmean) / zstd if zstd > 0.0 else 0.0
            if rsi_update is not None:
                rsi_update(x)
            if z <= -entry and (rsi is None or rsi.value <= oversold):
                tr = size
            elif z >= entry and short and (rsi is None or rsi.value >= overbought):
                tr = -size
            elif (tr_prev > 0.0 and z >= -exit_) or (tr_prev < 0.0 and z <= exit_):
                tr = 0.0
            # VarianceRatio.update: the 1-bar return's statistics
            lx = log(x)
            y = lx - logs[-1]
            if y == aseen:
                arun += 1
            else:
                arun = 1
                aseen = y
            old = abuf[0]
            aappend(y)
            dx = y - old
            m = am_ + dx / n
            m2 = am2_ + dx * (y - m + old - am_)
            asince += 1
            if asince >= every or m2 < 1e-9 * (old - am_) * (old - am_) or m2 < narrow * m * m:
                m, m2 = arefresh(abuf)
                asince = 0
            am_, am2_ = m, m2
            if arun >= n:
                amean, astd = y, 0.0
            else:
                amean = m
                astd = sqrt(m2 / n) if m2 > 0.0 else 0.0
            lappend(lx)
            # ... and the q-bar return's
            y = lx - logs[0]
            if y == bseen:
                brun += 1
            else:
                brun = 1
                bseen = y
            old = bbuf[0]
            bappend(y)
            dx = y - old
            m = bm_ + dx / n
            m2 = bm2_ + dx * (y - m + old - bm_)
            bsince += 1
            if bsince >= every or m2 < 1e-9 * (old - bm_) * (old - bm_) or m2 < narrow * m * m:
                m, m2 = brefresh(bbuf)
                bsince = 0
            bm_, bm2_ = m, m2
            if brun >= n:
                bmean, bstd = y, 0.0
            else:
                bmean = m
                bstd = sqrt(m2 / n) if m2 > 0.0 else 0.0
            ratio = (bstd * bstd) / (q * astd * astd) if astd > 0.0 else 1.0
            # the regime and the blend
            score = ratio - 1.0
            if score > band:
                w = 1.0
            elif score < -band:
                w = 0.0
            elif abs(score) <= half_band:
                w = 0.5
            target = w * tm + (1.0 - w) * tr
            if target != last:
                break
        done = i - start
        self.bars += done
        mom.bars += done
        mr.bars += done
        vol._count += done
        roc.value, vol._prev, vol.variance, vol.value = r, prev, variance, v
        mom.target, mom.previous_target = tm, tm_prev
        za._mean, za._m2, za._since, za._run, za._last, za.mean, za.std = zm_, zm2_, zsince, zrun, zseen, zmean, zstd
        zs.value = z
        mr.target, mr.previous_target = tr, tr_prev
        a._mean, a._m2, a._since, a._run, a._last, a.mean, a.std = am_, am2_, asince, arun, aseen, amean, astd
        b._mean, b._m2, b._since, b._run, b._last, b.mean, b.std = bm_, bm2_, bsince, brun, bseen, bmean, bstd
        vr.value = ratio
        self.weight, self.target, self.previous_target = w, target, previous
        return (i - 1, target) if target != last else (end, last)

    def confidence(self) -> float:
        w = self.weight
        return w * self.mom.confidence() + (1.0 - w) * self.mr.confidence()

    def _sub(self, st: StrategyState) -> dict[str, Any]:
        return {
            "side": side_for(st.target, st.previous_target),
            "target": st.target,
            "confidence": clean(min(1.0, max(0.0, st.confidence())), 4),
            "summary": st.summary(),
            "rationale": st.rationale(),
        }

    def rationale(self) -> dict[str, Any]:
        vr = self._vr.value
        return {
            "regime": REGIME[self.weight],
            "variance_ratio": clean(vr, 4),
            "regime_score": clean(vr - 1.0, 4),
            "neutral_band": self._band,
            "momentum_weight": self.weight,
            "momentum": self._sub(self.mom),
            "mean_reversion": self._sub(self.mr),
            "target": self.target,
        }

    def summary(self) -> str:
        return (
            f"{REGIME[self.weight]} (variance ratio {self._vr.value:.2f}): momentum {self.mom.target:+.2f} x "
            f"{self.weight:.1f} + mean reversion {self.mr.target:+.2f} x {1 - self.weight:.1f} "
            f"-> target {self.target:+.1%} of equity"
        )


class Hybrid(Strategy):
    name = "hybrid"
    params_model = HybridParams
    params: HybridParams

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.momentum = Momentum(self.params.momentum)
        self.mean_reversion = MeanReversion(self.params.mean_reversion)

    @property
    def warmup(self) -> int:
        p = self.params
        return max(self.momentum.warmup, self.mean_reversion.warmup, p.regime_lag + p.regime_window)

    def new_state(self, symbol: str) -> StrategyState:
        return HybridState(symbol, self)

    def targets(self, data: BatchData) -> np.ndarray:
        p = self.params
        tm = self.momentum.targets(data)
        tr = self.mean_reversion.targets(data)
        return self._blend(tm, tr, data.variance_ratio(p.regime_lag, p.regime_window))

    def exact_targets(self, closes: np.ndarray) -> np.ndarray | None:
        p = self.params
        tm = self.momentum.exact_targets(closes)
        tr = self.mean_reversion.exact_targets(closes)
        if tm is None or tr is None:
            return None
        return self._blend(tm, tr, exact.variance_ratio(closes, p.regime_lag, p.regime_window))

    def _blend(self, tm: np.ndarray, tr: np.ndarray, vr: np.ndarray) -> np.ndarray:
        p = self.params
        score = vr - 1.0
        band = p.neutral_band
        warm = min(self.warmup - 1, len(vr))
        values = np.where(score > band, 1.0, np.where(score < -band, 0.0, 0.5))
        valid = (score > band) | (score < -band) | (np.abs(score) <= band / 2)
        valid[:warm] = True
        values[:warm] = 0.5
        w = forward_fill(values, valid) if len(vr) else values
        out: np.ndarray = w * tm + (1.0 - w) * tr
        out[:warm] = 0.0
        return out
