"""Market data: one OHLCV bar per symbol and interval. What the engine and the strategies read."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from schemas.common import Contract, Money, Price, UtcDatetime
from schemas.signals import NormalizedSignal


class Bar(Contract):
    """An OHLCV bar. `ts` is the bar's open time. `volume` 0 means "not known" (no participation cap)."""

    schema_version: Literal[1] = 1
    symbol: str
    ts: UtcDatetime
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Money = Field(default=Decimal(0), ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Bar:
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            raise ValueError("a bar needs low <= open, close <= high")
        return self

    @classmethod
    def from_signal(cls, signal: NormalizedSignal) -> Bar:
        """A signal with OHLCV is a bar; a price-only signal is a bar with open = high = low = close."""
        close = signal.close or signal.price
        open_ = signal.open or close
        high = max(signal.high or close, open_, close)
        low = min(signal.low or close, open_, close)
        return cls(
            symbol=signal.symbol,
            ts=signal.signal_time or signal.received_at,
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=signal.volume or Decimal(0),
        )
