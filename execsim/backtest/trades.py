"""Round trips from fills, in Decimal.

A trade is one episode of a non-zero position: it opens when the position leaves 0 and closes when the
position is back at 0 or reverses (a reversal fill is split: the part that closes belongs to the old
trade, the rest opens the new one, and its fee is split in the same proportion). Adding to or trimming
a position stays within the trade.
- quantity: the largest absolute position held;
- entry_price / exit_price: quantity-weighted average of the opening / closing fills;
- pnl: the cash the trade made, net of all its fees (for an open trade, marked at the last close);
- return: pnl / the notional of the opening fills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

ZERO = Decimal(0)
FEE_QUANTUM = Decimal("0.0000000001")
PRICE_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class Trade:
    side: Literal["long", "short"]
    entry_time: datetime
    exit_time: datetime | None
    entry_bar: int
    exit_bar: int | None
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    pnl: Decimal
    return_: float
    fees: Decimal
    open: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "entry_time": self.entry_time.isoformat(),
            "exit_time": self.exit_time.isoformat() if self.exit_time else None,
            "side": self.side,
            "quantity": str(self.quantity),
            "entry_price": str(self.entry_price),
            "exit_price": str(self.exit_price),
            "pnl": str(self.pnl),
            "return": self.return_,
            "fees": str(self.fees),
            "open": self.open,
        }


@dataclass
class _Episode:
    direction: int
    entry_time: datetime
    entry_bar: int
    max_qty: Decimal = ZERO
    in_qty: Decimal = ZERO
    in_notional: Decimal = ZERO
    out_qty: Decimal = ZERO
    out_notional: Decimal = ZERO
    fees: Decimal = ZERO


class TradeBook:
    def __init__(self) -> None:
        self.position = ZERO
        self.trades: list[Trade] = []
        self._ep: _Episode | None = None

    def on_fill(self, signed_qty: Decimal, price: Decimal, fee: Decimal, ts: datetime, bar: int) -> None:
        pos = self.position
        if pos != 0 and (signed_qty > 0) != (pos > 0):
            closing = min(abs(signed_qty), abs(pos))
            fee_close = (fee * closing / abs(signed_qty)).quantize(FEE_QUANTUM) if closing != abs(signed_qty) else fee
            ep = self._ep
            assert ep is not None
            ep.out_qty += closing
            ep.out_notional += closing * price
            ep.fees += fee_close
            rest = abs(signed_qty) - closing
            self.position = pos + signed_qty
            if self.position == 0 or rest > 0:
                self.trades.append(self._close(ep, ts, bar))
                self._ep = None
            if rest > 0:
                self._open(1 if signed_qty > 0 else -1, rest, price, fee - fee_close, ts, bar)
            return
        if self._ep is None:
            self._open(1 if signed_qty > 0 else -1, abs(signed_qty), price, fee, ts, bar)
        else:
            ep = self._ep
            ep.in_qty += abs(signed_qty)
            ep.in_notional += abs(signed_qty) * price
            ep.fees += fee
            ep.max_qty = max(ep.max_qty, abs(pos + signed_qty))
        self.position = pos + signed_qty

    def _open(self, direction: int, qty: Decimal, price: Decimal, fee: Decimal, ts: datetime, bar: int) -> None:
        self._ep = _Episode(direction, ts, bar, qty, qty, qty * price, fees=fee)
        self.position = direction * qty

    def _close(self, ep: _Episode, ts: datetime | None, bar: int | None, mark: Decimal | None = None) -> Trade:
        out_qty, out_notional = ep.out_qty, ep.out_notional
        if mark is not None:
            remaining = ep.in_qty - ep.out_qty
            out_qty += remaining
            out_notional += remaining * mark
        gross = (out_notional - ep.in_notional) * ep.direction
        pnl = gross - ep.fees
        return Trade(
            side="long" if ep.direction > 0 else "short",
            entry_time=ep.entry_time,
            exit_time=ts,
            entry_bar=ep.entry_bar,
            exit_bar=bar,
            quantity=ep.max_qty,
            entry_price=(ep.in_notional / ep.in_qty).quantize(PRICE_QUANTUM),
            exit_price=(out_notional / out_qty).quantize(PRICE_QUANTUM) if out_qty else mark or ZERO,
            pnl=pnl,
            return_=float(pnl / ep.in_notional),
            fees=ep.fees,
            open=mark is not None,
        )

    def open_trade(self, mark: Decimal) -> Trade | None:
        """The trade still open, marked to `mark` (no exit time)."""
        if self._ep is None:
            return None
        return self._close(self._ep, None, None, mark)
