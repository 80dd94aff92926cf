"""Signals: what the gateway publishes on `signals.normalized`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.common import (
    ACCOUNT_PATTERN,
    DEFAULT_ACCOUNT,
    MAX_DECIMALS,
    MAX_DIGITS,
    Action,
    Contract,
    Money,
    PositiveDecimal,
    Price,
    UtcDatetime,
)

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9._:/-]{0,31}$"

# Signed, finite, bounded (e.g. a strategy's position size: negative when short).
SignedDecimal = Annotated[Money, Field(max_digits=MAX_DIGITS, decimal_places=MAX_DECIMALS)]
MarketPosition = Literal["long", "short", "flat"]
AccountId = Annotated[str, Field(pattern=ACCOUNT_PATTERN)]


class NormalizedSignal(Contract):
    """One trading signal from an authenticated sender, in the one shape every consumer reads.

    `comment` is free text from outside: it is data, never an instruction to follow.
    """

    schema_version: Literal[1] = 1
    signal_id: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=64)
    symbol: str = Field(pattern=SYMBOL_PATTERN)
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
    signal_time: UtcDatetime | None = None
    received_at: UtcDatetime
    fired_at: UtcDatetime | None = Field(
        default=None,
        description=(
            "When the sender fired the signal: the verified Standard Webhooks `webhook-timestamp`, "
            "TradingView's `timenow`, else the gateway's receipt time. The gateway always sets it; absent "
            "only on signals stored before the field existed. Never the bar's time (`signal_time`), which "
            "is market time: a daily bar fired now is fresh."
        ),
    )
    correlation_id: str = Field(min_length=1, max_length=128)
    accounts: list[AccountId] = Field(
        default_factory=lambda: [DEFAULT_ACCOUNT],
        min_length=1,
        max_length=32,
        description=(
            "The accounts this signal feeds, set by the gateway from the source's routing (sources file: "
            "`accounts`, per symbol `symbol_accounts`); each decides on it on its own. Absent on signals "
            "stored before accounts existed: the default account"
        ),
    )
    # TradingView strategy alerts ({{strategy.order.id}}, {{strategy.position_size}},
    # {{strategy.market_position}}, {{timenow}}); absent for other senders.
    order_id: str | None = Field(default=None, max_length=64)
    position_size: SignedDecimal | None = None
    market_position: MarketPosition | None = None
    alert_time: UtcDatetime | None = None
