"""Positions, cash and PnL, built from fills alone (netting per symbol, average cost). Decimal throughout.

Accounting identity (checked by property tests): cash + market value
= starting cash + realized PnL + unrealized PnL − fees. Replaying the same fills in the same
order gives the same portfolio, so it is rebuilt from the `executions` stream after a restart.
A position is marked at the latest price known for its symbol: `mark(symbol, price)` or, failing
that, the latest fill.

Memory does not grow with history: the portfolio keeps the newest `FILLS_KEPT` fills whole (for
`recent_fills`), counts all of them (`fill_count`, `last_fill_at`), and remembers the newest
`FILL_IDS_KEPT` fill ids to drop a repeat. A repeat comes from a redelivery, which is recent by nature (a
consumer redelivers what it has not acked, at most its pending limit); the authority journals a fill once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter

from schemas.common import Money
from schemas.orders import Fill

ZERO = Decimal(0)
DEFAULT_STARTING_CASH = Decimal(100_000)
FILLS_KEPT = 1_000  # the newest fills kept whole (recent_fills); older ones are counted only
FILL_IDS_KEPT = 20_000  # the newest fill ids remembered to drop a repeat
_FILLS = TypeAdapter(list[Fill])


@dataclass
class _Position:
    symbol: str
    quantity: Decimal = ZERO  # signed: > 0 long, < 0 short
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO

    def unrealized(self, mark: Decimal) -> Decimal:
        return (mark - self.avg_price) * self.quantity


class PositionView(BaseModel):
    symbol: str
    quantity: Money = Field(description="Signed: negative is short")
    avg_price: Money
    realized_pnl: Money
    fees_paid: Money
    mark_price: Money | None = Field(default=None, description="Latest price the position is valued at")
    market_value: Money = ZERO
    unrealized_pnl: Money = ZERO


class AccountView(BaseModel):
    starting_cash: Money
    cash: Money
    market_value: Money
    equity: Money = Field(description="cash + market value")
    realized_pnl: Money
    unrealized_pnl: Money
    fees_paid: Money
    gross_exposure: Money = Field(description="Sum of |quantity × mark| over positions")
    net_exposure: Money = Field(description="Sum of quantity × mark over positions")
    open_positions: int


@dataclass
class Portfolio:
    """Apply fills in stream order; a fill id seen before changes nothing."""

    starting_cash: Decimal = DEFAULT_STARTING_CASH
    positions: dict[str, _Position] = field(default_factory=dict)
    fills: deque[Fill] = field(default_factory=lambda: deque(maxlen=FILLS_KEPT))  # the newest, oldest first
    cash: Decimal = ZERO
    marks: dict[str, Decimal] = field(default_factory=dict)
    fill_count: int = 0  # every fill applied, over the whole history
    last_fill_at: datetime | None = None
    _seen: set[str] = field(default_factory=set)  # the newest fill ids ...
    _seen_order: deque[str] = field(default_factory=deque)  # ... oldest first
    _market_marked: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.cash = self.starting_cash

    def apply(self, fill: Fill) -> bool:
        if fill.fill_id in self._seen:
            return False
        self._seen.add(fill.fill_id)
        self._seen_order.append(fill.fill_id)
        if len(self._seen_order) > FILL_IDS_KEPT:
            self._seen.discard(self._seen_order.popleft())
        self.fills.append(fill)
        self.fill_count += 1
        if self.last_fill_at is None or fill.ts > self.last_fill_at:
            self.last_fill_at = fill.ts
        pos = self.positions.setdefault(fill.symbol, _Position(fill.symbol))
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        pos.fees += fill.fee
        self.cash -= signed * fill.price + fill.fee
        # a fill marks the symbol only while no market price is known: a fill can be processed after later
        # bars (an order filled at a bar's open arrives after that bar's close) and must not roll it back
        if fill.symbol not in self._market_marked:
            self.marks[fill.symbol] = fill.price
        if pos.quantity == 0 or (pos.quantity > 0) == (signed > 0):
            # opening or adding: weighted average price
            new_qty = pos.quantity + signed
            pos.avg_price = (pos.avg_price * abs(pos.quantity) + fill.price * abs(signed)) / abs(new_qty)
            pos.quantity = new_qty
            return True
        # reducing, closing or reversing
        closed = min(abs(signed), abs(pos.quantity))
        direction = 1 if pos.quantity > 0 else -1
        pos.realized_pnl += (fill.price - pos.avg_price) * closed * direction
        pos.quantity += signed
        if pos.quantity == 0:
            pos.avg_price = ZERO
        elif (pos.quantity > 0) != (direction > 0):
            pos.avg_price = fill.price  # reversed: the remainder opened at this fill's price
        return True

    def knows_fill(self, fill_id: str) -> bool:
        return fill_id in self._seen

    def mark(self, symbol: str, price: Decimal) -> None:
        """Value `symbol` at `price`, the market's latest price, from now on (until a later mark)."""
        self.marks[symbol] = price
        self._market_marked.add(symbol)

    # ------------------------------------------------------------------ queries

    def quantity(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        return pos.quantity if pos else ZERO

    def mark_price(self, symbol: str) -> Decimal | None:
        return self.marks.get(symbol)

    def market_value(self) -> Decimal:
        return sum((p.quantity * self.marks.get(p.symbol, p.avg_price) for p in self.positions.values()), ZERO)

    def equity(self) -> Decimal:
        return self.cash + self.market_value()

    def gross_exposure(self) -> Decimal:
        return sum((abs(p.quantity * self.marks.get(p.symbol, p.avg_price)) for p in self.positions.values()), ZERO)

    def net_exposure(self) -> Decimal:
        return self.market_value()

    def realized_pnl(self) -> Decimal:
        return sum((p.realized_pnl for p in self.positions.values()), ZERO)

    def unrealized_pnl(self) -> Decimal:
        return sum((p.unrealized(self.marks.get(p.symbol, p.avg_price)) for p in self.positions.values()), ZERO)

    def fees_paid(self) -> Decimal:
        return sum((p.fees for p in self.positions.values()), ZERO)

    def account(self) -> AccountView:
        return AccountView(
            starting_cash=self.starting_cash,
            cash=self.cash,
            market_value=self.market_value(),
            equity=self.equity(),
            realized_pnl=self.realized_pnl(),
            unrealized_pnl=self.unrealized_pnl(),
            fees_paid=self.fees_paid(),
            gross_exposure=self.gross_exposure(),
            net_exposure=self.net_exposure(),
            open_positions=sum(1 for p in self.positions.values() if p.quantity != 0),
        )

    def open_positions(self) -> list[PositionView]:
        out = []
        for p in sorted(self.positions.values(), key=lambda p: p.symbol):
            if p.quantity == 0 and p.realized_pnl == 0:
                continue
            mark = self.marks.get(p.symbol)
            value_at = mark if mark is not None else p.avg_price
            out.append(
                PositionView(
                    symbol=p.symbol,
                    quantity=p.quantity,
                    avg_price=p.avg_price,
                    realized_pnl=p.realized_pnl,
                    fees_paid=p.fees,
                    mark_price=mark,
                    market_value=p.quantity * value_at,
                    unrealized_pnl=p.unrealized(value_at),
                )
            )
        return out

    def recent_fills(self, limit: int = 50, symbol: str | None = None) -> list[Fill]:
        chosen = [f for f in reversed(self.fills) if symbol is None or f.symbol == symbol]
        return chosen[:limit]

    # ------------------------------------------------------------------ snapshots

    def to_snapshot(self) -> dict[str, Any]:
        """Everything `apply` and `mark` keep, JSON-safe (decimals as exact strings); the ids seen are the fills'."""
        return {
            "starting_cash": str(self.starting_cash),
            "cash": str(self.cash),
            "positions": [
                [p.symbol, str(p.quantity), str(p.avg_price), str(p.realized_pnl), str(p.fees)]
                for p in self.positions.values()
            ],
            "marks": {s: str(m) for s, m in self.marks.items()},
            "market_marked": sorted(self._market_marked),
            "fills": _FILLS.dump_python(list(self.fills), mode="json"),
            "fill_count": self.fill_count,
            "last_fill_at": None if self.last_fill_at is None else self.last_fill_at.isoformat(),
            "fill_ids": list(self._seen_order),
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Portfolio:
        """The portfolio `to_snapshot` described (ValueError, TypeError or KeyError when it is malformed)."""
        fills = _FILLS.validate_python(data["fills"])
        portfolio = cls(starting_cash=_decimal(data["starting_cash"]))
        portfolio.cash = _decimal(data["cash"])
        for symbol, quantity, avg, realized, fees in data["positions"]:
            portfolio.positions[_text(symbol)] = _Position(
                _text(symbol), _decimal(quantity), _decimal(avg), _decimal(realized), _decimal(fees)
            )
        portfolio.marks = {_text(s): _decimal(m) for s, m in dict(data["marks"]).items()}
        portfolio._market_marked = {_text(s) for s in data["market_marked"]}
        portfolio.fills.extend(fills)
        count = data["fill_count"]
        if not isinstance(count, int) or isinstance(count, bool) or count < len(fills):
            raise ValueError(f"a snapshot's fill_count is a whole number of at least its fills, got {count!r}")
        portfolio.fill_count = count
        last = data["last_fill_at"]
        portfolio.last_fill_at = None if last is None else datetime.fromisoformat(_text(last))
        if portfolio.last_fill_at is not None and portfolio.last_fill_at.tzinfo is None:
            raise ValueError(f"a snapshot time carries its offset: {last!r}")
        portfolio._seen_order = deque(_text(i) for i in data["fill_ids"])
        portfolio._seen = set(portfolio._seen_order)
        return portfolio

    def detached(self) -> Portfolio:
        """A copy that later fills and marks leave alone (the fills themselves are immutable, so shared)."""
        copy = Portfolio(starting_cash=self.starting_cash)
        copy.cash = self.cash
        copy.positions = {s: replace(p) for s, p in self.positions.items()}
        copy.fills = self.fills.copy()
        copy.marks = dict(self.marks)
        copy.fill_count = self.fill_count
        copy.last_fill_at = self.last_fill_at
        copy._seen = set(self._seen)
        copy._seen_order = self._seen_order.copy()
        copy._market_marked = set(self._market_marked)
        return copy


def _decimal(value: object) -> Decimal:
    """A decimal written as a string by a snapshot (exact; a float or anything else is refused)."""
    if not isinstance(value, str):
        raise TypeError(f"a snapshot decimal is a string, got {type(value).__name__}")
    return Decimal(value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
