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

from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any, Literal

from schemas.common import MAX_DECIMALS, MAX_DIGITS, Side
from schemas.risk import RiskLimits, TradingState
from tools.clock import Clock, LiveClock

__all__ = ["RiskGate", "RiskLimits", "TradingState", "Verdict", "bad_number", "loosened", "valuation_price"]

ZERO = Decimal(0)
RATE_HISTORY = timedelta(days=1)


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
Actor = Literal["operator", "mcp"]
MAX_UNITS = Decimal(10) ** (MAX_DIGITS - MAX_DECIMALS)  # the largest quantity or price the wire carries


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
    _recent: _Times = field(default_factory=lambda: _Times())
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
        resting_buys: Decimal = ZERO,
        resting_sells: Decimal = ZERO,
        record: bool = True,
        now: datetime | None = None,
    ) -> Verdict:
        """Approve or deny one order, against the worst case of what is already resting.

        `projected_position`: the position held now. `resting_buys` / `resting_sells`: what is left of
        the open orders of each side (they never net out: either side may fill alone). `price`: the
        market's last price. A limit or stop order is valued at the worse (higher) of its own prices
        and the market's, since a marketable one fills at the market; with no price at all it is
        denied `no_price`. `gross_exposure`: the account's worst-case gross exposure now (see
        `tools.account.Account.gross_exposure`). `open_orders`: orders sent and not yet done.
        An approval counts toward the order rate (at `now`, else the clock) unless `record` is False.
        Bad numbers are coded denials, never exceptions.
        """
        lim = self.limits
        bad = bad_number(quantity, "quantity") or bad_number(limit_price, "limit_price")
        bad = bad or bad_number(stop_price, "stop_price") or bad_number(price, "price")
        if bad is not None:
            return bad
        state = self.state
        if state is TradingState.HALTED:
            return Verdict(False, "trading_halted", f"trading is HALTED ({self.state_reason}); only cancels pass")
        position = projected_position
        buy = side == "buy"
        # the side of the worst case this order adds to: every resting order of that side filled, then this one
        worst_before = position + resting_buys if buy else position - resting_sells
        worst_after = worst_before + quantity if buy else worst_before - quantity
        if state is TradingState.REDUCING and not (
            (position < 0 and worst_after <= 0) if buy else (position > 0 and worst_after >= 0)
        ):
            return Verdict(
                False,
                "reducing_only",
                f"trading is REDUCING ({self.state_reason}); only orders that shrink a position without "
                f"flipping it pass (position {position}, resting buys {resting_buys}, sells {resting_sells})",
            )
        if lim.allowed_symbols is not None and symbol not in lim.allowed_symbols:
            return Verdict(False, "symbol_not_allowed", f"{symbol} is not in the allowed symbols")
        qty_limit = lim.order_quantity_limit(symbol)
        if qty_limit is not None and quantity > qty_limit:
            return Verdict(False, "max_order_quantity", f"{quantity} {symbol} is beyond the order limit of {qty_limit}")
        value_at = valuation_price(price, limit_price, stop_price)
        if value_at is None and order_type != "market":
            return Verdict(False, "no_price", f"no price for {symbol}: the order has none and the market none yet")
        notional_limit = lim.order_notional_limit(symbol)
        if notional_limit is not None:
            if value_at is None:
                return Verdict(False, "no_price", f"no price for {symbol}: cannot check the order notional")
            notional = quantity * value_at
            if notional > notional_limit:
                return Verdict(
                    False,
                    "max_order_notional",
                    f"order notional {notional} {symbol} (valued at {value_at}, the worse of its own price and "
                    f"the market's) is beyond the limit of {notional_limit}",
                )
        pos_limit = lim.position_limit(symbol)
        flips = (worst_after > 0) != (worst_before > 0)  # past the limit only to shrink, never to flip
        if abs(worst_after) > pos_limit and (abs(worst_after) > abs(worst_before) or flips):
            return Verdict(
                False,
                "max_position",
                f"{side} {quantity} {symbol} could make the position {worst_after} (held {position}, resting "
                f"{'buys' if buy else 'sells'} {resting_buys if buy else resting_sells}), beyond the limit of "
                f"{pos_limit}",
            )
        if lim.max_gross_exposure is not None:
            if value_at is None:
                return Verdict(False, "no_price", f"no price for {symbol}: cannot check the gross exposure")
            other_side = position - resting_sells if buy else position + resting_buys
            before = max(abs(worst_before), abs(other_side))
            after = max(abs(worst_after), abs(other_side))
            market = price if price is not None else value_at
            gross_after = gross_exposure - before * market + after * value_at
            if gross_after > lim.max_gross_exposure and after > before:
                return Verdict(
                    False,
                    "max_gross_exposure",
                    f"gross exposure could be {gross_after}, beyond the limit of {lim.max_gross_exposure}",
                )
        if lim.max_open_orders is not None and open_orders + 1 > lim.max_open_orders:
            return Verdict(
                False, "max_open_orders", f"{open_orders} orders are open; the limit is {lim.max_open_orders}"
            )
        now = now or self.clock.now()
        if lim.max_orders_per_window is not None:
            horizon = now - timedelta(seconds=lim.order_window_seconds)
            # counted by bisection, never pruned here: a check changes nothing (a replayed projection, which
            # never checked, must hold the same history), and costs O(log n) whatever the window holds
            in_window = self._recent.count_after(horizon)
            if in_window + 1 > lim.max_orders_per_window:
                return Verdict(
                    False,
                    "order_rate",
                    f"{in_window} orders in the last {lim.order_window_seconds:g} s; "
                    f"the limit is {lim.max_orders_per_window}",
                )
        if record:
            self.record_order(now)
        return APPROVED

    def record_order(self, at: datetime) -> None:
        """Count one approved order at `at` toward the order rate. A day of history (the longest window) is
        kept, not every order ever: a rate limit set or widened later still counts the orders in its window."""
        self._recent.append(at, at - RATE_HISTORY)

    def record_orders(self, at: datetime, count: int) -> None:
        """`record_order(at)` `count` times."""
        self._recent.extend(at, count, at - RATE_HISTORY)

    # ------------------------------------------------------------------ read-only views

    @property
    def peak_equity(self) -> Decimal | None:
        """The equity peak drawdown is measured from (None before the first observation)."""
        return self._peak

    @property
    def day_start_equity(self) -> Decimal | None:
        """The first equity seen this UTC day: the daily loss is measured from it."""
        return self._day_start

    def orders_in_window(self, now: datetime | None = None) -> int:
        """Approved orders counted in the current order-rate window (reads only; prunes nothing)."""
        horizon = (now or self.clock.now()) - timedelta(seconds=self.limits.order_window_seconds)
        return self._recent.count_after(horizon)

    # ------------------------------------------------------------------ trading state

    def observe_equity(self, equity: Decimal, now: datetime | None = None) -> TradingState:
        """Feed the account equity (after each fill or mark, at `now`, else the clock); may move the
        trading state. Loss limits are evaluated here, on every observation."""
        now = now or self.clock.now()
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

    # ------------------------------------------------------------------ snapshots

    def to_snapshot(self) -> dict[str, Any]:
        """What a journal fold leaves in the gate, JSON-safe: limits, state and reason, peak, day start, and the
        order-rate window's approval times (the day of them kept). Not the clock, nor `changes` (an in-process
        log of `update_limits`, which no fold calls)."""
        return {
            "limits": self.limits.model_dump(mode="json"),
            "state": self.state.value,
            "state_reason": self.state_reason,
            "peak": None if self._peak is None else str(self._peak),
            "day": None if self._day is None else self._day.isoformat(),
            "day_start": None if self._day_start is None else str(self._day_start),
            "recent_us": self._recent.to_json(),
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], clock: Clock | None = None) -> RiskGate:
        """The gate `to_snapshot` described (ValueError, TypeError or KeyError when it is malformed)."""
        gate = cls(limits=RiskLimits.model_validate(data["limits"]), clock=clock or LiveClock())
        gate.state = TradingState(data["state"])
        gate.state_reason = str(data["state_reason"])
        gate._peak = _opt_decimal(data["peak"])
        gate._day = None if data["day"] is None else date.fromisoformat(data["day"])
        gate._day_start = _opt_decimal(data["day_start"])
        gate._recent = _Times.from_json(data["recent_us"])
        return gate

    def detached(self) -> RiskGate:
        """A copy that later observations and orders leave alone (limits are immutable, so shared)."""
        copy = RiskGate(limits=self.limits, clock=self.clock, state=self.state, state_reason=self.state_reason)
        copy._peak, copy._day, copy._day_start = self._peak, self._day, self._day_start
        copy._recent = self._recent.copy()
        return copy

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
    for name, glob in (
        ("max_position_per_symbol", "max_position"),
        ("max_order_quantity_per_symbol", "max_order_quantity"),
        ("max_order_notional_per_symbol", "max_order_notional"),
    ):
        a, b = getattr(old, name), getattr(new, name)

        def in_force(per_symbol: dict[str, Decimal], limits: RiskLimits, sym: str, glob: str = glob) -> Decimal | None:
            value: Decimal | None = per_symbol.get(sym, getattr(limits, glob))
            return value

        # an entry is looser when the value in force for its symbol grows (an entry above the global
        # value, a removed entry that falls back to a higher global one, or a raised entry)
        for sym in set(a) | set(b):
            was, now_ = in_force(a, old, sym), in_force(b, new, sym)
            if was is not None and (now_ is None or now_ > was):
                out.append(name)
                break
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


