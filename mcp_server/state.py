"""The long-lived state the MCP tools and the bridge share, rebuilt from the streams at start.

- SIGNALS   → the signal log (list_signals, last prices)
- EXECUTIONS → the portfolio (fills) and order statuses
- DECISIONS → which signals were already decided (so a redelivered signal is not decided twice)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bus.jetstream import Follower
from mcp_server.gauges import AccountGauges, observe_risk
from schemas.orders import Fill, OrderEvent, OrderIntent, RiskDenied
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.clock import Clock, LiveClock
from tools.market import SignalLog
from tools.orders import LocalAccount, OrderBook
from tools.portfolio import Portfolio
from tools.risk import RiskGate

TERMINAL = {"filled", "rejected", "canceled", "expired"}


@dataclass
class AppState:
    nc: NATS
    js: JetStreamContext
    portfolio: Portfolio = field(default_factory=Portfolio)
    signals: SignalLog = field(default_factory=SignalLog)
    decided_signals: set[str] = field(default_factory=set)
    # client_order_id -> (symbol, signed quantity sent but not yet filled or ended)
    pending: dict[str, tuple[str, Decimal]] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    # order state from the streams (all origins) and the one risk gate of this account
    orders: OrderBook = field(default_factory=OrderBook)
    gate: RiskGate | None = None
    clock: Clock = field(default_factory=LiveClock)  # order tools: confirmation token expiry, order times
    _followers: list[Follower] = field(default_factory=list)
    _gauges: AccountGauges = field(default_factory=AccountGauges)

    def __post_init__(self) -> None:
        self.account = LocalAccount(self.portfolio, self.orders, self.signals.last_price, self.pending)

    async def start(self, timeout: float = 30.0) -> None:
        self._followers = [
            Follower(self.js, stream="SIGNALS", subject=Subject.SIGNALS_NORMALIZED.value, handler=self._on_signal),
            Follower(self.js, stream="EXECUTIONS", subject="executions.>", handler=self._on_execution),
            Follower(self.js, stream="DECISIONS", subject="decisions.>", handler=self._on_decision),
        ]
        for f in self._followers:
            await f.start()
        await asyncio.wait_for(asyncio.gather(*(f.caught_up.wait() for f in self._followers)), timeout)
        self.observe_gauges()

    async def stop(self) -> None:
        for f in self._followers:
            await f.stop()

    def projected_position(self, symbol: str) -> Decimal:
        """The position once every order already sent is filled: what the risk gate must check."""
        return self.account.projected_position(symbol)

    def _observe_equity(self) -> None:
        if self.gate is not None:
            self.gate.observe_equity(self.portfolio.equity())
        self.observe_gauges()

    def observe_gauges(self) -> None:
        """Set the account and risk gauges (/metrics) from the current portfolio and gate."""
        self._gauges.observe(self.portfolio)
        if self.gate is not None:
            observe_risk(self.gate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _on_signal(self, msg: Msg) -> None:
        signal = NormalizedSignal.model_validate_json(msg.data)
        if self.signals.add(signal):
            self.portfolio.mark(signal.symbol, signal.close or signal.price)
            if signal.symbol in self.portfolio.positions:
                self._observe_equity()
            else:
                self.observe_gauges()  # equity unchanged; the risk state may have moved (an MCP tool)
        await self._notify()

    async def _on_execution(self, msg: Msg) -> None:
        if msg.subject == Subject.EXECUTION_FILL.value:
            fill = Fill.model_validate_json(msg.data)
            self.orders.on_fill(fill)
            if self.portfolio.apply(fill):
                self._observe_equity()
                self._settle(fill.client_order_id, fill.quantity if fill.side == "buy" else -fill.quantity)
        elif msg.subject == Subject.EXECUTION_REPORT.value:
            event = OrderEvent.model_validate_json(msg.data)
            self.orders.on_event(event)
            if event.status in TERMINAL:
                self.pending.pop(event.client_order_id, None)
        await self._notify()

    def _settle(self, client_order_id: str, signed_filled: Decimal) -> None:
        entry = self.pending.get(client_order_id)
        if entry is None:
            return
        symbol, left = entry
        rest = left - signed_filled
        if rest == 0 or (rest > 0) != (left > 0):
            self.pending.pop(client_order_id)
        else:
            self.pending[client_order_id] = (symbol, rest)

    async def _on_decision(self, msg: Msg) -> None:
        if msg.subject == Subject.ORDER_INTENT.value:
            intent = OrderIntent.model_validate_json(msg.data)
            self.orders.on_intent(intent)
            if intent.signal_id:
                self.decided_signals.add(intent.signal_id)
        elif msg.subject == Subject.RISK_DENIED.value:
            denied = RiskDenied.model_validate_json(msg.data)
            if denied.signal_id:
                self.decided_signals.add(denied.signal_id)
        await self._notify()
