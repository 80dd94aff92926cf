"""orders: preview (with a confirmation token), place, cancel, list and get simulated orders.

Every order goes through the account's one risk gate (`tools.orders.OrderOperations`); a denial is
published on `decisions.risk_denied` and comes back as a `risk_denied` tool error. Read-only mode
leaves this whole group out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from mcp.server.apps import client_supports_apps
from mcp.server.elicitation import AcceptedElicitation, CancelledElicitation, DeclinedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from bus.account_view import AppState
from execsim.engine.config import FeeModel
from execsim.settings import ExecSimSettings
from mcp_server.auth import principal_of
from mcp_server.tooling import (
    CANCELS_ORDER,
    PLACES_ORDER,
    READ_ONLY,
    Limit,
    SymbolFilter,
    ToolFailure,
    ToolOptions,
    add_tools,
    app,
    ask_authority,
    committed,
    money,
    options_of,
    price,
    qty,
    reply,
)
from mcp_server.toolsets import Toolset
from mcp_server.toolsets.confirmation import (
    TICKET_URI,
    Choice,
    Confirmations,
    PersonConfirms,
    choose,
    risk_version,
    ticket_text,
)
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
from schemas.orders import CLIENT_ORDER_ID, ConfirmedBy
from tools.account import FINISHED_KEPT
from tools.orders import CancelResult, OrderPreview, OrderRequest, OrderView, PlaceResult, command_of


class PreviewResult(BaseModel):
    preview: OrderPreview
    order: dict[str, Any] = Field(description="The exact order arguments previewed (the order ticket places these)")
    confirm_with: Literal["elicitation", "order_ticket", "token", "auto", "unavailable"] = Field(
        description="How place_order gets its yes for this client (get_safety_status says why)"
    )
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
        description="From preview_order, for exactly this order (when the token is how this client confirms)",
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


def _p(value: Decimal | None) -> str:
    return "unknown" if value is None else price(value)


def _money(value: Decimal | None) -> str:
    return "unknown" if value is None else money(value)


def order_terms(order_type: str, limit_price: Decimal | None, stop_price: Decimal | None) -> str:
    """The order type with its prices, each written once: `market`, `limit 150`, `stop 145`, `stop 145 limit 150`."""
    if order_type == "limit":
        return f"limit {_p(limit_price)}"
    if order_type == "stop":
        return f"stop {_p(stop_price)}"
    if order_type == "stop_limit":
        return f"stop {_p(stop_price)} limit {_p(limit_price)}"
    return order_type


def _describe(o: OrderView) -> str:
    fill = f", filled {qty(o.filled_quantity)} @ {price(o.avg_fill_price)}" if o.avg_fill_price is not None else ""
    why = f" ({o.reason})" if o.reason else ""
    who = f"; confirmed by {o.confirmed_by} ({o.principal})" if o.confirmed_by else ""
    terms = order_terms(o.order_type, o.limit_price, o.stop_price)
    order = f"{o.side} {qty(o.quantity)} {o.symbol} {terms} {o.time_in_force}"
    return f"{o.client_order_id}: {order} — {o.status}{why}{fill}{who}"


def choice_for(ctx: Context, options: ToolOptions) -> Choice:
    """How this client's orders are confirmed under the server's policy (depends on what the client declared)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities is not None and capabilities.elicitation is not None
    elicitation = elicitation and (capabilities.elicitation.form is not None or capabilities.elicitation.url is None)  # type: ignore[union-attr]
    apps = options.apps and client_supports_apps(ctx)
    return choose(options.confirmation, elicitation=elicitation, apps=apps)


