"""Risk limits and trading states: part of the wire contract (the authority journals them, tools return them)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class RiskLimits(BaseModel, frozen=True):
    """Every limit; None switches a limit off. Per-symbol maps override the global value.

    The model's own defaults switch everything but `max_position` off (what the backtester enforces);
    a live account starts from `paper_defaults()`, where every limit is on.
    """

    max_position: Decimal = Field(default=Decimal(1000), gt=0, description="Max absolute units per symbol")
    max_position_per_symbol: dict[str, Decimal] = Field(default_factory=dict)
    allowed_symbols: frozenset[str] | None = Field(default=None, description="None allows every symbol")
    max_order_quantity: Decimal | None = Field(default=None, gt=0)
    max_order_quantity_per_symbol: dict[str, Decimal] = Field(default_factory=dict)
    max_order_notional: Decimal | None = Field(
        default=None, gt=0, description="quantity × the worse of the order's own price and the last market price"
    )
    max_order_notional_per_symbol: dict[str, Decimal] = Field(default_factory=dict)
    max_gross_exposure: Decimal | None = Field(
        default=None,
        gt=0,
        description="Sum over symbols of the worst-case |position| (every resting order of one side filled) × price",
    )
    max_open_orders: int | None = Field(default=None, ge=0)
    max_orders_per_window: int | None = Field(default=None, ge=0)
    order_window_seconds: float = Field(default=60.0, gt=0, le=86_400, description="Order-rate window, up to a day")
    daily_loss_limit: Decimal | None = Field(default=None, gt=0, description="Currency lost since the day's start")
    daily_loss_action: Literal["REDUCING", "HALTED"] = "REDUCING"
    max_drawdown: Decimal | None = Field(default=None, gt=0, le=1, description="Fraction below the equity peak")
    drawdown_action: Literal["REDUCING", "HALTED"] = "HALTED"
    mcp_may_loosen: bool = Field(default=False, description="Set by the operator: MCP tools may loosen limits")

    def position_limit(self, symbol: str) -> Decimal:
        return self.max_position_per_symbol.get(symbol, self.max_position)

    def order_quantity_limit(self, symbol: str) -> Decimal | None:
        return self.max_order_quantity_per_symbol.get(symbol, self.max_order_quantity)

    def order_notional_limit(self, symbol: str) -> Decimal | None:
        return self.max_order_notional_per_symbol.get(symbol, self.max_order_notional)


PAPER_STARTING_CASH = Decimal(100_000)


def paper_defaults(starting_cash: Decimal = PAPER_STARTING_CASH) -> dict[str, object]:
    """The limits a fresh paper account starts with, sized for its starting cash (docs/RISK.md):
    one order at most the whole account, gross exposure at most twice it, 100 open orders,
    600 orders a minute, a 5 % daily loss (then REDUCING) and a 25 % drawdown (then HALTED)."""
    return {
        "max_position": Decimal(1000),
        "max_order_notional": starting_cash,
        "max_gross_exposure": 2 * starting_cash,
        "max_open_orders": 100,
        "max_orders_per_window": 600,
        "order_window_seconds": 60.0,
        "daily_loss_limit": starting_cash * Decimal("0.05"),
        "max_drawdown": Decimal("0.25"),
    }
