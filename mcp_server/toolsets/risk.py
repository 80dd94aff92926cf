"""risk: the limits, the trading state with the headroom left, and the pre-trade gate as a dry run."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from mcp_server.state import AppState
from mcp_server.tooling import READ_ONLY, ToolFailure, add_tools, app, ask_authority, gate_of, options_of, reply
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
from tools.risk import RiskLimits

ZERO = Decimal(0)


class LimitsResult(BaseModel):
    limits: RiskLimits
    trading_state: str


class Headroom(BaseModel):
    limit: str = Field(description="The limit's name, with the symbol for per-symbol position limits")
    limit_value: Money
    used: Money
    headroom: Money = Field(description="limit_value - used; 0 or less means the limit is reached")
    used_fraction: float | None = Field(description="used / limit_value")


class RiskStatus(BaseModel):
    trading_state: str = Field(description="ACTIVE, REDUCING (only orders that shrink a position) or HALTED")
    state_reason: str
    equity: Money
    peak_equity: Money | None
    drawdown: float = Field(description="Fraction of equity below its peak (0.1 = 10 %)")
    day_start_equity: Money | None
    daily_pnl: Money = Field(description="Equity now minus the day's first equity (UTC day)")
    orders_in_window: int
    open_orders: int
    gross_exposure: Money
    headroom: list[Headroom]


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


def _row(name: str, limit: Decimal | int | None, used: Decimal | int) -> Headroom | None:
    if limit is None:
        return None
    limit_d, used_d = Decimal(limit), Decimal(used)
    return Headroom(
        limit=name,
        limit_value=limit_d,
        used=used_d,
        headroom=limit_d - used_d,
        used_fraction=round(float(used_d / limit_d), 6) if limit_d else None,
    )


def risk_status(state: AppState) -> RiskStatus:
    gate = gate_of(state)
    lim = gate.limits
    equity = state.portfolio.equity()
    peak, day_start = gate.peak_equity, gate.day_start_equity
    drawdown = float((peak - equity) / peak) if peak and peak > 0 and equity < peak else 0.0
    daily = equity - day_start if day_start is not None else ZERO
    account = state.account
    gross = account.gross_exposure()
    open_orders = account.open_order_count()
    in_window = gate.orders_in_window(state.clock.now())
    rows: list[Headroom | None] = [
        _row("max_drawdown", lim.max_drawdown, Decimal(str(round(drawdown, 6)))),
        _row("daily_loss_limit", lim.daily_loss_limit, max(ZERO, -daily)),
        _row("max_gross_exposure", lim.max_gross_exposure, gross),
        _row("max_open_orders", lim.max_open_orders, open_orders),
        _row("max_orders_per_window", lim.max_orders_per_window, in_window),
    ]
    symbols = sorted(set(state.portfolio.positions) | set(account.resting))
    for symbol in symbols:
        # the worst case the gate holds the limit to: the position with every resting order of one side filled
        rows.append(_row(f"max_position:{symbol}", lim.position_limit(symbol), account.worst_position(symbol)))
    return RiskStatus(
        trading_state=gate.state.value,
        state_reason=gate.state_reason,
        equity=equity,
        peak_equity=peak,
        drawdown=round(drawdown, 6),
        day_start_equity=day_start,
        daily_pnl=daily,
        orders_in_window=in_window,
        open_orders=open_orders,
        gross_exposure=gross,
        headroom=[r for r in rows if r is not None],
    )


def _limits_text(limits: RiskLimits) -> str:
    shown: dict[str, Any] = limits.model_dump(mode="json", exclude_defaults=False)
    parts = [f"{k}={v}" for k, v in shown.items() if v not in (None, {}, [])]
    return ", ".join(parts)


async def get_risk_limits(ctx: Context) -> Annotated[CallToolResult, LimitsResult]:
    """Every risk limit the pre-trade gate enforces on this paper account (null = switched off):
    position, order quantity and notional limits (global and per symbol), allowed symbols, gross
    exposure, open orders, order rate, daily loss and max drawdown with the state they trigger.
    Only the operator changes them."""
    gate = gate_of(app(ctx))
    result = LimitsResult(limits=gate.limits, trading_state=gate.state.value)
    return reply(result, f"Trading state {gate.state.value}. Limits: {_limits_text(gate.limits)}")


async def get_risk_status(ctx: Context) -> Annotated[CallToolResult, RiskStatus]:
    """The risk picture now: trading_state (ACTIVE / REDUCING / HALTED) and why, equity, drawdown
    from the peak, today's PnL, and the headroom left under each limit that is switched on."""
    status = risk_status(app(ctx))
    lines = [
        f"Trading state {status.trading_state}{f' ({status.state_reason})' if status.state_reason else ''}.",
        f"Equity {status.equity}, drawdown {status.drawdown:.2%}, daily PnL {status.daily_pnl}; "
        f"{status.open_orders} open order(s), {status.orders_in_window} order(s) in the rate window.",
    ]
    for h in status.headroom:
        used = f" ({h.used_fraction:.0%} used)" if h.used_fraction is not None else ""
        lines.append(f"{h.limit}: used {h.used} of {h.limit_value}, headroom {h.headroom}{used}")
    if not status.headroom:
        lines.append("No limit with a measurable use is switched on beyond the defaults.")
    return reply(status, "\n".join(lines))


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
    """Ask the pre-trade risk gate about an order without placing it (a dry run): approved or
    denied with a stable reason code (max_position, max_order_notional, trading_halted, ...) and
    what the position would become. Changes nothing and does not count toward the order rate."""
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
    text = (
        f"{side} {quantity} {symbol} {order_type} {head}. Position {now} -> {after} (held plus open orders); "
        f"trading state {answer.trading_state.value}. Dry run by the account authority: nothing was placed."
    )
    return reply(result, text)


def _register(server: MCPServer[AppState], state: AppState) -> None:
    add_tools(server, get_risk_limits, get_risk_status, check_order, annotations=READ_ONLY)

    @server.resource(
        "risk://limits",
        name="risk_limits",
        title="Risk limits",
        description="Every limit of the pre-trade risk gate and the trading state, as JSON",
        mime_type="application/json",
    )
    async def limits_resource() -> str:
        gate = gate_of(state)
        return LimitsResult(limits=gate.limits, trading_state=gate.state.value).model_dump_json()

    @server.resource(
        "risk://status",
        name="risk_status",
        title="Risk status",
        description="Trading state, drawdown, daily PnL and the headroom under each limit, as JSON",
        mime_type="application/json",
    )
    async def status_resource() -> str:
        return risk_status(state).model_dump_json()


TOOLSET = Toolset("risk", "Risk limits, trading state and headroom, and the pre-trade check as a dry run", _register)
