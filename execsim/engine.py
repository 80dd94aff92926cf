"""The matching engine, pure: takes an order intent and a clock, returns the events it causes.

Walking-skeleton scope: market orders fill in full at the reference price moved against the taker
by `slippage_bps`, with a fee of `fee_bps` of notional. A `client_order_id` seen before returns no
new events (same content) or a rejection (different content). Limit/stop orders and time in force
come with the full simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from schemas.orders import Fill, OrderEvent, OrderIntent
from tools.clock import Clock

BPS = Decimal(10_000)
PRICE_QUANTUM = Decimal("0.0001")
FEE_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class EngineConfig:
    slippage_bps: Decimal = Decimal(0)
    fee_bps: Decimal = Decimal(0)


@dataclass
class Engine:
    clock: Clock
    config: EngineConfig = field(default_factory=EngineConfig)
    _orders: dict[str, OrderIntent] = field(default_factory=dict)

    def knows(self, client_order_id: str) -> bool:
        return client_order_id in self._orders

    def remember(self, intent: OrderIntent) -> None:
        """Restore an order already processed before a restart (from the executions stream)."""
        self._orders.setdefault(intent.client_order_id, intent)

    def submit(self, intent: OrderIntent) -> list[OrderEvent | Fill]:
        known = self._orders.get(intent.client_order_id)
        if known is not None:
            if _same_order(known, intent):
                return []
            return [self._event(intent, "rejected", Decimal(0), "duplicate_client_order_id")]
        self._orders[intent.client_order_id] = intent
        if intent.order_type != "market":
            return [self._event(intent, "rejected", Decimal(0), "order_type_not_supported")]
        price = self._fill_price(intent)
        fee = (price * intent.quantity * self.config.fee_bps / BPS).quantize(FEE_QUANTUM, ROUND_HALF_EVEN)
        fill = Fill(
            fill_id=f"{intent.client_order_id}.f1",
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.quantity,
            price=price,
            fee=fee,
            ts=self.clock.now(),
            correlation_id=intent.correlation_id,
        )
        return [
            self._event(intent, "accepted", Decimal(0)),
            fill,
            self._event(intent, "filled", intent.quantity),
        ]

    def _fill_price(self, intent: OrderIntent) -> Decimal:
        move = intent.reference_price * self.config.slippage_bps / BPS
        price = intent.reference_price + move if intent.side == "buy" else intent.reference_price - move
        return price.quantize(PRICE_QUANTUM, ROUND_HALF_EVEN)

    def _event(self, intent: OrderIntent, status: str, filled: Decimal, reason: str | None = None) -> OrderEvent:
        return OrderEvent(
            event_id=f"{intent.client_order_id}.{status}",
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            status=status,  # type: ignore[arg-type]
            quantity=intent.quantity,
            filled_quantity=filled,
            reason=reason,
            ts=self.clock.now(),
            correlation_id=intent.correlation_id,
        )


def _same_order(a: OrderIntent, b: OrderIntent) -> bool:
    keys = ("symbol", "side", "quantity", "order_type", "limit_price", "stop_price", "time_in_force")
    return all(getattr(a, k) == getattr(b, k) for k in keys)
