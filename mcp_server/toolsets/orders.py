"""orders: preview (with a confirmation token), place, cancel, list and get simulated orders.

Every order goes through the account's one risk gate (`tools.orders.OrderOperations`); a denial is
published on `decisions.risk_denied` and comes back as a `risk_denied` tool error. Read-only mode
leaves this whole group out.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from execsim.engine.config import FeeModel
from execsim.settings import ExecSimSettings
from mcp_server.state import AppState
from mcp_server.tooling import (
    CANCELS_ORDER,
    PLACES_ORDER,
    READ_ONLY,
    Limit,
    SymbolFilter,
    ToolFailure,
    add_tools,
    app,
    ask_authority,
    options_of,
    reply,
)
from mcp_server.toolsets import Toolset
from mcp_server.toolsets.confirmation import Confirmations
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
from schemas.account import OrderCommand, OrderReply
from schemas.orders import CLIENT_ORDER_ID
from tools.orders import CancelResult, OrderPreview, OrderRequest, OrderView, PlaceResult, command_of


class PreviewResult(BaseModel):
    preview: OrderPreview
    confirmation_required: bool
    confirmation_token: str | None = Field(
        description="Pass to place_order with the same arguments; null when the risk gate would deny the order"
    )
    token_expires_at: datetime | None


class OrdersResult(BaseModel):
    orders: list[OrderView]


class OrderResult(BaseModel):
    order: OrderView


OrderIdArg = Annotated[str, Field(pattern=CLIENT_ORDER_ID, description="The order's client_order_id")]
TokenArg = Annotated[
    str | None,
    Field(
        default=None,
        max_length=200,
        description="The confirmation_token preview_order returned for exactly this order (required unless "
        "the operator turned confirmation off)",
    ),
]
_fees: FeeModel | None = None


def _fee(quantity: Decimal, price: Decimal) -> Decimal:
    global _fees
    if _fees is None:
        _fees = FeeModel(ExecSimSettings().engine_config())  # what the simulator charges, from the same env
    return _fees.fee(quantity, price)


_HINTS = {
    "duplicate_client_order_id": "; choose a new client_order_id",
    "unknown_order": "; list_orders shows the orders and their ids",
    "order_not_open": "; get_order shows its status",
}
INPUT_ERRORS = frozenset(
    {
        "invalid_order",
        "invalid_quantity",
        "invalid_price",
        "no_price",
        "duplicate_client_order_id",
        "unknown_order",
        "order_not_open",
        "authority_unavailable",
    }
)


def _failure(answer: OrderReply) -> ToolFailure:
    return ToolFailure(answer.code, f"{answer.message}{_HINTS.get(answer.code, '')}")


def preview_of(request: OrderRequest, answer: OrderReply) -> OrderPreview:
    price = answer.price_used
    return OrderPreview(
        symbol=request.symbol,
        side=request.side,
        quantity=request.quantity,
        order_type=request.order_type,
        estimated_price=price,
        estimated_notional=request.quantity * price if price is not None else None,
        estimated_fee=_fee(request.quantity, price) if price is not None else None,
        approved=answer.ok,
        reason_code=answer.code,
        message=answer.message,
        trading_state=answer.trading_state.value,
    )


def _describe(o: OrderView) -> str:
    price = f" limit {o.limit_price}" if o.limit_price is not None else ""
    price += f" stop {o.stop_price}" if o.stop_price is not None else ""
    fill = f", filled {o.filled_quantity} @ {o.avg_fill_price}" if o.avg_fill_price is not None else ""
    why = f" ({o.reason})" if o.reason else ""
    return (
        f"{o.client_order_id}: {o.side} {o.quantity} {o.symbol} {o.order_type}{price} {o.time_in_force} "
        f"— {o.status}{why}{fill}"
    )


async def preview_order(
    ctx: Context,
    symbol: SymbolArg,
    side: SideArg,
    quantity: QuantityArg,
    order_type: OrderTypeArg = "market",
    limit_price: LimitPriceArg = None,
    stop_price: StopPriceArg = None,
    time_in_force: TimeInForceArg = "DAY",
    client_order_id: ClientOrderIdArg = None,
) -> Annotated[CallToolResult, PreviewResult]:
    """What an order would do, without placing it: the estimated price, notional and fee, the risk
    gate's verdict now, and a confirmation_token. Show the preview to the user; to place the order,
    call place_order with the same arguments and that token before it expires. Changes nothing."""
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
    answer = await ask_authority(app(ctx), command_of(request, "check", options_of(ctx.mcp_server).origin))
    if answer.code in INPUT_ERRORS and answer.code != "no_price":
        raise _failure(answer)
    preview = preview_of(request, answer)
    if preview.estimated_price is None:
        raise ToolFailure("no_price", f"no price is known for {symbol} yet: wait for a signal or use a limit order")
    options = options_of(ctx.mcp_server)
    token, expires = (None, None)
    if preview.approved:
        token, expires = Confirmations(app(ctx).clock, options.confirmation_ttl_seconds).issue(request)
    result = PreviewResult(
        preview=preview,
        confirmation_required=options.require_confirmation,
        confirmation_token=token,
        token_expires_at=expires,
    )
    head = (
        f"Preview: {side} {quantity} {symbol} {order_type} at about {preview.estimated_price} "
        f"(notional {preview.estimated_notional}, fee about {preview.estimated_fee}); trading state "
        f"{preview.trading_state}."
    )
    if preview.approved:
        assert expires is not None
        tail = (
            f"Risk gate: would approve. To place it, call place_order with the same arguments and "
            f"confirmation_token={token} (valid until {expires:%H:%M:%S}Z)."
        )
    else:
        tail = (
            f"Risk gate: would DENY ({preview.reason_code}: {preview.message}). No token: change the order "
            "(smaller, reducing, a limit) and preview again, or do not trade."
        )
    return reply(result, f"{head}\n{tail}")


async def place_order(
    ctx: Context,
    symbol: SymbolArg,
    side: SideArg,
    quantity: QuantityArg,
    order_type: OrderTypeArg = "market",
    limit_price: LimitPriceArg = None,
    stop_price: StopPriceArg = None,
    time_in_force: TimeInForceArg = "DAY",
    client_order_id: ClientOrderIdArg = None,
    confirmation_token: TokenArg = None,
) -> Annotated[CallToolResult, PlaceResult]:
    """Place a SIMULATED order on the paper account (no real money). Needs the confirmation_token
    from preview_order for exactly these arguments. The risk gate checks it again; a denial comes
    back as a risk_denied error with the reason. Retrying with the same client_order_id (or the same
    token) returns the order already placed instead of placing a second one."""
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
    options = options_of(ctx.mcp_server)
    if options.require_confirmation or confirmation_token:
        signature = Confirmations(app(ctx).clock, options.confirmation_ttl_seconds).verify(request, confirmation_token)
        if request.client_order_id is None:  # one token, one order: a retry with it is the same order
            request = request.model_copy(update={"client_order_id": f"{options.origin}-{signature[:24]}"})
    answer = await ask_authority(app(ctx), command_of(request, "place", options.origin))
    if answer.code in INPUT_ERRORS:
        raise _failure(answer)
    assert answer.client_order_id is not None
    result = PlaceResult(
        client_order_id=answer.client_order_id,
        submitted=answer.submitted,
        duplicate=answer.duplicate and answer.ok,
        reason_code=answer.code,
        message=answer.message,
        order=answer.order,
    )
    if not result.submitted and not result.duplicate:
        raise ToolFailure(
            "risk_denied",
            f"{result.reason_code}: {result.message}. The order was not placed (recorded on decisions.risk_denied "
            "by the account authority); "
            "do not retry it unchanged — get_risk_status shows the headroom",
        )
    assert result.order is not None
    if result.duplicate:
        text = f"Already placed earlier (same client_order_id); nothing new sent.\n{_describe(result.order)}"
    else:
        text = (
            f"Placed (simulated): {_describe(result.order)}.\nget_order {result.client_order_id} shows fills; "
            "cancel_order cancels it while it is open."
        )
    return reply(result, text)


async def cancel_order(ctx: Context, client_order_id: OrderIdArg) -> Annotated[CallToolResult, CancelResult]:
    """Ask the simulator to cancel an open order. Allowed in every trading state (even HALTED).
    The order shows `canceled` once the simulator confirms (get_order)."""
    state = app(ctx)
    command = OrderCommand(
        kind="cancel",
        client_order_id=client_order_id,
        origin=options_of(ctx.mcp_server).origin,
        reason="canceled over MCP",
    )
    answer = await ask_authority(state, command)
    if not answer.ok:
        raise _failure(answer)
    assert answer.order is not None
    result = CancelResult(client_order_id=client_order_id, cancel_requested=True, order=answer.order)
    return reply(result, f"Cancel requested for {_describe(result.order)}")


async def list_orders(
    ctx: Context,
    status: Annotated[
        Literal["open", "all"], Field(description="open: not yet filled, canceled, expired or rejected; all: every one")
    ] = "open",
    symbol: SymbolFilter = None,
    limit: Limit = 50,
) -> Annotated[CallToolResult, OrdersResult]:
    """Orders on the paper account, newest first, from every origin (bridge, MCP, agent): status,
    filled quantity and average fill price."""
    account = app(ctx).account
    chosen = [
        o
        for o in reversed(account.orders.values())
        if (status == "all" or o.is_open) and (symbol is None or o.symbol == symbol)
    ]
    result = OrdersResult(orders=chosen[:limit])
    if not result.orders:
        return reply(result, f"No {'open ' if status == 'open' else ''}orders{f' for {symbol}' if symbol else ''}.")
    return reply(result, "\n".join([f"{len(result.orders)} order(s), newest first:", *map(_describe, result.orders)]))


async def get_order(ctx: Context, client_order_id: OrderIdArg) -> Annotated[CallToolResult, OrderResult]:
    """One order by its client_order_id: status, filled quantity, average fill price and, when it
    ended without a fill, the reason."""
    order = app(ctx).account.orders.get(client_order_id)
    if order is None:
        raise ToolFailure("unknown_order", f"no order {client_order_id}{_HINTS['unknown_order']}")
    return reply(OrderResult(order=order), _describe(order))


def _register(server: MCPServer[AppState], _state: AppState) -> None:
    add_tools(server, preview_order, list_orders, get_order, annotations=READ_ONLY)
    add_tools(server, place_order, annotations=PLACES_ORDER)
    add_tools(server, cancel_order, annotations=CANCELS_ORDER)


TOOLSET = Toolset("orders", "Preview, place, cancel and look up simulated orders", _register, read_only=False)
