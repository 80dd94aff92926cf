"""The pre-trade risk engine: ONE gate every order passes (bridge, MCP tools, agent).

`RiskGate.check(...)` returns a `Verdict` (approve, or deny with a stable reason code); callers
publish a denial on `decisions.risk_denied`. Cancels are never gated: they are allowed in every
state.

Trading states. ACTIVE: every order that passes the limits. REDUCING: only orders that make a
position smaller without flipping it. HALTED: no orders, only cancels.
- The daily loss limit (equity down `daily_loss_limit` or more from the day's first equity,
  UTC day) moves the state to `daily_loss_action` (REDUCING by default); a REDUCING caused by it
  lifts by itself on the next UTC day.
- The max drawdown (equity `max_drawdown` — a fraction — or more below its peak) moves the state
  to `drawdown_action` (HALTED by default).
- The kill switch sets HALTED at once. Only the operator returns to ACTIVE (`resume`).

Edges: a limit is a value you may reach. An order that makes a quantity, notional, position,
exposure or count equal to its limit is approved; one beyond it is denied. Loss limits trigger
when the loss reaches the limit. The order rate allows `max_orders_per_window` approved orders in
any window of `order_window_seconds` (the injected clock). Position and exposure limits never
deny an order that reduces what they measure.

Limits change at run time only through `update_limits` with an `Actor`: the operator may set
anything; an MCP tool may tighten, and may loosen only if the operator set `mcp_may_loosen`.
Every change is kept in `changes` (and logged by the application that applies it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from schemas.common import Side
from tools.clock import Clock, LiveClock

ZERO = Decimal(0)
RATE_HISTORY = timedelta(days=1)


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
Actor = Literal["operator", "mcp"]


class RiskLimits(BaseModel, frozen=True):
    """Every limit; None switches a limit off. Per-symbol maps override the global value."""

    max_position: Decimal = Field(default=Decimal(1000), gt=0, description="Max absolute units per symbol")
    max_position_per_symbol: dict[str, Decimal] = Field(default_factory=dict)
    allowed_symbols: frozenset[str] | None = Field(default=None, description="None allows every symbol")
    max_order_quantity: Decimal | None = Field(default=None, gt=0)
    max_order_quantity_per_symbol: dict[str, Decimal] = Field(default_factory=dict)
    max_order_notional: Decimal | None = Field(default=None, gt=0, description="quantity × price (limit price if any)")
    max_order_notional_per_symbol: dict[str, Decimal] = Field(default_factory=dict)
    max_gross_exposure: Decimal | None = Field(
        default=None, gt=0, description="Sum of |position × price| after the order"
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


@dataclass(frozen=True)
class Verdict:
    approved: bool
    reason_code: str = "approved"
    message: str = ""


APPROVED = Verdict(True)  # immutable: one instance serves every approval


def _reduces(before: Decimal, after: Decimal) -> bool:
    """The order makes the position smaller without flipping it."""
    return abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0))


@dataclass(frozen=True)
class LimitChange:
    actor: Actor
    at: datetime
    fields: tuple[str, ...]
    note: str = ""


class LimitChangeRefused(PermissionError):
    """An actor tried a change it may not make. `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RiskGate:
    limits: RiskLimits = field(default_factory=RiskLimits)
    clock: Clock = field(default_factory=LiveClock)
    state: TradingState = TradingState.ACTIVE
    state_reason: str = ""
    changes: list[LimitChange] = field(default_factory=list)
    _recent: deque[datetime] = field(default_factory=deque)
    _peak: Decimal | None = None
    _day: date | None = None
    _day_start: Decimal | None = None

    # ------------------------------------------------------------------ the gate

    def check(
        self,
        *,
        symbol: str,
        side: Side,
        quantity: Decimal,
        projected_position: Decimal,
        price: Decimal | None = None,
        order_type: str = "market",
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        open_orders: int = 0,
        gross_exposure: Decimal = ZERO,
        record: bool = True,
    ) -> Verdict:
        """Approve or deny one order.

        `projected_position`: the current position plus orders already sent but not yet done.
        `price`: the price a market order is expected at (the last price); limit orders are priced
        at their limit, stop orders at their stop. `gross_exposure`: the account's gross exposure
        now (projected positions × last prices); `open_orders`: orders sent and not yet done.
        An approval counts toward the order rate unless `record` is False (previews).
        """
        lim = self.limits
        if quantity <= 0:
            return Verdict(False, "invalid_quantity", "quantity must be positive")
        after = projected_position + quantity if side == "buy" else projected_position - quantity
        state = self.state
        if state is TradingState.HALTED:
            return Verdict(False, "trading_halted", f"trading is HALTED ({self.state_reason}); only cancels pass")
        if state is TradingState.REDUCING and not _reduces(projected_position, after):
            return Verdict(
                False,
                "reducing_only",
                f"trading is REDUCING ({self.state_reason}); only orders that shrink a position pass",
            )
        if lim.allowed_symbols is not None and symbol not in lim.allowed_symbols:
            return Verdict(False, "symbol_not_allowed", f"{symbol} is not in the allowed symbols")
        qty_limit = lim.order_quantity_limit(symbol)
        if qty_limit is not None and quantity > qty_limit:
            return Verdict(False, "max_order_quantity", f"{quantity} {symbol} is beyond the order limit of {qty_limit}")
        order_price = limit_price if limit_price is not None else stop_price if stop_price is not None else price
        notional_limit = lim.order_notional_limit(symbol)
        if notional_limit is not None:
            if order_price is None:
                return Verdict(False, "price_unknown", f"no price for {symbol}: cannot check the order notional")
            notional = quantity * order_price
            if notional > notional_limit:
                return Verdict(
                    False,
                    "max_order_notional",
                    f"order notional {notional} {symbol} is beyond the limit of {notional_limit}",
                )
        pos_limit = lim.position_limit(symbol)
        size_after = abs(after)
        if size_after > pos_limit and size_after > abs(projected_position):
            return Verdict(
                False,
                "max_position",
                f"{side} {quantity} {symbol} would make the position {after}, beyond the limit of {pos_limit}",
            )
        if lim.max_gross_exposure is not None and not _reduces(projected_position, after):
            if order_price is None:
                return Verdict(False, "price_unknown", f"no price for {symbol}: cannot check the gross exposure")
            gross_after = gross_exposure - abs(projected_position * order_price) + abs(after * order_price)
            if gross_after > lim.max_gross_exposure and gross_after > gross_exposure:
                return Verdict(
                    False,
                    "max_gross_exposure",
                    f"gross exposure would be {gross_after}, beyond the limit of {lim.max_gross_exposure}",
                )
        if lim.max_open_orders is not None and open_orders + 1 > lim.max_open_orders:
            return Verdict(
                False, "max_open_orders", f"{open_orders} orders are open; the limit is {lim.max_open_orders}"
            )
        now = self.clock.now()
        if lim.max_orders_per_window is not None:
            horizon = now - timedelta(seconds=lim.order_window_seconds)
            while self._recent and self._recent[0] <= horizon:
                self._recent.popleft()
            if len(self._recent) + 1 > lim.max_orders_per_window:
                return Verdict(
                    False,
                    "order_rate",
                    f"{len(self._recent)} orders in the last {lim.order_window_seconds:g} s; "
                    f"the limit is {lim.max_orders_per_window}",
                )
        if record:
            recent = self._recent
            recent.append(now)
            # a day of history (the longest window), not every order ever: a rate limit set or widened later
            # still counts the orders already in its window
            horizon = now - RATE_HISTORY
            while recent[0] <= horizon:
                recent.popleft()
        return APPROVED

    # ------------------------------------------------------------------ read-only views

    @property
    def peak_equity(self) -> Decimal | None:
        """The equity peak drawdown is measured from (None before the first observation)."""
        return self._peak

    @property
    def day_start_equity(self) -> Decimal | None:
        """The first equity seen this UTC day: the daily loss is measured from it."""
        return self._day_start

    def orders_in_window(self) -> int:
        """Approved orders counted in the current order-rate window (reads only; prunes nothing)."""
        horizon = self.clock.now() - timedelta(seconds=self.limits.order_window_seconds)
        return sum(1 for t in self._recent if t > horizon)

    # ------------------------------------------------------------------ trading state

    def observe_equity(self, equity: Decimal) -> TradingState:
        """Feed the account equity (after each fill or mark); may move the trading state."""
        now = self.clock.now()
        today = now.date()
        if self._day != today:
            self._day, self._day_start = today, equity
            if self.state is TradingState.REDUCING and self.state_reason == "daily_loss_limit":
                self._set_state(TradingState.ACTIVE, "new_day")
        if self._peak is None or equity > self._peak:
            self._peak = equity
        lim = self.limits
        assert self._day_start is not None
        if lim.daily_loss_limit is not None and self._day_start - equity >= lim.daily_loss_limit:
            self._escalate(TradingState(lim.daily_loss_action), "daily_loss_limit")
        if lim.max_drawdown is not None and self._peak > 0 and (self._peak - equity) / self._peak >= lim.max_drawdown:
            self._escalate(TradingState(lim.drawdown_action), "max_drawdown")
        return self.state

    def kill(self, reason: str = "kill_switch") -> None:
        """The kill switch: HALTED at once; only cancels pass until the operator resumes."""
        self._set_state(TradingState.HALTED, reason)

    def resume(self, actor: Actor = "operator") -> None:
        if actor != "operator":
            raise LimitChangeRefused("operator_only", "only the operator can resume trading")
        self._set_state(TradingState.ACTIVE, "operator_resume")
        self._peak = None  # drawdown is measured from the equity at resumption on
        self._day = None

    def set_state(self, state: TradingState, reason: str, actor: Actor = "operator") -> None:
        """Set the state directly (the operator's path, e.g. replayed from the control bucket).
        An MCP tool may only make it stricter."""
        if actor != "operator" and _SEVERITY[state] < _SEVERITY[self.state]:
            raise LimitChangeRefused("operator_only", "only the operator can relax the trading state")
        if state is TradingState.ACTIVE and self.state is not TradingState.ACTIVE:
            self.resume(actor)
        else:
            self._set_state(state, reason)

    def _escalate(self, state: TradingState, reason: str) -> None:
        if _SEVERITY[state] > _SEVERITY[self.state]:
            self._set_state(state, reason)

    def _set_state(self, state: TradingState, reason: str) -> None:
        self.state, self.state_reason = state, reason

    # ------------------------------------------------------------------ limits

    def update_limits(self, new: RiskLimits, actor: Actor, note: str = "") -> LimitChange:
        """Replace the limits. MCP may tighten; loosening needs the operator's `mcp_may_loosen`."""
        changed = tuple(k for k in RiskLimits.model_fields if getattr(new, k) != getattr(self.limits, k))
        if actor != "operator":
            if new.mcp_may_loosen != self.limits.mcp_may_loosen:
                raise LimitChangeRefused("operator_only", "only the operator can change mcp_may_loosen")
            looser = loosened(self.limits, new)
            if looser and not self.limits.mcp_may_loosen:
                raise LimitChangeRefused(
                    "loosening_not_allowed",
                    f"an MCP tool may not loosen {', '.join(looser)}; the operator has not enabled it",
                )
        self.limits = new
        change = LimitChange(actor, self.clock.now(), changed, note)
        self.changes.append(change)
        return change


def loosened(old: RiskLimits, new: RiskLimits) -> list[str]:
    """The limits that `new` makes less strict than `old`."""
    out: list[str] = []
    for name in (
        "max_position",
        "max_order_quantity",
        "max_order_notional",
        "max_gross_exposure",
        "max_open_orders",
        "max_orders_per_window",
        "daily_loss_limit",
        "max_drawdown",
    ):
        a, b = getattr(old, name), getattr(new, name)
        if a is not None and (b is None or b > a):
            out.append(name)
    for name in ("max_position_per_symbol", "max_order_quantity_per_symbol", "max_order_notional_per_symbol"):
        a, b = getattr(old, name), getattr(new, name)
        if any(sym not in b or b[sym] > v for sym, v in a.items()):
            out.append(name)
    if old.order_window_seconds > new.order_window_seconds:
        out.append("order_window_seconds")
    if old.allowed_symbols is not None and (
        new.allowed_symbols is None or not new.allowed_symbols <= old.allowed_symbols
    ):
        out.append("allowed_symbols")
    if _SEVERITY[TradingState(new.daily_loss_action)] < _SEVERITY[TradingState(old.daily_loss_action)]:
        out.append("daily_loss_action")
    if _SEVERITY[TradingState(new.drawdown_action)] < _SEVERITY[TradingState(old.drawdown_action)]:
        out.append("drawdown_action")
    return out


RiskEngine = RiskGate