def confirmations(ctx: Context) -> Confirmations:
    options = options_of(ctx.mcp_server)
    return Confirmations(
        app(ctx).clock, options.confirmation_ttl_seconds, options.price_band_bps, options.confirmation_key
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
    """Estimated price, notional, fee and risk verdict of an order, and how it gets confirmed (a person,
    or the confirmation_token for place_order). Places nothing."""
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
    state = app(ctx)
    options = options_of(ctx.mcp_server)
    answer = await ask_authority(state, command_of(request, "check", options.origin))
    if answer.code in INPUT_ERRORS and answer.code != "no_price":
        raise _failure(answer)
    preview = preview_of(request, answer)
    if preview.estimated_price is None:
        raise ToolFailure("no_price", f"no price is known for {symbol} yet: wait for a signal or use a limit order")
    choice = choice_for(ctx, options)
    token, expires = (None, None)
    if preview.approved and choice.method != "auto":
        market = state.account.last_price(request.symbol)
        token, expires = confirmations(ctx).issue(request, risk_version(state.account), market)
    result = PreviewResult(
        preview=preview,
        order=request.model_dump(mode="json", exclude={"replaces", "rationale"}),
        confirm_with=choice.method,
        confirmation_required=choice.method != "auto",
        confirmation_token=token,
        token_expires_at=expires,
    )
    terms = order_terms(request.order_type, request.limit_price, request.stop_price)
    head = (
        f"Preview: {side} {qty(request.quantity)} {symbol} {terms} at about {price(preview.estimated_price)} "
        f"(notional {_money(preview.estimated_notional)}, fee about {_money(preview.estimated_fee)}); trading state "
        f"{preview.trading_state}."
    )
    if not preview.approved:
        tail = (
            f"Risk gate: would DENY ({preview.reason_code}: {preview.message}). No token: change the order "
            "(smaller, reducing, a limit) and preview again, or do not trade."
        )
    elif choice.method == "elicitation":
        tail = (
            "Risk gate: would approve. To place it, call place_order with the same arguments: the user is asked "
            "to confirm in a form, and nothing is placed without their yes."
        )
    elif choice.method == "order_ticket":
        tail = (
            "Risk gate: would approve. The user confirms in the order ticket shown with this preview (its Confirm "
            "button places exactly this order); place_order from the model is refused under this policy."
        )
    elif choice.method == "unavailable":
        tail = f"Risk gate: would approve, but no order can be placed from this client: {choice.why}."
    elif choice.method == "auto":
        tail = "Risk gate: would approve. place_order with the same arguments places it (no confirmation here)."
    else:
        assert expires is not None
        tail = (
            f"Risk gate: would approve. To place it, call place_order with the same arguments and "
            f"confirmation_token={token} (valid until {expires:%H:%M:%S}Z, while the price stays within "
            f"{options.price_band_bps:g} bps)."
        )
    return reply(result, f"{head}\n{tail}")


@dataclass(frozen=True)
class Quote:
    """What the person is shown, taken before they are asked: the market price and the risk version."""

    market: Decimal | None
    version: str
    asked_at: datetime


@dataclass(frozen=True)
class NotAsked:
    """The confirmation resolver asked nobody: this client confirms another way, or the gate denies anyway."""

    choice: Choice
    denied: OrderReply | None = None


def market_quote(ctx: Context, symbol: SymbolArg) -> Quote:
    state = app(ctx)
    return Quote(state.account.last_price(symbol), risk_version(state.account), state.clock.now())


async def ask_person(
    ctx: Context,
    quote: Annotated[Quote, Resolve(market_quote)],
    symbol: SymbolArg,
    side: SideArg,
    quantity: QuantityArg,
    order_type: OrderTypeArg,
    limit_price: LimitPriceArg,
    stop_price: StopPriceArg,
    time_in_force: TimeInForceArg,
    client_order_id: ClientOrderIdArg,
) -> Elicit[PersonConfirms] | NotAsked:
    """Ask the client's user to confirm exactly this order, when this client and policy confirm by elicitation."""
    options = options_of(ctx.mcp_server)
    choice = choice_for(ctx, options)
    if choice.method != "elicitation":
        return NotAsked(choice)
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
    answer = await ask_authority(app(ctx), command_of(request, "check", options.origin))
    if answer.code in INPUT_ERRORS:
        raise _failure(answer)
    if not answer.ok:  # nobody is asked to confirm an order the gate would deny
        return NotAsked(choice, denied=answer)
    return Elicit(ticket_text(request, preview_of(request, answer)), PersonConfirms)


PersonArg = Annotated[ElicitationResult[PersonConfirms], Resolve(ask_person)]


def _confirmed_by_person(ctx: Context, person: Any, quote: Quote, request: OrderRequest) -> None:
    """Raise unless the person accepted, in time, at a price still inside the band."""
    if isinstance(person, CancelledElicitation):
        raise ToolFailure("confirmation_cancelled", "the user dismissed the confirmation form; nothing was placed")
    if isinstance(person, DeclinedElicitation) or not (
        isinstance(person, AcceptedElicitation) and isinstance(person.data, PersonConfirms) and person.data.confirm
    ):
        raise ToolFailure(
            "confirmation_declined",
            "the user did not confirm this order; nothing was placed. Do not place it again unless they ask",
        )
    options = options_of(ctx.mcp_server)
    waited = (app(ctx).clock.now() - quote.asked_at).total_seconds()
    if waited > options.elicitation_timeout_seconds:
        raise ToolFailure(
            "confirmation_timeout",
            f"the user answered after {waited:.0f} s (more than {options.elicitation_timeout_seconds:g} s); "
            "nothing was placed: call place_order again to ask them at the current price",
        )
    state = app(ctx)
    moved = Confirmations.moved_bps(quote.market, state.account.last_price(request.symbol))
    if moved is not None and moved > options.price_band_bps:
        raise ToolFailure(
            "confirmation_price_moved",
            f"{request.symbol} moved {moved:.0f} bps while the user was deciding (more than the "
            f"{options.price_band_bps:g} bps band); nothing was placed: call place_order again to ask at the new price",
        )
    if risk_version(state.account) != quote.version:
        raise ToolFailure(
            "confirmation_stale",
            "the risk limits or the trading state changed while the user was deciding; nothing was placed: "
            "call place_order again",
        )


async def place_order(
    ctx: Context,
    quote: Annotated[Quote, Resolve(market_quote)],
    person: PersonArg,
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
    """Place a SIMULATED order. A person confirms it where the client can; otherwise pass
    preview_order's confirmation_token. Risk-checked again; the same client_order_id never places twice."""
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
    not_asked = person.data if isinstance(person, AcceptedElicitation) and isinstance(person.data, NotAsked) else None
    method = not_asked.choice.method if not_asked is not None else "elicitation"
    confirmed_by: ConfirmedBy
    if not_asked is not None and not_asked.denied is not None:
        raise _denied(not_asked.denied.code, not_asked.denied.message, placed_nothing_reason="the user was not asked")
    if method == "elicitation":
        _confirmed_by_person(ctx, person, quote, request)
        confirmed_by = "elicitation"
    elif method == "token":
        state = app(ctx)
        signature = confirmations(ctx).verify(
            request, confirmation_token, risk_version(state.account), state.account.last_price(request.symbol)
        )
        if request.client_order_id is None:  # one token, one order: a retry with it is the same order
            request = request.model_copy(update={"client_order_id": f"{options.origin}-{signature[:24]}"})
        confirmed_by = "token"
    elif method == "auto":
        confirmed_by = "auto"
    elif method == "order_ticket":
        raise ToolFailure(
            "confirmation_in_ticket",
            "this client confirms orders in the order ticket: call preview_order and let the user press Confirm "
            "in it; place_order does not place orders from the model under this policy",
        )
    else:
        assert not_asked is not None
        raise ToolFailure("confirmation_unavailable", f"nothing was placed: {not_asked.choice.why}")
    return await place_confirmed(ctx, request, confirmed_by)


async def place_confirmed(ctx: Context, request: OrderRequest, confirmed_by: ConfirmedBy) -> CallToolResult:
    """Send a confirmed order to the authority; past this point a timeout no longer applies (it may be placed)."""
    options = options_of(ctx.mcp_server)
    committed()
    command = command_of(request, "place", options.origin).model_copy(
        update={"confirmed_by": confirmed_by, "principal": principal_of(ctx)}
    )
    answer = await ask_authority(app(ctx), command)
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
        raise _denied(result.reason_code, result.message)
    assert result.order is not None
    if result.duplicate:
        text = f"Already placed earlier (same client_order_id); nothing new sent.\n{_describe(result.order)}"
    else:
        text = (
            f"Placed (simulated): {_describe(result.order)}.\nget_order {result.client_order_id} shows fills; "
            "cancel_order cancels it while it is open."
        )
    return reply(result, text)


def _denied(code: str, message: str, placed_nothing_reason: str | None = None) -> ToolFailure:
    where = (
        f" ({placed_nothing_reason})"
        if placed_nothing_reason
        else " (recorded on decisions.risk_denied by the account authority)"
    )
    return ToolFailure(
        "risk_denied",
        f"{code}: {message}. The order was not placed{where}; do not retry it unchanged — get_risk_status "
        "shows the headroom",
    )


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
        Literal["open", "all"],
        Field(
            description="open: not yet filled, canceled, expired or rejected; all: the open ones and the newest "
            "1,000 finished ones (older orders stay in the account's journal)"
        ),
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
    account = app(ctx).account
    order = account.orders.get(client_order_id)
    if order is None and account.knows(client_order_id):
        raise ToolFailure(
            "order_archived",
            f"order {client_order_id} finished before the newest {FINISHED_KEPT:,} finished orders (or was denied "
            "before the newest denials) this server keeps in memory; the account's journal holds its whole history",
        )
    if order is None:
        raise ToolFailure("unknown_order", f"no order {client_order_id}{_HINTS['unknown_order']}")
    return reply(OrderResult(order=order), _describe(order))


def _register(server: MCPServer[AppState], _state: AppState) -> None:
    # With the ticket on, hosts that render MCP Apps show preview_order's result in the order ticket
    ticket = {"ui": {"resourceUri": TICKET_URI}} if options_of(server).apps else None
    add_tools(server, preview_order, annotations=READ_ONLY, meta=ticket)
    add_tools(server, list_orders, get_order, annotations=READ_ONLY)
    add_tools(server, place_order, annotations=PLACES_ORDER)
    add_tools(server, cancel_order, annotations=CANCELS_ORDER)


TOOLSET = Toolset("orders", "Preview, place, cancel and look up simulated orders", _register, read_only=False)
