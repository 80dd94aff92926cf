"""The bridge's strategy mode: per-symbol strategies fed one bar per signal, sized like the backtester.

Live equals backtest (see the README's backtesting section): the strategy sees bar t at its close; when
its target changes, the order is made when bar t+1 arrives — sized at bar t+1's open with the equity at
that open, through the same risk gate — and sent as a market order `at_open_of` bar t+1, which the
simulator fills at that bar's open from its own market data, whichever of the bar and the order it
sees first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bus.jetstream import ack_floor, read_range
from bus.snapshot import ENCODING, StaleSnapshot, get_parts, open_bucket, put_parts, store_periodically
from execsim.backtest.runner import to_decimal
from execsim.backtest.sizing import wanted_position
from schemas.decisions import Decision
from schemas.market import Bar
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from strategies.base import Strategy, StrategyError, StrategyState
from strategies.registry import build_strategy
from strategies.state_codec import StateMismatch, dump_state, load_state

log = structlog.get_logger("bridge")

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

    def config_digest(self) -> str:
        """Which strategies with which parameters (a snapshot of other ones is not used)."""
        choices = {symbol: choice.model_dump(mode="json") for symbol, choice in sorted(self.choices.items())}
        return hashlib.sha256(json.dumps(choices, sort_keys=True).encode()).hexdigest()[:16]

    def to_snapshot(self) -> dict[str, Any]:
        """Every symbol's strategy state, last target and pending plan, as plain data (`strategies.state_codec`)."""
        symbols: dict[str, Any] = {}
        for symbol, runner in self._symbols.items():
            plan = runner.plan
            symbols[symbol] = {
                "strategy": runner.name,
                "state": dump_state(runner.state),
                "last_target": runner.last_target,
                "plan": None if plan is None else [plan.target, plan.confidence, plan.decision.model_dump(mode="json")],
            }
        return {"format": SNAPSHOT_FORMAT, "config": self.config_digest(), "symbols": symbols}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take every symbol's state from `to_snapshot` of a StrategyMode with the same strategies and parameters.
        Raises (StateMismatch, ValueError, KeyError, TypeError) without changing anything when it does not fit."""
        if data.get("format") != SNAPSHOT_FORMAT:
            raise StateMismatch(f"strategy snapshot format {data.get('format')!r}, not {SNAPSHOT_FORMAT}")
        if data.get("config") != self.config_digest():
            raise StateMismatch("the snapshot is of other strategies or parameters")
        restored: dict[str, SymbolStrategy] = {}
        for symbol, stored in data["symbols"].items():
            runner = SymbolStrategy(self._build(symbol), symbol)
            if stored["strategy"] != runner.name:
                raise StateMismatch(f"{symbol}: the snapshot ran {stored['strategy']}, this bridge runs {runner.name}")
            load_state(runner.state, stored["state"])
            runner.last_target = float(stored["last_target"])
            if stored["plan"] is not None:
                target, confidence, decision = stored["plan"]
                runner.plan = Plan(float(target), float(confidence), Decision.model_validate(decision))
            restored[symbol] = runner
        self._symbols = restored

    def copy(self) -> StrategyMode:
        """A StrategyMode with the same configuration and this one's state (through its snapshot)."""
        twin = StrategyMode(self.choices, self.commission, self.slippage_bps, self.fractional)
        twin.restore(json.loads(json.dumps(self.to_snapshot())))
        return twin


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


SNAPSHOT_FORMAT = 1
SNAPSHOT_BUCKET = "STRATEGY_SNAPSHOT"
SNAPSHOT_EVERY_S = 30.0  # a bridge stores its strategies' state this often
ABSORB_EVERY_S = 5.0  # and folds the acked signals into its copy of that state this often
LIVE_BATCH = 16  # signals folded between two turns of the event loop beside the live bridge
REPLAY_TIMEOUT_S = 3600.0


async def replay_acked_signals(
    js: JetStreamContext,
    durable: str,
    handler: Callable[[NormalizedSignal], None],
    after: int = 0,
    upto: int | None = None,
    batch: int = 512,
) -> tuple[int, int]:
    """Hand `handler` every signal after sequence `after` that the durable consumer already acked (up to its ack
    floor, or `upto`), oldest first; returns how many and the sequence read up to."""
    floor = await ack_floor(js, "SIGNALS", durable) if upto is None else upto
    count = 0

    def on_signal(msg: Msg) -> None:
        nonlocal count
        handler(NormalizedSignal.model_validate_json(msg.data))
        count += 1

    await read_range(
        js,
        stream="SIGNALS",
        subject=Subject.SIGNALS_NORMALIZED.value,
        first=after + 1,
        last=floor,
        handler=on_signal,
        batch=batch,
        timeout=REPLAY_TIMEOUT_S,
    )
    return count, max(floor, after)


async def _signals_created(js: JetStreamContext) -> str | None:
    info = await js.stream_info("SIGNALS")
    return None if info.created is None else info.created.isoformat()


