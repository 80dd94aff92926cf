"""The wire contract: pydantic v2 models, subject names and their schema versions."""

from schemas.agent import AgentDecision
from schemas.common import Action, Money, Quantity, Side, now_utc
from schemas.market import Bar
from schemas.orders import Fill, OrderCancel, OrderEvent, OrderIntent, OrderStatus, OrderType, RiskDenied, TimeInForce
from schemas.signals import NormalizedSignal
from schemas.subjects import REGISTRY, Subject

__all__ = [
    "Action",
    "AgentDecision",
    "Bar",
    "Fill",
    "Money",
    "NormalizedSignal",
    "OrderCancel",
    "OrderEvent",
    "OrderIntent",
    "OrderStatus",
    "OrderType",
    "Quantity",
    "REGISTRY",
    "RiskDenied",
    "Side",
    "Subject",
    "TimeInForce",
    "now_utc",
]
