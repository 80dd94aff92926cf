"""Wilder's oscillators: RSI and ADX (with +DI / -DI).

Wilder smoothing of a series y with period n: the first value is the plain mean of the first n values,
then avg_t = avg_{t-1} + (y_t - avg_{t-1}) / n (an EMA with alpha = 1/n).
"""

from __future__ import annotations

import math

from strategies.indicators.rolling import _check_window

NAN = math.nan


class RSI:
    """RSI = 100 · avg_gain / (avg_gain + avg_loss) over Wilder-smoothed close-to-close changes.

    Ready after n changes (n + 1 closes). 50 when there was neither a gain nor a loss (constant prices).
    """

    __slots__ = ("n", "_prev", "_count", "avg_gain", "avg_loss", "value")

    def __init__(self, n: int = 14) -> None:
        self.n = _check_window(n)
        self._prev = NAN
        self._count = 0
        self.avg_gain = 0.0
        self.avg_loss = 0.0
        self.value = NAN

    @property
    def ready(self) -> bool:
        return self._count >= self.n

    def update(self, x: float) -> float:
        prev = self._prev
        self._prev = x
        if prev != prev:
            return self.value
        d = x - prev
        gain = d if d > 0.0 else 0.0
        loss = -d if d < 0.0 else 0.0
        n = self.n
        self._count += 1
        if self._count > n:
            self.avg_gain += (gain - self.avg_gain) / n
            self.avg_loss += (loss - self.avg_loss) / n
        else:
            self.avg_gain += gain
            self.avg_loss += loss
            if self._count < n:
                return self.value
            self.avg_gain /= n
            self.avg_loss /= n
        total = self.avg_gain + self.avg_loss
        self.value = 100.0 * self.avg_gain / total if total > 0.0 else 50.0
        return self.value


class ADX:
    """Wilder's average directional index over high/low/close; ready after 2n bars."""

    __slots__ = (
        "n",
        "_ph",
        "_pl",
        "_pc",
        "_count",
        "_tr",
        "_pdm",
        "_mdm",
        "_dx_count",
        "_dx_seed",
        "plus_di",
        "minus_di",
        "value",
    )

    def __init__(self, n: int = 14) -> None:
        self.n = _check_window(n)
        self._ph = self._pl = self._pc = NAN
        self._count = 0
        self._tr = self._pdm = self._mdm = 0.0
        self._dx_count = 0
        self._dx_seed = 0.0
        self.plus_di = self.minus_di = NAN
        self.value = NAN

    @property
    def ready(self) -> bool:
        return self._dx_count >= self.n

    def update(self, high: float, low: float, close: float) -> float:
        ph, pl, pc = self._ph, self._pl, self._pc
        self._ph, self._pl, self._pc = high, low, close
        if pc != pc:
            return self.value
        up = high - ph
        down = pl - low
        pdm = up if up > down and up > 0.0 else 0.0
        mdm = down if down > up and down > 0.0 else 0.0
        tr = max(high - low, abs(high - pc), abs(low - pc))
        n = self.n
        self._count += 1
        if self._count > n:
            self._tr += (tr - self._tr) / n
            self._pdm += (pdm - self._pdm) / n
            self._mdm += (mdm - self._mdm) / n
        else:
            self._tr += tr
            self._pdm += pdm
            self._mdm += mdm
            if self._count < n:
                return self.value
            self._tr /= n
            self._pdm /= n
            self._mdm /= n
        if self._tr > 0.0:
            self.plus_di = 100.0 * self._pdm / self._tr
            self.minus_di = 100.0 * self._mdm / self._tr
        else:
            self.plus_di = self.minus_di = 0.0
        s = self.plus_di + self.minus_di
        dx = 100.0 * abs(self.plus_di - self.minus_di) / s if s > 0.0 else 0.0
        self._dx_count += 1
        if self._dx_count > n:
            self.value += (dx - self.value) / n
        else:
            self._dx_seed += dx
            if self._dx_count == n:
                self.value = self._dx_seed / n
        return self.value
