"""Builders for engine tests: intents and bars with known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from execsim.engine import Engine, EngineConfig
from schemas.market import Bar
from schemas.orders import Fill, OrderEvent, OrderIntent
from tools.clock import TestClock

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
D = Decimal


def engine(**config: object) -> tuple[Engine, TestClock]:
    clock = TestClock(T0)
    return Engine(clock, EngineConfig(**config)), clock  # type: ignore[arg-type]


def intent(
    coid: str,
    side: str = "buy",
    quantity: str | int = 10,
    order_type: str = "market",
    limit: str | None = None,
    stop: str | None = None,
    tif: str = "GTC",
    symbol: str = "AAPL",
    reference: str = "100",
    replaces: str | None = None,
    at: datetime = T0,
) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        quantity=D(quantity),
        order_type=order_type,  # type: ignore[arg-type]
        limit_price=D(limit) if limit else None,
        stop_price=D(stop) if stop else None,
        time_in_force=tif,  # type: ignore[arg-type]
        replaces=replaces,
        reference_price=D(reference),
        origin="mcp",
        created_at=at,
        correlation_id=f"corr-{coid}",
    )


def bar(o: str, h: str, low: str, c: str, volume: str = "0", minutes: float = 1, symbol: str = "AAPL") -> Bar:
    return Bar(
        symbol=symbol,
        ts=T0 + timedelta(minutes=minutes),
        open=D(o),
        high=D(h),
        low=D(low),
        close=D(c),
        volume=D(volume),
    )


def statuses(events: list[OrderEvent | Fill]) -> list[str]:
    return [e.status if isinstance(e, OrderEvent) else "fill" for e in events]


def fills(events: list[OrderEvent | Fill]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]
