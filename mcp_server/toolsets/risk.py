"""risk: the limits, the trading state and the headroom left under each limit."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from bus.account_view import AppState
from mcp_server.tooling import (
    READ_ONLY,
    add_tools,
    app,
    gate_of,
    money,
    pct,
    qty,
    reply,
)
from mcp_server.toolsets import Toolset
from schemas.common import Money
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
    limits: RiskLimits = Field(description="Every limit the gate enforces; null switches one off")


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
        limits=lim,
    )


def _each_symbol(values: dict[str, Decimal], fmt: Callable[[Decimal], str]) -> str:
    return f" ({', '.join(f'{s} {fmt(v)}' for s, v in sorted(values.items()))})" if values else ""


def _then(limit: object, action: str) -> str:
    return f" (then {action})" if limit is not None else ""


def _limits_text(lim: RiskLimits) -> str:
    def on(value: Any, fmt: Callable[[Any], str]) -> str:
        return "off" if value is None else fmt(value)

    allowed = "all" if lim.allowed_symbols is None else ", ".join(sorted(lim.allowed_symbols)) or "none"
    return "; ".join(
        [
            f"max position {qty(lim.max_position)}{_each_symbol(lim.max_position_per_symbol, qty)}",
            f"max order quantity {on(lim.max_order_quantity, qty)}"
            f"{_each_symbol(lim.max_order_quantity_per_symbol, qty)}",
            f"max order notional {on(lim.max_order_notional, money)}"
            f"{_each_symbol(lim.max_order_notional_per_symbol, money)}",
            f"max gross exposure {on(lim.max_gross_exposure, money)}",
            f"max open orders {on(lim.max_open_orders, str)}",
            f"max orders per {lim.order_window_seconds:g} s {on(lim.max_orders_per_window, str)}",
            f"daily loss limit {on(lim.daily_loss_limit, money)}{_then(lim.daily_loss_limit, lim.daily_loss_action)}",
            f"max drawdown {on(lim.max_drawdown, pct)}{_then(lim.max_drawdown, lim.drawdown_action)}",
            f"symbols allowed: {allowed}",
        ]
    )


# how a limit's values read: a fraction, cash, or a count of units / orders
_SHOWN: dict[str, Callable[[Decimal], str]] = {
    "max_drawdown": pct,
    "daily_loss_limit": money,
    "max_gross_exposure": money,
}


def _headroom_line(h: Headroom) -> str:
    fmt = _SHOWN.get(h.limit, qty)
    return f"{h.limit}: {fmt(h.used)} of {fmt(h.limit_value)} used ({pct(h.used_fraction)}), {fmt(h.headroom)} left"


async def get_risk_status(ctx: Context) -> Annotated[CallToolResult, RiskStatus]:
    """Trading state (ACTIVE; REDUCING = only orders that shrink a position; HALTED) and why,
    drawdown, today's PnL, the headroom under each limit, and every limit (null = off; only the
    operator changes them)."""
    status = risk_status(app(ctx))
    lines = [
        f"Trading state {status.trading_state}{f' ({status.state_reason})' if status.state_reason else ''}.",
        f"Equity {money(status.equity)}, drawdown {pct(status.drawdown)}, daily PnL {money(status.daily_pnl)}; "
        f"{status.open_orders} open order(s), {status.orders_in_window} order(s) in the rate window.",
        *map(_headroom_line, status.headroom),
        f"Limits: {_limits_text(status.limits)}.",
    ]
    return reply(status, "\n".join(lines))


def _register(server: MCPServer[AppState], state: AppState) -> None:
    add_tools(server, get_risk_status, annotations=READ_ONLY)

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


TOOLSET = Toolset("risk", "Risk limits, trading state and the headroom left", _register)
