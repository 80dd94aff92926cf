"""Offline account state for MCP tests: the real signal log and portfolio, filled through their own APIs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from authority.service import Authority
from bus.account_view import AppState
from bus.jetstream import connect, ensure_streams, publish
from bus.journal import ensure_journal
from execsim.engine import Engine, EngineConfig
from execsim.service import MARKET_DURABLE, ExecSimService, start_consumers
from schemas.orders import Fill
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tests.conftest import wait_for
from tools.clock import LiveClock, TestClock
from tools.risk import RiskLimits, TradingState

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


# a default read-only server's tools (mcp_server.toolsets.DEFAULT_READ_ONLY); strategies is opt-in
READ_ONLY_TOOLS = {
    "list_signals",
    "get_market_snapshot",
    "get_positions",
    "list_fills",
    "get_risk_status",
    "check_order",
    "get_safety_status",  # in every server, whatever the toolsets
}
STRATEGY_TOOLS = {"list_strategies", "evaluate_strategy", "run_backtest"}
ACCOUNTS_TOOLS = {"compare_accounts"}  # opt-in: the accounts the caller holds, compared
ORDER_TOOLS = {"preview_order", "place_order", "cancel_order", "list_orders", "get_order"}
APP_TOOLS = {"confirm_order_ticket"}  # the order ticket's Confirm: visible to the app only, never to the model
ALL_TOOLS = READ_ONLY_TOOLS - {"check_order"} | ORDER_TOOLS  # a default server's (preview_order checks)


TEST_AUTHORITY_KEY = b"test-authority-key"
TEST_OPERATOR_TOKEN = "test-operator-token"


@dataclass
class LiveAccount:
    """A real account on the fixture nats-server: the account authority, the execution simulator's
    consumers and this process's folded view of the account, all running in this process."""

    state: AppState
    engine: Engine
    clock: TestClock
    authority: Authority


@contextlib.asynccontextmanager
async def live_account(
    url: str, limits: RiskLimits | None = None, max_signal_age_s: float = 10**9
) -> AsyncIterator[LiveAccount]:
    nc = await connect(url, "mcp-orders-test")
    js = nc.jetstream()
    await ensure_streams(js)
    await ensure_journal(js)
    engine = Engine(LiveClock(), EngineConfig(slippage_bps=Decimal(0)))
    service = ExecSimService(js, engine, MARKET_DURABLE)
    stop = asyncio.Event()
    clock = TestClock()
    authority = Authority(
        nc,
        js,
        key=TEST_AUTHORITY_KEY,
        limits=limits or RiskLimits(max_position=Decimal(100)),
        clock=clock,
        max_signal_age_s=max_signal_age_s,
        operator_token=TEST_OPERATOR_TOKEN,
    )
    await authority.start()
    tasks = [*start_consumers(js, service, stop), *authority.tasks(stop)]
    state = AppState(nc, js, clock=clock)
    await state.start()
    try:
        yield LiveAccount(state, engine, clock, authority)
    finally:
        stop.set()
        await authority.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await state.stop()
        await nc.close()


async def publish_signal(
    state: AppState, n: int, symbol: str = "AAPL", price: str = "190.25", engine: Engine | None = None, **extra: Any
) -> None:
    """A signal through the stream, as the gateway sends it; returns once the state (and the engine) have it."""
    signal = add_signal(offline_state(), n, symbol=symbol, price=price, **extra)
    await publish(state.js, Subject.SIGNALS_NORMALIZED, signal, msg_id=signal.signal_id, correlation_id=f"corr_{n}")
    deadline = asyncio.get_running_loop().time() + 10
    while signal.signal_id not in {s.signal_id for s in state.signals.recent(10_000, symbol)}:
        assert asyncio.get_running_loop().time() < deadline, "the state never saw the signal"
        async with state.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), 1)
    if engine is not None:
        await wait_for(lambda: engine.last_price(symbol) == Decimal(price), 10, "the simulator to see the price")


async def operator_sets(
    acct: LiveAccount, *, state: TradingState | None = None, reason: str = "", **patch: Any
) -> None:
    """The operator's path (a signed control record in KV): returns once this process's fold shows it."""
    from authority.control import read_signed, write_signed
    from tools.risk_control import next_control, sign, verify

    signed = await read_signed(acct.state.js)
    previous = verify(signed, TEST_OPERATOR_TOKEN) if signed is not None else None
    control = next_control(previous, acct.clock.now(), patch=patch, state=state, reason=reason)
    await write_signed(acct.state.js, sign(control, TEST_OPERATOR_TOKEN))
    await wait_for(lambda: acct.state.account.control_revision >= control.revision, 10, "the authority to apply it")


async def preview_and_place(client: Any, args: dict[str, Any]) -> Any:
    """What a client with neither elicitation nor MCP Apps does under the default policy: preview the order, then
    place it with the preview's token (a preview the gate would deny has no token: then place_order refuses)."""
    preview = await client.call_tool("preview_order", args)
    token = (preview.structured_content or {}).get("confirmation_token")
    return await client.call_tool("place_order", {**args, "confirmation_token": token} if token else args)
