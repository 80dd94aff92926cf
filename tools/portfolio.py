"""Positions and PnL, built from fills alone (netting per symbol). Decimal throughout."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel

from schemas.common import Money
from schemas.orders import Fill

ZERO = Decimal(0)


@dataclass
class _Position:
    symbol: str
    quantity: Decimal = ZERO  # signed: > 0 long, < 0 short
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO


class PositionView(BaseModel):
    symbol: str
    quantity: Money
    avg_price: Money
    realized_pnl: Money
    fees_paid: Money


@dataclass
class Portfolio:
    """Apply fills in stream order; a fill id seen before changes nothing."""

    positions: dict[str, _Position] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def apply(self, fill: Fill) -> bool:
        if fill.fill_id in self._seen:
            return False
        self._seen.add(fill.fill_id)
        self.fills.append(fill)
        pos = self.positions.setdefault(fill.symbol, _Position(fill.symbol))
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        pos.fees += fill.fee
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

    def quantity(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        return pos.quantity if pos else ZERO

    def open_positions(self) -> list[PositionView]:
        return [
            PositionView(
                symbol=p.symbol,
                quantity=p.quantity,
                avg_price=p.avg_price,
                realized_pnl=p.realized_pnl,
                fees_paid=p.fees,
            )
            for p in sorted(self.positions.values(), key=lambda p: p.symbol)
            if p.quantity != 0 or p.realized_pnl != 0
        ]

    def recent_fills(self, limit: int = 50, symbol: str | None = None) -> list[Fill]:
        chosen = [f for f in reversed(self.fills) if symbol is None or f.symbol == symbol]
        return chosen[:limit]
