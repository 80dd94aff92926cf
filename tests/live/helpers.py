"""An in-process simulator (orders + market consumers, as `execsim.service.run_execsim`) and a strategy-mode
bridge on a real nats-server; backtests of the same bundled bars; live fills as backtest trades."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal

from authority.service import Authority
from bus.account_view import AppState
from bus.jetstream import connect, ensure_streams
from bus.journal import ensure_journal
from decisions.bridge import DURABLE as BRIDGE_DURABLE
from decisions.bridge import Bridge
from decisions.strategy_mode import StrategyChoice, StrategyMode
from execsim.backtest.data import Bars, load_bundled
from execsim.backtest.result import BacktestConfig
from execsim.backtest.runner import run_backtest
from execsim.backtest.trades import Trade, TradeBook
from execsim.engine import Engine, EngineConfig
from execsim.service import MARKET_DURABLE, ExecSimService, rebuild, start_consumers
from strategies.registry import build_strategy
from tools.clock import LiveClock
from tools.risk import RiskLimits

NO_LIMIT = Decimal(10) ** 15


@dataclass
class Live:
    state: AppState
    engine: Engine
    bridge: Bridge


def first_bars(symbol: str, n: int) -> Bars:
    full = load_bundled(symbol)
    return replace(
        full,
        ts=full.ts[:n],
        open=full.open[:n],
        high=full.high[:n],
        low=full.low[:n],
        close=full.close[:n],
        volume=full.volume[:n],
    )


def backtest_trades(symbol: str, n: int, choice: StrategyChoice, commission: Decimal) -> list[Trade]:
    config = BacktestConfig(cash=Decimal(100_000), commission=commission)
    return run_backtest(build_strategy(choice.strategy, choice.params), first_bars(symbol, n), config).trades


def live_trades(live: Live, symbol: str, last_close: Decimal) -> list[Trade]:
    """Round trips from the live fills, timed by the bar each order was sent to fill at (its `at_open_of`)."""
    book = TradeBook()
    for fill in live.state.portfolio.fills:
        if fill.symbol != symbol:
            continue
        intent = live.state.account.intents[fill.client_order_id]
        assert intent.at_open_of is not None
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        book.on_fill(signed, fill.price, fill.fee, intent.at_open_of, 0)
    trades = list(book.trades)
    still_open = book.open_trade(last_close)
    return [*trades, still_open] if still_open is not None else trades


async def bridge_done(live: Live, signals: int) -> bool:
    """The bridge acked `signals` signals and every order it sent has ended."""
    info = await live.state.js.consumer_info("SIGNALS", BRIDGE_DURABLE)
    acked = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
    return acked >= signals and not live.state.account.working


@contextlib.asynccontextmanager
async def strategy_pipeline(
    nats_url: str,
    choices: dict[str, StrategyChoice],
    commission: Decimal = Decimal(0),
    snapshot_every: float = 30.0,
) -> AsyncIterator[Live]:
    nc = await connect(nats_url, "live-test")
    js = nc.jetstream()
    await ensure_streams(js)
    await ensure_journal(js)
    engine = Engine(LiveClock(), EngineConfig(fee_bps=commission * 10_000))
    await rebuild(js, engine, MARKET_DURABLE)  # as after a restart of the simulator
    service = ExecSimService(js, engine, MARKET_DURABLE)
    stop = asyncio.Event()
    # replayed history bars fire "now" from the test's point of view, but the strategy runs on bars from 2000:
    # the freshness limit is about the signal's firing time, which these test signals do not carry
    authority = Authority(nc, js, key=b"live-test", limits=RiskLimits(max_position=NO_LIMIT), max_signal_age_s=10**9)
    await authority.start()
    tasks = [*start_consumers(js, service, stop), *authority.tasks(stop)]
    state = AppState(nc, js)
    await state.start()
    bridge = Bridge(
        state, "strategy", strategies=StrategyMode(choices, commission=commission), snapshot_every=snapshot_every
    )
    tasks.append(asyncio.create_task(bridge.run(stop)))
    try:
        yield Live(state, engine, bridge)
    finally:
        stop.set()
        await authority.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await state.stop()
        await nc.close()
