"""The trend / mean-reversion regime measure: the Lo–MacKinlay variance ratio.

VR(q) = Var(q-bar log returns) / (q · Var(1-bar log returns)), both over the last `window` values
(overlapping q-bar returns, each variance about its own window mean, population form). A random walk
gives VR ≈ 1; trending (positively autocorrelated) prices give VR > 1, mean-reverting prices VR < 1.

Chosen over the Hurst exponent because it updates in O(1) per bar from two rolling variances, has a
known sampling distribution under the random-walk null (std ≈ sqrt(2(2q-1)(q-1) / (3q·window))), and
needs no regression over several scales. Constant prices (both variances 0) give VR = 1: no evidence.
"""

from __future__ import annotations

import math
from collections import deque

from strategies.indicators.rolling import RollingStats, _check_window

NAN = math.nan


class VarianceRatio:
    __slots__ = ("q", "window", "_closes", "_r1", "_rq", "value")

    def __init__(self, q: int = 5, window: int = 120) -> None:
        if _check_window(q) < 2:
            raise ValueError(f"variance-ratio lag q must be at least 2, got {q!r}")
        self.q = q
        self.window = _check_window(window)
        self._closes: deque[float] = deque(maxlen=q + 1)
        self._r1 = RollingStats(window)
        self._rq = RollingStats(window)
        self.value = NAN

    @property
    def ready(self) -> bool:
        return self._rq.ready

    @property
    def warmup(self) -> int:
        """Bars needed before the first value."""
        return self.q + self.window

    def update(self, x: float) -> float:
        lx = math.log(x)
        logs = self._closes
        if logs:
            self._r1.update(lx - logs[-1])
        logs.append(lx)
        if len(logs) > self.q:
            var_q = self._rq.update(lx - logs[0])
            if var_q == var_q:
                var_1 = self._r1.std
                self.value = (var_q * var_q) / (self.q * var_1 * var_1) if var_1 > 0.0 else 1.0
        return self.value
