"""How a target fraction of equity becomes an order quantity (shared by the event-driven and sweep paths).

quantity wanted = target · equity / (price · (1 + commission + slippage)), rounded toward zero to whole
units (or to 4 decimals when fractional), where equity = cash + position · price at the fill bar's open.
The divisor keeps a fully invested position affordable after its costs. With equity ≤ 0 the wanted
position is 0.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal

UNIT = Decimal(1)
FRACTION = Decimal("0.0001")


def wanted_position(target: Decimal, equity: Decimal, price: Decimal, cost: Decimal, fractional: bool) -> Decimal:
    if equity <= 0 or target == 0:
        return Decimal(0)
    raw = target * equity / (price * (1 + cost))
    return raw.quantize(FRACTION if fractional else UNIT, rounding=ROUND_DOWN)


def wanted_position_float(target: float, equity: float, price: float, cost: float, fractional: bool) -> float:
    if equity <= 0.0 or target == 0.0:
        return 0.0
    raw = target * equity / (price * (1.0 + cost))
    return math.trunc(raw * 10_000) / 10_000 if fractional else float(math.trunc(raw))
