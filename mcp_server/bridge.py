"""The bridge: signals in, decisions out, through the risk gate. Never skips the gate.

Mode `follow` executes the sender's explicit action (buy / sell / close). The `strategy` and
`agent` modes plug in at `decide` and are built in their own issues.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import structlog
from nats.aio.msg import Msg

from bus.jetstream import consume, publish
from mcp_server.state import AppState
from observability import metrics
from schemas.common import Side
from schemas.orders import OrderIntent, RiskDenied
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.clock import Clock, LiveClock
from tools.orders import check_order
from tools.risk import RiskGate

log = structlog.get_logger("bridge")

DURABLE = "bridge"
Mode = Literal["follow"]


@dataclass(frozen=True)
class Order:
    side: Side
    quantity: Decimal


@dataclass
class Bridge:
    state: AppState
    gate: RiskGate
    mode: Mode = "follow"
    default_quantity: Decimal = Decimal(1)
    clock: Clock = field(default_factory=LiveClock)

    def __post_init__(self) -> None:
        if self.state.gate is None:
            self.state.gate = self.gate  # one gate per account: the MCP order tools use the same one

    async def run(self, stop: asyncio.Event) -> None:
        await consume(
            self.state.js,
            stream="SIGNALS",
            durable=DURABLE,
            subject=Subject.SIGNALS_NORMALIZED.value,
            handler=self.handle,
            stop=stop,
        )

    def decide(self, signal: NormalizedSignal) -> Order | None:
        """follow mode: the sender's action; `close` flattens the projected position."""
        if signal.action is None:
            return None
        if signal.action == "close":
            position = self.state.projected_position(signal.symbol)
            if position == 0:
                return None
            return Order("sell" if position > 0 else "buy", abs(position))
        return Order(signal.action, signal.quantity or self.default_quantity)

    async def handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        signal = NormalizedSignal.model_validate_json(msg.data)
        structlog.contextvars.bind_contextvars(correlation_id=signal.correlation_id)
        try:
            metrics.mcp_signals_received_total.labels(signal.symbol).inc()
            if signal.signal_id in self.state.decided_signals:
                log.info("signal already decided", signal_id=signal.signal_id)
                return
            await self._decide_and_publish(signal)
        finally:
            metrics.mcp_processing_duration_seconds.observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("correlation_id")

    async def _decide_and_publish(self, signal: NormalizedSignal) -> None:
        order = self.decide(signal)
        if order is None:
            metrics.mcp_decisions_generated_total.labels(self.mode, "no_action").inc()
            log.info("no action", signal_id=signal.signal_id, action=signal.action)
            return
        coid = f"sig-{signal.signal_id}"
        verdict = check_order(
            self.gate,
            self.state.account,
            symbol=signal.symbol,
            side=order.side,
            quantity=order.quantity,
            price=signal.close or signal.price,
        )
        now = self.clock.now()
        if not verdict.approved:
            denied = RiskDenied(
                client_order_id=coid,
                symbol=signal.symbol,
                side=order.side,
                quantity=order.quantity,
                reason_code=verdict.reason_code,
                message=verdict.message,
                origin="bridge",
                signal_id=signal.signal_id,
                ts=now,
                correlation_id=signal.correlation_id,
            )
            await publish(
                self.state.js, Subject.RISK_DENIED, denied, msg_id=f"deny-{coid}", correlation_id=signal.correlation_id
            )
            self.state.decided_signals.add(signal.signal_id)
            metrics.mcp_decisions_generated_total.labels(self.mode, "risk_denied").inc()
            log.info("risk denied", reason=verdict.reason_code, detail=verdict.message)
            return
        intent = OrderIntent(
            client_order_id=coid,
            symbol=signal.symbol,
            side=order.side,
            quantity=order.quantity,
            reference_price=signal.close or signal.price,
            origin="bridge",
            signal_id=signal.signal_id,
            strategy=self.mode,
            confidence=1.0,
            rationale={"mode": "follow", "action": signal.action},
            created_at=now,
            correlation_id=signal.correlation_id,
        )
        signed = order.quantity if order.side == "buy" else -order.quantity
        self.state.pending[coid] = (signal.symbol, signed)
        self.state.orders.on_intent(intent)
        try:
            await publish(
                self.state.js, Subject.ORDER_INTENT, intent, msg_id=coid, correlation_id=signal.correlation_id
            )
        except Exception:
            self.state.pending.pop(coid, None)
            self.state.orders.forget(coid)
            raise
        self.state.decided_signals.add(signal.signal_id)
        metrics.mcp_decisions_generated_total.labels(self.mode, "order").inc()
        metrics.mcp_strategy_confidence.labels(self.mode).observe(1.0)
        log.info(
            "order intent", client_order_id=coid, side=order.side, quantity=str(order.quantity), symbol=signal.symbol
        )
