"""Sender-facing body formats (generic JSON, TradingView alert JSON), each mapped to `NormalizedSignal`."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.common import (
    DEFAULT_ACCOUNT,
    MAX_DECIMALS,
    MAX_DIGITS,
    Action,
    PositiveDecimal,
    Price,
    UtcDatetime,
    construct_trusted,
)
from schemas.signals import SYMBOL_PATTERN, MarketPosition, NormalizedSignal, SignedDecimal

COMMENT_MAX = 500
NonNegativeDecimal = Annotated[Decimal, Field(ge=0, max_digits=MAX_DIGITS, decimal_places=MAX_DECIMALS)]
_PLACEHOLDER = re.compile(r"\{\{.*\}\}")


def _upper_symbol(v: object) -> object:
    if not isinstance(v, str):
        return v
    if not v.isascii():  # checked before folding: "ıbm".upper() == "IBM"
        raise ValueError("a symbol is ASCII letters, digits and . _ : / - only")
    return v.strip().upper()


def _ascii_number(v: object) -> object:
    """Decimal("１２３") is 123: a number written as a string must use ASCII digits, like JSON numbers do."""
    if isinstance(v, str) and not v.isascii():
        raise ValueError("write numbers with ASCII digits 0-9")
    return v


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
    comment: str | None = Field(default=None, max_length=COMMENT_MAX, description="Kept as data, never obeyed")
    time: UtcDatetime | None = Field(default=None, description="ISO 8601 with a zone, or unix seconds (UTC)")

    _symbol = field_validator("symbol", mode="before")(_upper_symbol)
    _numbers = field_validator("price", "quantity", "open", "high", "low", "close", "volume", mode="before")(
        _ascii_number
    )

    def normalize(
        self,
        *,
        signal_id: str,
        source: str,
        received_at: datetime,
        correlation_id: str,
        fired_at: datetime | None = None,
        accounts: list[str] | None = None,
    ) -> NormalizedSignal:
        """`fired_at`: when the sender fired it (Standard Webhooks: the verified `webhook-timestamp`);
        without one, the receipt. Never the body's `time`, which is the bar's market time. `accounts`: the
        source's routing (default: the default account). The arguments must be valid (see `_normalized`)."""
        return _normalized(
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
            fired_at=fired_at or received_at,
            correlation_id=correlation_id,
            accounts=list(accounts) if accounts is not None else [DEFAULT_ACCOUNT],
            order_id=None,
            position_size=None,
            market_position=None,
            alert_time=None,
        )


class TradingViewAlert(BaseModel):
    """A TradingView alert message built from its placeholders (see README). The `secret` member is
    checked and removed before this model sees the body."""

    model_config = ConfigDict(extra="forbid")

    ticker: str = Field(pattern=SYMBOL_PATTERN, description="{{ticker}}")
    exchange: str | None = Field(default=None, max_length=32, description="{{exchange}}")
    interval: str | None = Field(default=None, max_length=16, description="{{interval}}")
    price: Price | None = Field(default=None, description="Defaults to close")
    open: Price | None = Field(default=None, description="{{open}}")
    high: Price | None = Field(default=None, description="{{high}}")
    low: Price | None = Field(default=None, description="{{low}}")
    close: Price | None = Field(default=None, description="{{close}}")
    volume: NonNegativeDecimal | None = Field(default=None, description="{{volume}}; 0 is dropped")
    time: UtcDatetime | None = Field(default=None, description="{{time}}: bar time, UTC")
    timenow: UtcDatetime | None = Field(default=None, description="{{timenow}}: alert time, UTC")
    action: Action | None = Field(default=None, description="{{strategy.order.action}}")
    contracts: PositiveDecimal | None = Field(default=None, description="{{strategy.order.contracts}}")
    order_id: str | None = Field(default=None, max_length=64, description="{{strategy.order.id}}")
    position_size: SignedDecimal | None = Field(default=None, description="{{strategy.position_size}}")
    market_position: MarketPosition | None = Field(default=None, description="{{strategy.market_position}}")
    comment: str | None = Field(default=None, max_length=COMMENT_MAX, description="Kept as data, never obeyed")

    @field_validator("*", mode="before")
    @classmethod
    def _rendered(cls, v: object) -> object:
        if isinstance(v, str) and _PLACEHOLDER.search(v):
            raise ValueError("TradingView left this placeholder unfilled (use a strategy alert, or remove the field)")
        return v

    _symbol = field_validator("ticker", mode="before")(_upper_symbol)
    _numbers = field_validator(
        "price", "open", "high", "low", "close", "volume", "contracts", "position_size", mode="before"
    )(_ascii_number)

    @field_validator("action", "market_position", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _has_price(self) -> TradingViewAlert:
        if self.price is None and self.close is None:
            raise ValueError("send price or close (e.g. {{close}})")
        return self

    def normalize(
        self,
        *,
        signal_id: str,
        source: str,
        received_at: datetime,
        correlation_id: str,
        accounts: list[str] | None = None,
    ) -> NormalizedSignal:
        """`fired_at` is `{{timenow}}` when sent, else the receipt; never `{{time}}` (the bar's market time).
        `accounts` and the other arguments as in GenericSignal.normalize."""
        price = self.price if self.price is not None else self.close
        assert price is not None
        return _normalized(
            signal_id=signal_id,
            source=source,
            symbol=self.ticker,
            price=price,
            action=self.action,
            quantity=self.contracts,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume or None,
            interval=self.interval,
            exchange=self.exchange,
            comment=self.comment,
            signal_time=self.time,
            received_at=received_at,
            fired_at=self.timenow or received_at,
            correlation_id=correlation_id,
            accounts=list(accounts) if accounts is not None else [DEFAULT_ACCOUNT],
            order_id=self.order_id,
            position_size=self.position_size,
            market_position=self.market_position,
            alert_time=self.timenow,
        )


_SIGNAL_FIELDS = frozenset(NormalizedSignal.model_fields) - {"schema_version"}


def _normalized(**values: Any) -> NormalizedSignal:
    """The signal, built without validating it again: every value is already valid. The body's come from a
    validated GenericSignal or TradingViewAlert, whose fields have NormalizedSignal's types and bounds; the
    gateway's own are a hashed id, a source name and accounts checked when the sources file loaded, a
    correlation id matched against its pattern, and times from the UTC clock. Validating them again cost 57k
    of the 1,724k instructions a webhook took (bench/gateway_instructions.py). tests/gateway/test_gateway_trusted.py
    holds this to NormalizedSignal's own validation."""
    assert values.keys() == _SIGNAL_FIELDS, "every field of NormalizedSignal, each once"
    return construct_trusted(NormalizedSignal, {"schema_version": 1, **values})


class Accepted(BaseModel):
    signal_id: str = Field(description="Stable id of the stored signal; a duplicate answers the original's id")
    duplicate: bool = Field(description="True when the signal had already been stored")


class FieldError(BaseModel):
    field: str
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; `code` is stable (docs/ERROR_CATALOG.md)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = Field(default=None, description="schema_violation only")


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")
