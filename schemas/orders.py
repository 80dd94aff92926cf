"""Orders: the command (`OrderIntent`) and the events it causes (`OrderEvent`, `Fill`, `RiskDenied`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from schemas.common import Contract, Money, Price, Quantity, Side, UtcDatetime

OrderType = Literal["market", "limit", "stop", "stop_limit"]
TimeInForce = Literal["DAY", "GTC", "IOC", "FOK"]
OrderStatus = Literal["accepted", "rejected", "partially_filled", "filled", "canceled", "expired"]
Origin = Literal["bridge", "mcp", "agent", "backtest"]

CLIENT_ORDER_ID = r"^[A-Za-z0-9._:-]{1,64}$"


class OrderIntent(Contract):
    """A command to the execution simulator: place this order. Already approved by the risk gate."""

    schema_version: Literal[1] = 1
    client_order_id: str = Field(pattern=CLIENT_ORDER_ID)
    symbol: str
    side: Side
    quantity: Quantity
    order_type: OrderType = "market"
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce = "DAY"
    reference_price: Price = Field(description="The last price the decider saw; market orders fill near it")
    origin: Origin
    signal_id: str | None = None
    strategy: str | None = None
    confidence: float | None = Field(default=None, ge=0, le=1)
    rationale: dict[str, Any] = Field(default_factory=dict)
    created_at: UtcDatetime
    correlation_id: str


class OrderEvent(Contract):
    """Something that happened to an order, published on `executions.report`."""

    schema_version: Literal[1] = 1
    event_id: str
    client_order_id: str
    symbol: str
    side: Side
    status: OrderStatus
    quantity: Quantity
    filled_quantity: Money
    reason: str | None = None
    ts: UtcDatetime
    correlation_id: str


class Fill(Contract):
    """An execution, published on `executions.fill`. Positions are built from these alone."""

    schema_version: Literal[1] = 1
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: Quantity
    price: Price
    fee: Money
    ts: UtcDatetime
    correlation_id: str


class RiskDenied(Contract):
    """The risk gate said no, published on `decisions.risk_denied`."""

    schema_version: Literal[1] = 1
    client_order_id: str
    symbol: str
    side: Side
    quantity: Quantity
    reason_code: str
    message: str
    origin: Origin
    signal_id: str | None = None
    ts: UtcDatetime
    correlation_id: str
