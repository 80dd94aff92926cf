"""positions: what the paper account holds and the fills that made it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from bus.account_view import AppState
from mcp_server.tooling import READ_ONLY, Limit, SymbolFilter, add_tools, app, money, price, qty, reply
from mcp_server.toolsets import Toolset
from schemas.common import Money
from schemas.orders import Fill
from tools.portfolio import AccountView, Portfolio, PositionView


class PositionsResult(BaseModel):
    positions: list[PositionView]


class FillView(BaseModel):
    fill_id: str
    client_order_id: str
    symbol: str
    side: str
    quantity: Money
    price: Money
    fee: Money
    time: datetime


class FillsResult(BaseModel):
    fills: list[FillView]


class PortfolioResult(BaseModel):
    """The account: cash, equity, PnL, fees and exposure, positions valued at their latest marks."""

    account: AccountView
    positions: list[PositionView]


class PortfolioSummary(BaseModel):
    """What the account holds now and what its fills add up to."""

    cash: Money
    equity: Money = Field(description="cash + market value of the positions at their latest marks")
    unrealized_pnl: Money
    gross_exposure: Money
    net_exposure: Money
    positions: list[PositionView]
    open_positions: int
    fills: int
    realized_pnl: Money = Field(description="Sum over symbols, before fees")
    fees_paid: Money
    last_fill_at: datetime | None


def fill_view(f: Fill) -> FillView:
    return FillView(
        fill_id=f.fill_id,
        client_order_id=f.client_order_id,
        symbol=f.symbol,
        side=f.side,
        quantity=f.quantity,
        price=f.price,
        fee=f.fee,
        time=f.ts,
    )


def summary(portfolio: Portfolio) -> PortfolioSummary:
    positions = portfolio.open_positions()
    return PortfolioSummary(
        cash=portfolio.cash,
        equity=portfolio.equity(),
        unrealized_pnl=portfolio.unrealized_pnl(),
        gross_exposure=portfolio.gross_exposure(),
        net_exposure=portfolio.net_exposure(),
        positions=positions,
        open_positions=sum(1 for p in positions if p.quantity != 0),
        fills=portfolio.fill_count,
        realized_pnl=sum((p.realized_pnl for p in positions), Decimal(0)),
        fees_paid=portfolio.fees_paid(),
        last_fill_at=portfolio.last_fill_at,
    )


def _position_line(p: PositionView) -> str:
    costs = f"realized PnL {money(p.realized_pnl)}, fees {money(p.fees_paid)}"
    if p.quantity == 0:
        return f"{p.symbol} flat, {costs}"
    side = "long" if p.quantity > 0 else "short"
    mark = f", mark {price(p.mark_price)}, unrealized PnL {money(p.unrealized_pnl)}" if p.mark_price is not None else ""
    return f"{p.symbol} {side} {qty(abs(p.quantity))} @ {price(p.avg_price)} avg{mark}, {costs}"


async def get_positions(ctx: Context) -> Annotated[CallToolResult, PortfolioResult]:
    """The paper account: cash, equity, PnL, fees, exposure, and per symbol the signed quantity
    (negative = short), average price, mark and PnL. Read before sizing an order."""
    portfolio = app(ctx).portfolio
    a = portfolio.account()
    result = PortfolioResult(account=a, positions=portfolio.open_positions())
    text = (
        f"Equity {money(a.equity)} = cash {money(a.cash)} + market value {money(a.market_value)} "
        f"(started with {money(a.starting_cash)}).\n"
        f"PnL: realized {money(a.realized_pnl)}, unrealized {money(a.unrealized_pnl)}; "
        f"fees paid {money(a.fees_paid)}.\n"
        f"Exposure: gross {money(a.gross_exposure)}, net {money(a.net_exposure)}; {a.open_positions} open position(s)."
    )
    if not result.positions:
        return reply(result, f"{text}\nNo positions: the paper account is flat and has no fills.")
    return reply(result, "\n".join([text, "Positions:", *map(_position_line, result.positions)]))


async def list_fills(
    ctx: Context, symbol: SymbolFilter = None, limit: Limit = 50
) -> Annotated[CallToolResult, FillsResult]:
    """Simulated fills, newest first: side, quantity, price, fee and the order's client_order_id."""
    result = FillsResult(fills=[fill_view(f) for f in app(ctx).portfolio.recent_fills(limit, symbol)])
    if not result.fills:
        return reply(result, f"No fills{f' for {symbol}' if symbol else ''} yet.")
    lines = [
        f"{f.time:%Y-%m-%d %H:%M:%S}Z {f.side} {qty(f.quantity)} {f.symbol} @ {price(f.price)} fee {money(f.fee)} "
        f"order={f.client_order_id}"
        for f in result.fills
    ]
    return reply(result, "\n".join([f"{len(result.fills)} fill(s), newest first:", *lines]))


def _register(server: MCPServer[AppState], state: AppState) -> None:
    add_tools(server, get_positions, list_fills, annotations=READ_ONLY)
    # static resources get no request context (SDK rule), so they read the state handed to the toolset

    @server.resource(
        "portfolio://positions",
        name="positions",
        title="Positions",
        description="Current paper positions per symbol, as JSON",
        mime_type="application/json",
    )
    async def positions_resource() -> str:
        return PositionsResult(positions=state.portfolio.open_positions()).model_dump_json()

    @server.resource(
        "portfolio://summary",
        name="portfolio_summary",
        title="Portfolio summary",
        description="Cash, equity, PnL, exposure, positions and a summary of the fills, as JSON",
        mime_type="application/json",
    )
    async def summary_resource() -> str:
        return summary(state.portfolio).model_dump_json()


TOOLSET = Toolset("positions", "Positions and fills of the paper account", _register)
