"""How a resting order meets a bar: the intrabar path, gaps at the open, and the first touch.

The path through a bar is open → high → low → close, or — with the adaptive path (the default)
— open → low → high → close when the open is nearer the low than the high (the nearer extreme
is assumed to come first). Prices move continuously between these points, so a level between
two points is touched on the way. A level already passed at the open (a gap) is filled at the
open, not at the level.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, NamedTuple

from schemas.market import Bar

Kind = Literal["taker", "maker"]


def bar_path(bar: Bar, mode: str = "adaptive") -> tuple[Decimal, Decimal, Decimal, Decimal]:
    if mode == "adaptive" and bar.open - bar.low < bar.high - bar.open:
        return (bar.open, bar.low, bar.high, bar.close)
    return (bar.open, bar.high, bar.low, bar.close)


class Touch(NamedTuple):
    """What the path did to an order: triggered its stop (at `trigger_price`) and/or reached a fill.

    `fill_at` is the trade price reached; `kind` "taker" means the order takes at that price (a
    market order, a triggered stop, or a limit that was already marketable there) and pays spread
    and slippage, capped at its limit; "maker" means a resting limit was touched: it fills at the limit.
    """

    triggered: bool
    trigger_price: Decimal | None
    fill_at: Decimal | None
    kind: Kind = "taker"


def _within(price: Decimal, limit: Decimal | None, buy: bool) -> bool:
    """True when `price` is at or better than the limit: a buy at or below it, a sell at or above it."""
    assert limit is not None, "a limit order carries its limit price"
    return price <= limit if buy else price >= limit


def walk(
    side: str,
    order_type: str,
    limit: Decimal | None,
    stop: Decimal | None,
    triggered: bool,
    points: tuple[Decimal, ...],
) -> Touch:
    """Walk `points` (a bar path, or a single price) and return the first thing that happens."""
    buy = side == "buy"
    has_stop = order_type in ("stop", "stop_limit")
    has_limit = order_type in ("limit", "stop_limit")
    trig = triggered or not has_stop
    newly = False
    trigger_price: Decimal | None = None
    cur = points[0]
    if not trig:
        assert stop is not None, "a stop order carries its stop price"
        if cur >= stop if buy else cur <= stop:
            trig, newly, trigger_price = True, True, cur
    if trig and (not has_limit or _within(cur, limit, buy)):
        return Touch(newly, trigger_price, cur, "taker")
    for nxt in points[1:]:
        if not trig:
            assert stop is not None
            if (cur < stop <= nxt) if buy else (cur > stop >= nxt):
                trig, newly, trigger_price, cur = True, True, stop, stop
                if not has_limit or _within(stop, limit, buy):
                    return Touch(True, stop, stop, "taker")
            else:
                cur = nxt
                continue
        if _within(nxt, limit, buy):
            return Touch(newly, trigger_price, limit, "maker")
        cur = nxt
    return Touch(newly, trigger_price, None)
