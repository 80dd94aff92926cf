"""The one argument set every order-shaped tool takes, and its conversion to `tools.orders.OrderRequest`."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError

from mcp_server.tooling import SymbolArg, ToolFailure, _upper
from schemas.orders import CLIENT_ORDER_ID
from tools.orders import OrderRequest

SideArg = Annotated[Literal["buy", "sell"], Field(description="Selling more than held goes short")]
QuantityArg = Annotated[
    Decimal, Field(gt=0, le=Decimal(10**9), max_digits=20, decimal_places=10, description="Units, e.g. 10 or 0.5")
]
OrderTypeArg = Annotated[
    Literal["market", "limit", "stop", "stop_limit"],
    Field(description="limit needs limit_price, stop needs stop_price, stop_limit both"),
]
LimitPriceArg = Annotated[Decimal | None, Field(default=None, gt=0)]
StopPriceArg = Annotated[Decimal | None, Field(default=None, gt=0)]
TimeInForceArg = Annotated[
    Literal["DAY", "GTC", "IOC", "FOK"],
    Field(description="IOC fills what it can now, FOK all now or nothing"),
    BeforeValidator(_upper),
]
ClientOrderIdArg = Annotated[
    str | None,
    Field(
        default=None,
        pattern=CLIENT_ORDER_ID,
        description="Your id: a retry with the same id never places the order twice",
    ),
]


def order_request(
    *,
    symbol: str,
    side: str,
    quantity: Decimal,
    order_type: str,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    time_in_force: str,
    client_order_id: str | None,
) -> OrderRequest:
    """The request, or an `invalid_arguments` tool error when the fields do not fit together."""
    try:
        return OrderRequest(
            symbol=symbol,
            side=side,
            quantity=quantity,
            order_type=order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
        )
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ToolFailure("invalid_arguments", f"{problems}. Fix the order and call again.") from exc


__all__ = [
    "ClientOrderIdArg",
    "LimitPriceArg",
    "OrderTypeArg",
    "QuantityArg",
    "SideArg",
    "StopPriceArg",
    "SymbolArg",
    "TimeInForceArg",
    "order_request",
]
