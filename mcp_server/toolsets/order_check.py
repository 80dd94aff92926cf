"""order_check: the pre-trade gate as a dry run (check_order).

A read-only server's way to ask the gate about an order; with the orders toolset, preview_order does the same
(and more), so the defaults offer one or the other (`mcp_server.toolsets.DEFAULT`, `DEFAULT_READ_ONLY`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from bus.account_view import AppState
from mcp_server.tooling import READ_ONLY, ToolFailure, add_tools, app, ask_authority, options_of, price, qty, reply
from mcp_server.toolsets import Toolset
from mcp_server.toolsets.order_args import (
    ClientOrderIdArg,
    LimitPriceArg,
    OrderTypeArg,
    QuantityArg,
    SideArg,
    StopPriceArg,
    SymbolArg,
    TimeInForceArg,
    order_request,
)
from schemas.common import Money
from tools.orders import command_of

ZERO = Decimal(0)


class CheckResult(BaseModel):
    approved: bool
    reason_code: str
    message: str
    trading_state: str
    price_used: Money | None = Field(
        description="The price the order is valued at: the worse (higher) of its limit/stop and the last market price"
    )
    position_now: Money = Field(description="Projected position: held plus every open order filled")
    position_after: Money


async def check_order(
    ctx: Context,
    symbol: SymbolArg,
    side: SideArg,
    quantity: QuantityArg,
    order_type: OrderTypeArg = "market",
    limit_price: LimitPriceArg = None,
    stop_price: StopPriceArg = None,
    time_in_force: TimeInForceArg = "DAY",
    client_order_id: ClientOrderIdArg = None,
) -> Annotated[CallToolResult, CheckResult]:
    """Dry run of the pre-trade risk gate: would this order be approved, or denied with which
    reason code (max_position, reducing_only, ...), and the position before and after. Places
    nothing and does not count toward the order rate."""
    state = app(ctx)
    request = order_request(
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit_price,
        stop_price=stop_price,
        time_in_force=time_in_force,
        client_order_id=client_order_id,
    )
    answer = await ask_authority(state, command_of(request, "check", options_of(ctx.mcp_server).origin))
    if answer.code == "authority_unavailable":
        raise ToolFailure(answer.code, answer.message)
    if answer.price_used is None and order_type == "market":
        raise ToolFailure("no_price", f"no price is known for {symbol} yet: wait for a signal or use a limit order")
    now = answer.position_now if answer.position_now is not None else ZERO
    after = answer.position_after if answer.position_after is not None else now
    result = CheckResult(
        approved=answer.ok,
        reason_code=answer.code,
        message=answer.message,
        trading_state=answer.trading_state.value,
        price_used=answer.price_used,
        position_now=now,
        position_after=after,
    )
    head = "would be APPROVED" if answer.ok else f"would be DENIED ({answer.code}: {answer.message})"
    at = f" at {price(answer.price_used)}" if answer.price_used is not None else ""
    text = (
        f"{side} {qty(quantity)} {symbol} {order_type}{at} {head}. Position {qty(now)} -> {qty(after)} "
        f"(held plus open orders); trading state {answer.trading_state.value}. "
        "Dry run by the account authority: nothing was placed."
    )
    return reply(result, text)


def _register(server: MCPServer[AppState], _state: AppState) -> None:
    add_tools(server, check_order, annotations=READ_ONLY)


TOOLSET = Toolset("order_check", "The pre-trade risk gate as a dry run (check_order)", _register)
