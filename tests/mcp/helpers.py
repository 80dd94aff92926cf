"""Offline account state for MCP tests: the real signal log and portfolio, filled through their own APIs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from mcp_server.state import AppState
from schemas.orders import Fill
from schemas.signals import NormalizedSignal
from tools.clock import TestClock

CLOCK = TestClock()


def offline_state() -> AppState:
    """AppState without NATS: tools and resources only read the signal log and the portfolio."""
    return AppState(nc=None, js=None)  # type: ignore[arg-type]


def add_signal(state: AppState, n: int, symbol: str = "AAPL", price: str = "190.25", **extra: Any) -> NormalizedSignal:
    signal = NormalizedSignal(
        signal_id=f"sig_{n}",
        source="generic",
        symbol=symbol,
        price=Decimal(price),
        received_at=CLOCK.now() + timedelta(minutes=n),
        correlation_id=f"corr_{n}",
        **extra,
    )
    assert state.signals.add(signal)
    return signal


def add_fill(state: AppState, n: int, side: str, quantity: str, price: str, symbol: str = "AAPL") -> Fill:
    fill = Fill(
        fill_id=f"fill_{n}",
        client_order_id=f"coid_{n}",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal("0.10"),
        ts=CLOCK.now() + timedelta(minutes=n),
        correlation_id=f"corr_{n}",
    )
    assert state.portfolio.apply(fill)
    return fill
