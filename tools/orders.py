"""Order operations' shapes, framework-free: what the MCP order tools take and return.

Orders are decided by the account authority alone (`authority.service`, the rule in
`tools.account.Account.decide`); callers turn an `OrderRequest` into an `OrderCommand` with
`command_of` and send it over the bus. There is no other path to the simulator.

The authority answers input errors with a stable `code` and changes nothing: `invalid_order` (a
field combination that cannot work), `no_price` (a market order for a symbol with no known price),
`duplicate_client_order_id` (the id was used for a different order), `unknown_order`,
`order_not_open` (docs/ERROR_CATALOG.md).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.account import OrderCommand
from schemas.common import Money, Side
from schemas.orders import CLIENT_ORDER_ID, OrderType, OrderView, Origin, TimeInForce
from schemas.signals import SYMBOL_PATTERN

__all__ = [
    "CancelResult",
    "OrderPreview",
    "OrderRequest",
    "OrderView",
    "PlaceResult",
    "command_of",
]


class OrderRequest(BaseModel):
    """An order as a caller (an MCP tool, the agent) asks for it."""

    symbol: str = Field(pattern=SYMBOL_PATTERN)
    side: Side
    quantity: Decimal = Field(gt=0, max_digits=20, decimal_places=10)
    order_type: OrderType = "market"
    limit_price: Decimal | None = Field(default=None, gt=0)
    stop_price: Decimal | None = Field(default=None, gt=0)
    time_in_force: TimeInForce = "DAY"
    client_order_id: str | None = Field(default=None, pattern=CLIENT_ORDER_ID)
    replaces: str | None = Field(default=None, pattern=CLIENT_ORDER_ID)
    rationale: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _prices_fit_the_type(self) -> OrderRequest:
        t = self.order_type
        if t in ("limit", "stop_limit") and self.limit_price is None:
            raise ValueError(f"a {t} order needs limit_price")
        if t in ("stop", "stop_limit") and self.stop_price is None:
            raise ValueError(f"a {t} order needs stop_price")
        if t in ("market", "stop") and self.limit_price is not None:
            raise ValueError(f"a {t} order takes no limit_price")
        if t in ("market", "limit") and self.stop_price is not None:
            raise ValueError(f"a {t} order takes no stop_price")
        return self


class OrderPreview(BaseModel):
    symbol: str
    side: Side
    quantity: Money
    order_type: OrderType
    estimated_price: Money | None = Field(
        description="The price the gate values the order at: the last market price, or the worse (higher) of a "
        "limit/stop order's own price and the market's (a marketable limit fills at the market)"
    )
    estimated_notional: Money | None
    estimated_fee: Money | None
    approved: bool = Field(description="What the risk gate would say now (previews are not counted in the order rate)")
    reason_code: str
    message: str
    trading_state: str


class PlaceResult(BaseModel):
    client_order_id: str
    submitted: bool = Field(description="True when the order went to the simulator; False when denied or a repeat")
    duplicate: bool = False
    reason_code: str
    message: str
    order: OrderView | None = None


class CancelResult(BaseModel):
    client_order_id: str
    cancel_requested: bool
    order: OrderView


def command_of(
    request: OrderRequest, kind: Literal["check", "place"], origin: Origin, correlation_id: str | None = None
) -> OrderCommand:
    """The authority command for `request`."""
    return OrderCommand(
        kind=kind,
        symbol=request.symbol,
        side=request.side,
        quantity=request.quantity,
        order_type=request.order_type,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
        time_in_force=request.time_in_force,
        client_order_id=request.client_order_id,
        replaces=request.replaces,
        origin=origin,
        rationale=request.rationale,
        correlation_id=correlation_id,
    )
