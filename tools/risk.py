"""The pre-trade risk gate. Every order passes it; a denial carries a stable reason code.

This is the minimal gate of the walking skeleton (max position per symbol, allowed symbols);
the full engine (notional, exposure, rate, drawdown, trading states) grows here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel, Field

from schemas.common import Side


class RiskLimits(BaseModel, frozen=True):
    max_position: Decimal = Field(default=Decimal(1000), gt=0, description="Max absolute units per symbol")
    max_position_per_symbol: dict[str, Decimal] = Field(default_factory=dict)
    allowed_symbols: frozenset[str] | None = Field(default=None, description="None allows every symbol")

    def position_limit(self, symbol: str) -> Decimal:
        return self.max_position_per_symbol.get(symbol, self.max_position)


@dataclass(frozen=True)
class Verdict:
    approved: bool
    reason_code: str = "approved"
    message: str = ""


@dataclass
class RiskGate:
    limits: RiskLimits = field(default_factory=RiskLimits)

    def check(self, *, symbol: str, side: Side, quantity: Decimal, projected_position: Decimal) -> Verdict:
        """`projected_position` is the current position plus orders already sent but not yet filled."""
        if quantity <= 0:
            return Verdict(False, "invalid_quantity", "quantity must be positive")
        if self.limits.allowed_symbols is not None and symbol not in self.limits.allowed_symbols:
            return Verdict(False, "symbol_not_allowed", f"{symbol} is not in the allowed symbols")
        after = projected_position + (quantity if side == "buy" else -quantity)
        limit = self.limits.position_limit(symbol)
        if abs(after) > limit and abs(after) > abs(projected_position):
            return Verdict(
                False,
                "max_position",
                f"{side} {quantity} {symbol} would make the position {after}, beyond the limit of {limit}",
            )
        return Verdict(True)