class _Times:
    """Approval times in order, as whole microseconds since the epoch in an `array('q')` (8 bytes each: a day of
    them at 100 orders/s is 69 MB as datetimes, 7 MB here): append at the end, drop from the front, count the ones
    after a time by bisection."""

    __slots__ = ("_items", "_start")

    def __init__(self) -> None:
        self._items: array[int] = array("q")
        self._start = 0

    def append(self, at: datetime, drop_up_to: datetime) -> None:
        items = self._items
        us = _us(at)
        if items and us < items[-1]:
            us = items[-1]  # a clock that stepped back: keep the order (counts stay conservative)
        items.append(us)
        self._start = bisect_right(items, _us(drop_up_to), self._start)
        if self._start > 4096 and self._start * 2 > len(items):
            del items[: self._start]
            self._start = 0

    def extend(self, at: datetime, count: int, drop_up_to: datetime) -> None:
        """`append(at, drop_up_to)` `count` times."""
        if count > 0:
            self.append(at, drop_up_to)
            self._items.extend(array("q", [self._items[-1]]) * (count - 1))

    def count_after(self, horizon: datetime) -> int:
        return len(self._items) - bisect_right(self._items, _us(horizon), self._start)

    def live(self) -> list[datetime]:
        """The times kept (the ones dropped from the front are never counted again)."""
        return [EPOCH + timedelta(microseconds=us) for us in self._items[self._start :]]

    def to_json(self) -> list[int]:
        """The first time in microseconds, then each one's step from the one before (small numbers: compact)."""
        live = self._items[self._start :]
        return [live[0], *(b - a for a, b in zip(live, live[1:], strict=False))] if live else []

    @classmethod
    def from_json(cls, data: object) -> _Times:
        if not isinstance(data, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in data):
            raise TypeError("approval times are a list of whole microseconds")
        if any(v < 0 for v in data[1:]):
            raise ValueError("approval times must be in order")
        times = cls()
        times._items = array("q", accumulate(data))
        return times

    @classmethod
    def of(cls, items: list[datetime]) -> _Times:
        if any(b < a for a, b in zip(items, items[1:], strict=False)):
            raise ValueError("approval times must be in order")
        times = cls()
        times._items = array("q", map(_us, items))
        return times

    def copy(self) -> _Times:
        times = _Times()
        times._items = self._items[self._start :]
        return times

    def __len__(self) -> int:
        return len(self._items) - self._start


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _us(at: datetime) -> int:
    return (at - EPOCH) // _MICROSECOND


