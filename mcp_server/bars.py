"""Bars from the signal log: a signal with OHLCV is a bar; a price-only signal is a bar with O=H=L=C."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field

from schemas.common import Money
from schemas.market import Bar as MarketBar
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
    price_only: bool = Field(description="True when the signal carried only a price (no open, high or low)")


def bar_of(signal: NormalizedSignal) -> Bar:
    """The signal's bar as the MCP tools show it: exactly `schemas.market.Bar.from_signal` (the one conversion the
    simulator, the authority, the bridge and the strategies use), plus where it came from."""
    bar = MarketBar.from_signal(signal)
    return Bar(
        time=bar.ts,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=signal.volume,
        interval=signal.interval,
        signal_id=signal.signal_id,
        price_only=signal.open is None and signal.high is None and signal.low is None,
    )


def bars_oldest_first(newest_first: Iterable[NormalizedSignal]) -> list[Bar]:
    return [bar_of(s) for s in reversed(list(newest_first))]
