"""Bars from the signal log: a signal with OHLCV is a bar; a price-only signal is a bar with O=H=L=C."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field

from schemas.common import Money
from schemas.signals import NormalizedSignal


class Bar(BaseModel):
    time: datetime = Field(description="The sender's bar time, else when the gateway received the signal (UTC)")
    open: Money
    high: Money
    low: Money
    close: Money
    volume: Money | None = None
    interval: str | None = None
    signal_id: str
    price_only: bool = Field(description="True when the signal carried one price, so O=H=L=C")


def bar_of(signal: NormalizedSignal) -> Bar:
    close = signal.close or signal.price
    has_ohlc = signal.open is not None and signal.high is not None and signal.low is not None
    return Bar(
        time=signal.signal_time or signal.received_at,
        open=signal.open if has_ohlc else close,
        high=signal.high if has_ohlc else close,
        low=signal.low if has_ohlc else close,
        close=close,
        volume=signal.volume,
        interval=signal.interval,
        signal_id=signal.signal_id,
        price_only=not has_ohlc,
    )


def bars_oldest_first(newest_first: Iterable[NormalizedSignal]) -> list[Bar]:
    return [bar_of(s) for s in reversed(list(newest_first))]
