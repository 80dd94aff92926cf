"""The one argument set every order-shaped tool takes, and its conversion to `tools.orders.OrderRequest`."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError

from mcp_server.tooling import SymbolArg, ToolFailure, _upper
from schemas.orders import CLIENT_ORDER_ID
from tools.orders import OrderRequest

SideArg = Annotated[Literal["buy", "sell"], Field(description="buy or sell (sell more than you hold to go short)")]
QuantityArg = Annotated[
    Decimal, Field(gt=0, le=Decimal(10**9), max_digits=20, decimal_places=10, description="Units, e.g. 10 or 0.5")
]
OrderTypeArg = Annotated[
    Literal["market", "limit", "stop", "stop_limit"],
    Field(
        description="market (at the next price), limit (needs limit_price), stop (needs stop_price), "
        "stop_limit (needs both)"
    ),
]
LimitPriceArg = Annotated[
    Decimal | None, Field(default=None, gt=0, description="Limit price; only for limit and stop_limit orders")
]
StopPriceArg = Annotated[
    Decimal | None, Field(default=None, gt=0, description="Stop (trigger) price; only for stop and stop_limit orders")
]
TimeInForceArg = Annotated[
    Literal["DAY", "GTC", "IOC", "FOK"],
    Field(description="DAY (until the end of the day), GTC, IOC (fill what you can now), FOK (all now or nothing)"),
    BeforeValidator(_upper),
]
ClientOrderIdArg = Annotated[
    str | None,
    Field(
        default=None,
        pattern=CLIENT_ORDER_ID,
        description="Your id for this order (letters, digits . _ : -, up to 64). Retrying with the same id "
        "and the same order never places it twice",
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
