"""The bridge: signals in, order requests out to the account authority, which alone admits them.

Mode `follow` executes the sender's explicit action (buy / sell / close). Mode `strategy` runs the
configured strategy of the signal's symbol on its bars (`decisions.strategy_mode`): a target decided
on bar t is sized at bar t+1's open and sent as a market order at that open, as in the backtester.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import structlog
from nats.aio.msg import Msg

from bus.account_view import AppState
from bus.jetstream import consume
from decisions.strategy_mode import SNAPSHOT_EVERY_S, Plan, StrategyFold, StrategyMode, snapshot_loop, warm_up
from observability import metrics
from schemas.account import OrderCommand
from schemas.common import DEFAULT_ACCOUNT, Side
from schemas.market import Bar
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.clock import Clock, LiveClock
from tools.freshness import fired_at

log = structlog.get_logger("bridge")

DURABLE = "bridge"
Mode = Literal["follow", "strategy"]
STRATEGY_PREFIX = "strat-"
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class Order:
    side: Side
    quantity: Decimal


@dataclass
class Bridge:
    state: AppState
    mode: Mode = "follow"
    default_quantity: Decimal = Decimal(1)
    clock: Clock = field(default_factory=LiveClock)
    strategies: StrategyMode | None = None
    snapshot_every: float = SNAPSHOT_EVERY_S  # strategy mode: how often the strategies' state is stored (0: never)

    _last_seq: int = field(default=0, init=False)  # the journal entry of this bridge's latest answer
    warmed: StrategyFold | None = field(default=None, init=False)  # strategy mode: how its start warmed up

    def __post_init__(self) -> None:
        if self.mode == "strategy" and self.strategies is None:
            self.strategies = StrategyMode()

    @property
    def durable(self) -> str:
        """This account's bridge consumer (the default account keeps the name it had)."""
        account = self.state.account_id
        return DURABLE if account == DEFAULT_ACCOUNT else f"{DURABLE}-{account}"

    def _routed(self, signal: NormalizedSignal) -> bool:
        return self.state.account_id in signal.accounts

    async def run(self, stop: asyncio.Event) -> None:
        snapshots: asyncio.Task[None] | None = None
        if self.strategies is not None:
            # the state of every acked signal: from the stored snapshot and the signals after it, or all of them
            account, js = self.state.account_id, self.state.js
            fold = self.warmed = await warm_up(js, account, self.durable, self.strategies, self._routed)
            if self.snapshot_every > 0:
                loop = snapshot_loop(js, account, self.durable, fold, stop, self.snapshot_every)
                snapshots = asyncio.create_task(loop, name=f"strategy-snapshot-{account}")
        try:
            await consume(
                self.state.js,
                stream="SIGNALS",
                durable=self.durable,
                subject=Subject.SIGNALS_NORMALIZED.value,
                handler=self.handle,
                stop=stop,
                key=symbol_of,  # one lane per symbol: a symbol's signals in order, symbols side by side
                # strategy mode: the ack floor is what the strategies saw, so a restart warms up to it and gets every
                # later signal again (none acked above it while another symbol's older signal was still working)
                acks_in_order=self.strategies is not None,
            )
        finally:
            if snapshots is not None:
                snapshots.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await snapshots

    def decide(self, signal: NormalizedSignal) -> Order | None:
        """follow mode: the sender's action; `close` flattens the projected position (`_decide_and_publish`
        has the fold hold this bridge's own orders first)."""
        if signal.action is None:
            return None
        if signal.action == "close":
            position = self.state.account.projected_position(signal.symbol)
            if position == 0:
                return None
            return Order("sell" if position > 0 else "buy", abs(position))
        return Order(signal.action, signal.quantity or self.default_quantity)

    async def handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        signal = NormalizedSignal.model_validate_json(msg.data)
        if not self._routed(signal):
            return  # routed to other accounts only
        structlog.contextvars.bind_contextvars(correlation_id=signal.correlation_id)
        try:
            metrics.mcp_signals_received_total.inc()
            if self.strategies is not None:
                await self._strategy_step(signal, self.strategies)
                return
            if self._decided(f"sig-{signal.signal_id}"):
                log.info("signal already decided", signal_id=signal.signal_id)
                return
            await self._decide_and_publish(signal)
        finally:
            metrics.mcp_processing_duration_seconds.observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("correlation_id")

    async def _decide_and_publish(self, signal: NormalizedSignal) -> None:
        if signal.action == "close":
            await self.state.folded(self._last_seq)  # the position must include this bridge's last orders
        order = self.decide(signal)
        if order is None:
            metrics.mcp_decisions_generated_total.labels(self.mode, "no_action").inc()
            log.info("no action", signal_id=signal.signal_id, action=signal.action)
            return
        await self._ask_authority(
            signal,
            order,
            coid=f"sig-{signal.signal_id}",
            price=signal.close or signal.price,
            strategy=self.mode,
            confidence=1.0,
            rationale={"mode": "follow", "action": signal.action},
        )

    async def _strategy_step(self, signal: NormalizedSignal, strategies: StrategyMode) -> None:
        """Execute the plan the previous bar left at this bar's open, then show the strategy this bar."""
        bar = Bar.from_signal(signal)
        runner = strategies.for_symbol(signal.symbol)
        plan = runner.take_plan()
        if plan is not None:
            if self._decided(f"{STRATEGY_PREFIX}{signal.signal_id}"):
                log.info("signal already decided", signal_id=signal.signal_id)
            else:
                await self._execute_plan(signal, bar, runner.name, plan, strategies)
        decision = runner.on_bar(bar)
        if runner.plan is not None:
            metrics.mcp_strategy_confidence.labels(runner.name).observe(decision.confidence)
            log.info("target changed", symbol=signal.symbol, target=decision.target, summary=decision.summary)
        else:
            outcome = "hold" if decision.status == "ready" else "insufficient_data"
            metrics.mcp_decisions_generated_total.labels(runner.name, outcome).inc()

    async def _execute_plan(
        self, signal: NormalizedSignal, bar: Bar, strategy: str, plan: Plan, strategies: StrategyMode
    ) -> None:
        await self.state.folded(self._last_seq)
        await self._settled(signal.symbol)
        price = bar.open
        position = self.state.account.projected_position(signal.symbol)
        want = strategies.size(plan.target, self._equity_at(signal.symbol, price), price)
        delta = want - position
        if delta == 0:
            metrics.mcp_decisions_generated_total.labels(strategy, "no_action").inc()
            log.info("target already held", symbol=signal.symbol, target=plan.target, position=str(position))
            return
        rationale = {
            "mode": "strategy",
            "target": plan.target,
            "decided_on_bar": plan.decision.ts.isoformat(),
            "summary": plan.decision.summary,
            "indicators": plan.decision.rationale,
        }
        await self._ask_authority(
            signal,
            Order("buy" if delta > 0 else "sell", abs(delta)),
            coid=f"{STRATEGY_PREFIX}{signal.signal_id}",
            price=price,
            strategy=strategy,
            confidence=plan.confidence,
            rationale=rationale,
            at_open_of=bar.ts,
        )

    def _equity_at(self, symbol: str, price: Decimal) -> Decimal:
        """Cash plus positions at their marks, `symbol` at `price` (the open the order fills at)."""
        p = self.state.portfolio
        return p.cash + sum(
            (
                pos.quantity * (price if sym == symbol else p.marks.get(sym, pos.avg_price))
                for sym, pos in p.positions.items()
            ),
            Decimal(0),
        )

    async def _settled(self, symbol: str) -> None:
        """Wait (bounded) until this mode's earlier orders for `symbol` are filled or ended: sizing needs the cash."""

        def settled() -> bool:
            return not any(
                coid.startswith(STRATEGY_PREFIX) and w.symbol == symbol
                for coid, w in self.state.account.working.items()
            )

        if settled():
            return
        async with self.state.changed:
            try:
                await asyncio.wait_for(self.state.changed.wait_for(settled), SETTLE_SECONDS)
            except TimeoutError:
                log.warning("earlier strategy order not settled; sizing with the projected position", symbol=symbol)

    async def _ask_authority(
        self,
        signal: NormalizedSignal,
        order: Order,
        *,
        coid: str,
        price: Decimal,
        strategy: str,
        confidence: float,
        rationale: dict[str, Any],
        at_open_of: datetime | None = None,
    ) -> None:
        command = OrderCommand(
            kind="place",
            symbol=signal.symbol,
            side=order.side,
            quantity=order.quantity,
            client_order_id=coid,
            origin="bridge",
            confirmed_by="auto",  # the operator chose follow/strategy mode: its rules decide, no person
            principal="bridge",
            signal_id=signal.signal_id,
            strategy=strategy,
            confidence=confidence,
            rationale=rationale,
            at_open_of=at_open_of,
            reference_price=price,
            fired_at=fired_at(signal),
            correlation_id=signal.correlation_id,
        )
        # AuthorityUnavailable: not acked, so redelivered later. No wait for the fold here: what reads it next
        # (a close, the strategy's sizing) waits for `_last_seq` itself
        answer = await self.state.ask(command, fold=False)
        self._last_seq = max(self._last_seq, answer.journal_seq)
        if answer.ok and answer.duplicate:
            outcome = "already_decided"
        elif answer.ok:
            outcome = "order"
        elif answer.code == "stale_signal":
            outcome = "stale_signal"
        else:
            outcome = "risk_denied"
        metrics.mcp_decisions_generated_total.labels(strategy, outcome).inc()
        if outcome == "order" and self.mode == "follow":
            metrics.mcp_strategy_confidence.labels(self.mode).observe(1.0)
        if answer.ok:
            log.info(
                "order intent",
                client_order_id=coid,
                side=order.side,
                quantity=str(order.quantity),
                symbol=signal.symbol,
                duplicate=answer.duplicate,
            )
        elif outcome == "stale_signal":
            log.warning("stale signal recorded, not traded", signal_id=signal.signal_id, detail=answer.message)
        else:
            log.info("risk denied", reason=answer.code, detail=answer.message)

    def _decided(self, coid: str) -> bool:
        return self.state.account.knows(coid)


_SYMBOL = re.compile(rb'"symbol"\s*:\s*"([^"]*)"')


def symbol_of(msg: Msg) -> str:
    """The signal's symbol, without parsing the whole message (the lane key)."""
    found = _SYMBOL.search(msg.data)
    return found.group(1).decode() if found else ""
