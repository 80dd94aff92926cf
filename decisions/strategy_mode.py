"""The bridge's strategy mode: per-symbol strategies fed one bar per signal, sized like the backtester.

Live equals backtest (see the README's backtesting section): the strategy sees bar t at its close; when
its target changes, the order is made when bar t+1 arrives — sized at bar t+1's open with the equity at
that open, through the same risk gate — and sent as a market order `at_open_of` bar t+1, which the
simulator fills at that bar's open from its own market data, whichever of the bar and the order it
sees first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bus.jetstream import Follower
from execsim.backtest.runner import to_decimal
from execsim.backtest.sizing import wanted_position
from schemas.decisions import Decision
from schemas.market import Bar
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from strategies.base import Strategy, StrategyError, StrategyState
from strategies.registry import build_strategy

ANY_SYMBOL = "*"
DEFAULT_STRATEGY = "hybrid"
BPS = Decimal(10_000)


class StrategyConfigError(ValueError):
    """A strategy configuration the bridge refuses to start with; the message says what to fix."""


class StrategyChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: str = DEFAULT_STRATEGY
    params: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """A target decided on one bar, to be executed at the next bar's open."""

    target: float
    confidence: float
    decision: Decision


class SymbolStrategy:
    """One strategy's state for one symbol, and the plan its last bar left (if the target changed)."""

    def __init__(self, strategy: Strategy, symbol: str) -> None:
        self.name = strategy.name
        self.state: StrategyState = strategy.new_state(symbol)
        self.last_target = 0.0
        self.plan: Plan | None = None

    def take_plan(self) -> Plan | None:
        plan, self.plan = self.plan, None
        return plan

    def on_bar(self, bar: Bar) -> Decision:
        target = self.state.update(float(bar.open), float(bar.high), float(bar.low), float(bar.close))
        decision = self.state.decision(bar.ts)
        if target != self.last_target:
            self.last_target = target
            self.plan = Plan(target, decision.confidence, decision)
        return decision


@dataclass
class StrategyMode:
    choices: dict[str, StrategyChoice] = field(default_factory=dict)
    commission: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    fractional: bool = False
    _symbols: dict[str, SymbolStrategy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for symbol in self.choices:
            self._build(symbol)  # a bad name or parameter fails at start, not on the first signal

    def _build(self, symbol: str) -> Strategy:
        choice = self.choices.get(symbol) or self.choices.get(ANY_SYMBOL) or StrategyChoice()
        try:
            return build_strategy(choice.strategy, choice.params)
        except StrategyError as exc:
            raise StrategyConfigError(f"strategy for {symbol}: {exc.message}") from None

    def for_symbol(self, symbol: str) -> SymbolStrategy:
        runner = self._symbols.get(symbol)
        if runner is None:
            runner = self._symbols[symbol] = SymbolStrategy(self._build(symbol), symbol)
        return runner

    def size(self, target: float, equity: Decimal, price: Decimal) -> Decimal:
        """The backtester's sizing: target × equity / (price × (1 + costs)), whole units unless fractional."""
        cost = self.commission + self.slippage_bps / BPS
        return wanted_position(to_decimal(target), equity, price, cost, self.fractional)

    def warm(self, signal: NormalizedSignal) -> None:
        """A bar decided before a restart: update the strategy, and drop the plan the bar executed."""
        runner = self.for_symbol(signal.symbol)
        runner.take_plan()
        runner.on_bar(Bar.from_signal(signal))


def parse_choices(raw: str | None, file: Path | None = None) -> dict[str, StrategyChoice]:
    """`{"AAPL": {"strategy": "momentum", "params": {...}}, "*": {...}}` from the file, then the string."""
    data: dict[str, Any] = {}
    for source, text in (("strategies file", file.read_text() if file else None), ("TRADING_MCP_STRATEGIES", raw)):
        if not text:
            continue
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StrategyConfigError(f"{source} is not JSON: {exc}") from None
        if not isinstance(loaded, Mapping):
            raise StrategyConfigError(f'{source} must be an object like {{"AAPL": {{"strategy": "momentum"}}}}')
        data.update(loaded)
    out: dict[str, StrategyChoice] = {}
    for symbol, value in data.items():
        try:
            out[symbol] = StrategyChoice.model_validate(value)
        except ValidationError as exc:
            raise StrategyConfigError(f"strategy for {symbol}: {exc.errors()[0]['msg']}") from None
    return out


async def replay_acked_signals(js: JetStreamContext, durable: str, handler: Callable[[NormalizedSignal], None]) -> int:
    """Hand `handler` every signal the durable consumer already acked, oldest first; returns how many."""
    try:
        info = await js.consumer_info("SIGNALS", durable)
    except NotFoundError:
        return 0
    floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
    if floor == 0:
        return 0
    count = 0

    def on_signal(msg: Msg) -> None:
        nonlocal count
        if msg.metadata.sequence.stream <= floor:
            handler(NormalizedSignal.model_validate_json(msg.data))
            count += 1

    follower = Follower(js, stream="SIGNALS", subject=Subject.SIGNALS_NORMALIZED.value, handler=on_signal)
    await follower.start()
    await follower.caught_up.wait()
    await follower.stop()
    return count
