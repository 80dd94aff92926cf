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

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from strategies.base import Strategy, StrategyState, clean, side_for
from strategies.batch_data import BatchData, forward_fill
from strategies.indicators import VarianceRatio
from strategies.mean_reversion import MeanReversion, MeanReversionParams
from strategies.momentum import Momentum, MomentumParams


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
        score = data.variance_ratio(p.regime_lag, p.regime_window) - 1.0
        band = p.neutral_band
        warm = min(self.warmup - 1, len(data))
        values = np.where(score > band, 1.0, np.where(score < -band, 0.0, 0.5))
        valid = (score > band) | (score < -band) | (np.abs(score) <= band / 2)
        valid[:warm] = True
        values[:warm] = 0.5
        w = forward_fill(values, valid) if len(data) else values
        out: np.ndarray = w * tm + (1.0 - w) * tr
        out[:warm] = 0.0
        return out
