"""Indicators: each an incremental O(1)-per-bar class (plain floats) with a numpy batch twin in `batch`.

Conventions shared by every indicator:
- `update(x)` takes the newest value and returns the indicator (NaN until warmed up); `ready` tells.
- The batch twin takes a 1-D float array and returns an array of the same length, NaN during warm-up,
  equal to what the incremental class returns bar by bar (tests/strategies check both against a naive
  reference with Hypothesis).
- Standard deviations are population ones (ddof=0). A window whose values are all equal has a standard
  deviation of exactly 0 and a mean equal to that value, in both forms.
"""

from strategies.indicators.oscillators import ADX, RSI
from strategies.indicators.regime import VarianceRatio
from strategies.indicators.returns import ROC, EWMAVol
from strategies.indicators.rolling import SMA, Bollinger, RollingStats, ZScore
from strategies.indicators.smoothing import EMA

__all__ = ["ADX", "EMA", "EWMAVol", "ROC", "RSI", "SMA", "Bollinger", "RollingStats", "VarianceRatio", "ZScore"]
