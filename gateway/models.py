"""Sender-facing body formats, mapped to `NormalizedSignal`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.common import Action, PositiveDecimal, Price, UtcDatetime
from schemas.signals import SYMBOL_PATTERN, NormalizedSignal


class GenericSignal(BaseModel):
    """The generic JSON signal: `{"symbol": "AAPL", "price": "190.25", "action": "buy", "quantity": 10}`."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(pattern=SYMBOL_PATTERN, description="Upper-case ticker, e.g. AAPL or BTCUSD")
    price: Price
    action: Action | None = None
    quantity: PositiveDecimal | None = None
    open: Price | None = None
    high: Price | None = None
    low: Price | None = None
    close: Price | None = None
    volume: PositiveDecimal | None = None
    interval: str | None = Field(default=None, max_length=16)
    exchange: str | None = Field(default=None, max_length=32)
    comment: str | None = Field(default=None, max_length=500)
    time: UtcDatetime | None = None

    @field_validator("symbol", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    def normalize(self, *, signal_id: str, source: str, received_at: datetime, correlation_id: str) -> NormalizedSignal:
        return NormalizedSignal(
            signal_id=signal_id,
            source=source,
            symbol=self.symbol,
            price=self.price,
            action=self.action,
            quantity=self.quantity,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            interval=self.interval,
            exchange=self.exchange,
            comment=self.comment,
            signal_time=self.time,
            received_at=received_at,
            correlation_id=correlation_id,
        )


class Accepted(BaseModel):
    signal_id: str
    duplicate: bool