async def read_strategy_snapshot(js: JetStreamContext, account: str, mode: StrategyMode, floor: int) -> int:
    """Restore `mode` from the account's stored strategy state if it is of this SIGNALS stream (not reset since),
    of these strategies and parameters, and not past the consumer's ack floor; returns the signal sequence it
    reflects (0: not used, `mode` unchanged, logged: replay from the start)."""
    try:
        kv = await open_bucket(js, bucket=SNAPSHOT_BUCKET)
        stored = None if kv is None else await get_parts(kv, account)
        if stored is None:
            log.info("no strategy snapshot: the acked signals are replayed from the start", account=account)
            return 0
        head, blob = stored
        if head.get("encoding") != ENCODING:
            raise StaleSnapshot(f"encoding {head.get('encoding')!r}")
        if head.get("created") != await _signals_created(js):
            raise StaleSnapshot("the SIGNALS stream is not the one the snapshot folded (reset or re-created)")
        seq = int(head["seq"])
        if seq > floor:
            raise StaleSnapshot(f"the snapshot (signal {seq}) is past the consumer's ack floor ({floor})")
        data = await asyncio.to_thread(lambda: json.loads(zlib.decompress(blob)))
        mode.restore(data)
        log.info("strategies restored from their snapshot", account=account, signal_seq=seq, size=len(blob))
        return seq
    except Exception as exc:  # stale, unreadable, another format or configuration: all alike
        log.warning("strategy snapshot not used; replaying the acked signals", account=account, error=repr(exc))
        return 0


async def write_strategy_snapshot(js: JetStreamContext, account: str, mode: StrategyMode, seq: int) -> int:
    """Store `mode`'s state as the account's strategy snapshot at signal `seq`; returns its compressed size."""
    kv = await open_bucket(js, create=True, bucket=SNAPSHOT_BUCKET)
    assert kv is not None
    blob = zlib.compress(json.dumps(mode.to_snapshot(), separators=(",", ":")).encode(), 1)
    head = {"format": SNAPSHOT_FORMAT, "encoding": ENCODING, "seq": seq, "created": await _signals_created(js)}
    await put_parts(kv, account, blob, head)
    return len(blob)


@dataclass
class StrategyFold:
    """The strategies' state at the bridge consumer's ack floor: what a restart would warm up to. The live bridge
    keeps one beside its own state (which runs ahead, bar by bar) and stores it (`snapshot_loop`)."""

    mode: StrategyMode
    seq: int
    routed: Callable[[NormalizedSignal], bool]
    restored_from: int = 0  # the warm-up's snapshot (its signal sequence; 0: none, every acked signal replayed)
    replayed: int = 0  # signals the warm-up replayed after it

    def absorb(self, signal: NormalizedSignal) -> None:
        if self.routed(signal):
            self.mode.warm(signal)

    async def catch_up(self, js: JetStreamContext, durable: str, batch: int = LIVE_BATCH) -> int:
        """Fold the signals acked since; returns how many."""
        count, self.seq = await replay_acked_signals(js, durable, self.absorb, after=self.seq, batch=batch)
        return count


async def warm_up(
    js: JetStreamContext, account: str, durable: str, mode: StrategyMode, routed: Callable[[NormalizedSignal], bool]
) -> StrategyFold:
    """Bring `mode` to the state of every signal the consumer acked: from the stored snapshot and the signals after
    it, or from all of them. Returns a fold at that point, for the snapshot loop."""
    started = time.perf_counter()
    floor = await ack_floor(js, "SIGNALS", durable)
    seq = restored = await read_strategy_snapshot(js, account, mode, floor)

    def warm(signal: NormalizedSignal) -> None:
        if routed(signal):
            mode.warm(signal)

    count, seq = await replay_acked_signals(js, durable, warm, after=seq, upto=floor)
    log.info(
        "strategy bar history rebuilt",
        account=account,
        replayed=count,
        signal_seq=seq,
        seconds=round(time.perf_counter() - started, 3),
    )
    return StrategyFold(mode.copy(), seq, routed, restored_from=restored, replayed=count)


async def snapshot_loop(
    js: JetStreamContext,
    account: str,
    durable: str,
    fold: StrategyFold,
    stop: asyncio.Event,
    every: float = SNAPSHOT_EVERY_S,
) -> None:
    """Fold the acked signals into `fold` every ABSORB_EVERY_S (a few at a time, beside the live bridge) and store it
    every `every` s, so the next start (a restart, another replica) replays only what came after. The first store is
    right away: the warm-up may just have replayed a long history."""
    stored_seq = -1

    async def step(due: bool) -> bool:
        nonlocal stored_seq
        await fold.catch_up(js, durable)
        if not due or fold.seq == stored_seq:  # nothing acked since the last one: nothing to store
            return False
        size = await write_strategy_snapshot(js, account, fold.mode, fold.seq)
        stored_seq = fold.seq
        log.debug("strategy snapshot stored", account=account, signal_seq=fold.seq, size=size)
        return True

    await store_periodically(stop, step, every, ABSORB_EVERY_S, f"strategy snapshot of account {account}")
