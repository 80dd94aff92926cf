"""The NATS adapter of `tools.orders.ExecutionPort`: publishes order intents, cancels and denials."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext

from bus.jetstream import publish
from schemas.orders import OrderCancel, OrderIntent, RiskDenied
from schemas.subjects import Subject


@dataclass
class NatsExecutionPort:
    js: JetStreamContext

    async def send(self, intent: OrderIntent) -> None:
        await publish(
            self.js,
            Subject.ORDER_INTENT,
            intent,
            msg_id=intent.client_order_id,
            correlation_id=intent.correlation_id,
        )

    async def cancel(self, cancel: OrderCancel) -> None:
        await publish(
            self.js,
            Subject.ORDER_CANCEL,
            cancel,
            msg_id=f"cancel-{cancel.client_order_id}",
            correlation_id=cancel.correlation_id,
        )

    async def deny(self, denied: RiskDenied) -> None:
        await publish(
            self.js,
            Subject.RISK_DENIED,
            denied,
            msg_id=f"deny-{denied.client_order_id}",
            correlation_id=denied.correlation_id,
        )
