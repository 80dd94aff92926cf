"""One OHLCV bar as plain floats (indicators work in floats; accounting converts to Decimal at the edge)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Bar:
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0

    @classmethod
    def from_price(cls, ts: datetime, price: float) -> Bar:
        """A price-only update is a bar with open = high = low = close."""
        return cls(ts, price, price, price, price)