def _opt_decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"a snapshot decimal is a string, got {type(value).__name__}")
    return Decimal(value)


def valuation_price(
    market: Decimal | None, limit_price: Decimal | None = None, stop_price: Decimal | None = None
) -> Decimal | None:
    """The price an order is valued at for its notional and exposure: the worst (highest) of its own
    limit/stop prices and the market's last price, since a marketable limit or a triggered stop fills
    at the market. None when none is known."""
    known = [p for p in (market, limit_price, stop_price) if p is not None]
    return max(known) if known else None


def _decimal_places(value: Decimal) -> int:
    """Digits after the point once trailing zeros go (a finite value; the exponent is a letter only for NaN and
    infinities)."""
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0


def bad_number(value: Decimal | None, name: str) -> Verdict | None:
    """The coded denial for a number the wire cannot carry (not finite, not positive, too large, too many
    decimals); None when it is fine or absent. `name` "quantity" gives invalid_quantity, any other invalid_price."""
    if value is None:
        return None
    if not isinstance(value, Decimal) or not value.is_finite():
        return Verdict(False, f"invalid_{'quantity' if name == 'quantity' else 'price'}", f"{name} must be finite")
    if value <= 0:
        code = "invalid_quantity" if name == "quantity" else "invalid_price"
        return Verdict(False, code, f"{name} must be positive, got {value}")
    if value >= MAX_UNITS or _decimal_places(value) > MAX_DECIMALS:
        code = "invalid_quantity" if name == "quantity" else "invalid_price"
        return Verdict(
            False, code, f"{name} {value} is outside the bounds (below {MAX_UNITS}, at most {MAX_DECIMALS} decimals)"
        )
    return None


RiskEngine = RiskGate
