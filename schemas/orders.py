"""Orders: the commands (`OrderIntent`, `OrderCancel`) and the events they cause.

Events: `OrderEvent` (lifecycle, on `executions.report`), `Fill`, `RiskDenied`, and `SimulatorOwner` (a simulator
took an account's lease, on `executions.owner`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.common import ACCOUNT_PATTERN, DEFAULT_ACCOUNT, Contract, Money, Price, Quantity, Side, UtcDatetime

OrderType = Literal["market", "limit", "stop", "stop_limit"]
TimeInForce = Literal["DAY", "GTC", "IOC", "FOK"]
OrderStatus = Literal["accepted", "rejected", "triggered", "partially_filled", "filled", "canceled", "expired"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"filled", "rejected", "canceled", "expired"})
Origin = Literal["bridge", "mcp", "agent", "backtest", "operator"]
# How a person (or a rule) said yes to an order:
# elicitation: a person accepted the client's confirmation form; order_ticket: a person pressed Confirm in the
# MCP App order ticket; token: preview_order's confirmation token was redeemed (the model may hold it);
# auto: no confirmation (the bridge's rules, or the agent loop where the operator allowed it).
ConfirmedBy = Literal["elicitation", "order_ticket", "token", "auto"]
PRINCIPAL = r"^[^\x00-\x1f]{1,128}$"

CLIENT_ORDER_ID = r"^[A-Za-z0-9._:-]{1,64}$"


class OrderIntent(Contract):
    """A command to the execution simulator: place this order. Already approved by the risk gate."""

    schema_version: Literal[1] = 1
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN, description="The account it belongs to")
    client_order_id: str = Field(pattern=CLIENT_ORDER_ID)
    symbol: str
    side: Side
    quantity: Quantity
    order_type: OrderType = "market"
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce = "DAY"
    replaces: str | None = Field(
        default=None,
        pattern=CLIENT_ORDER_ID,
        description="Cancel-and-replace: the open order this one replaces (canceled first; rejected if not open)",
    )
    reference_price: Price = Field(description="The last price the decider saw; market orders fill near it")
    at_open_of: UtcDatetime | None = Field(
        default=None,
        description=(
            "Market orders only: fill at the open of this symbol's bar with this time (or of the first bar after "
            "it), taken from the simulator's own market data: the strategy mode's 'decided at bar t's close, "
            "filled at bar t+1's open'"
        ),
    )
    origin: Origin
    confirmed_by: ConfirmedBy | None = Field(
        default=None, description="How the order was confirmed (None: before this was recorded)"
    )
    principal: str | None = Field(
        default=None, pattern=PRINCIPAL, description="Who confirmed it: the authenticated principal, or local"
    )
    signal_id: str | None = None
    strategy: str | None = None
    confidence: float | None = Field(default=None, ge=0, le=1)
    rationale: dict[str, Any] = Field(default_factory=dict)
    created_at: UtcDatetime
    correlation_id: str
    fence: int | None = Field(
        default=None,
        ge=0,
        description=(
            "The admitting authority's lease revision (its fencing token) when the journal took the order; "
            "None on a single-owner deployment's older entries"
        ),
    )
    owner: str | None = Field(default=None, max_length=128, description="The authority process that admitted it")


class OrderCancel(Contract):
    """A command to the execution simulator: cancel this open order. Published on `decisions.order_cancel`."""

    schema_version: Literal[1] = 1
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN, description="The account it belongs to")
    client_order_id: str = Field(pattern=CLIENT_ORDER_ID)
    origin: Origin
    reason: str | None = Field(default=None, max_length=200)
    created_at: UtcDatetime
    correlation_id: str


class OrderEvent(Contract):
    """Something that happened to an order, published on `executions.report`."""

    schema_version: Literal[1] = 1
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN, description="The account it belongs to")
    event_id: str
    client_order_id: str
    symbol: str
    side: Side
    status: OrderStatus
    quantity: Quantity
    filled_quantity: Money
    reason: str | None = None
    ts: UtcDatetime
    correlation_id: str
    fence: int | None = Field(
        default=None, ge=0, description="The simulator owner's lease revision (its fencing token), when leased"
    )


class Fill(Contract):
    """An execution, published on `executions.fill`. Positions are built from these alone."""

    schema_version: Literal[1] = 1
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN, description="The account it belongs to")
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: Quantity
    price: Price
    fee: Money
    ts: UtcDatetime
    correlation_id: str
    fence: int | None = Field(
        default=None, ge=0, description="The simulator owner's lease revision (its fencing token), when leased"
    )


class SimulatorOwner(Contract):
    """A simulator took an account's lease, published on `executions.owner` before it rebuilds the account from the
    streams: every report or fill of an older fence stored after it is void (`fence_step`), and every one stored
    before it is in the new owner's rebuild, so no execution of a stale owner falls between the two."""

    schema_version: Literal[1] = 1
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN, description="The account it belongs to")
    fence: int = Field(ge=0, description="The new simulator owner's lease revision (its fencing token)")
    member: str = Field(max_length=128, description="The simulator process that took the lease")
    ts: UtcDatetime


class RiskDenied(Contract):
    """The risk gate said no, published on `decisions.risk_denied`."""

    schema_version: Literal[1] = 1
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN, description="The account it belongs to")
    client_order_id: str
    symbol: str
    side: Side
    quantity: Quantity
    reason_code: str
    message: str
    origin: Origin
    signal_id: str | None = None
    ts: UtcDatetime
    correlation_id: str


class OrderView(BaseModel):
    """One order as the account sees it: what was admitted and what the simulator reported since."""

    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: Money
    limit_price: Money | None = None
    stop_price: Money | None = None
    time_in_force: TimeInForce
    status: str = Field(
        description="submitted (not yet acknowledged), accepted, triggered, partially_filled, "
        "filled, canceled, expired or rejected"
    )
    filled_quantity: Money = Decimal(0)
    avg_fill_price: Money | None = None
    reason: str | None = None
    origin: Origin
    confirmed_by: ConfirmedBy | None = None
    principal: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL_STATUSES


def fence_step(fence: int | None, newest: int | None) -> tuple[bool, int | None]:
    """The one rule the authority and the simulator's rebuild (`execsim.fold`) apply to an account's reports and fills,
    in EXECUTIONS' order: whether this event is void (stamped with an older simulator fence than an earlier event of
    the account: a simulator that lost its lease spoke after the new owner did), and the newest fence after it."""
    if fence is None:
        return False, newest
    if newest is not None and fence < newest:
        return True, newest
    return False, fence


def superseded_reports(payloads: Sequence[Fill | OrderEvent | SimulatorOwner | None]) -> set[int]:
    """The positions of the reports that say nothing a reader of the same list does not learn from a later message
    of the same order and simulator owner: a non-final report that a later report replaces in full (status, filled
    quantity, reason, time), and the `filled` report that follows the fill completing its order (the fill finishes
    the order for every reader: the authority's projection and the simulator's rebuild both close an order whose
    fills reach its quantity). A refused second intent's report (`duplicate_client_order_id`) says nothing about
    the first order, so it replaces nothing.

    The simulator does not publish them (an order filled at once gets only its fill), and the authority does not
    journal the ones that still come in one batch."""
    later: set[tuple[str, str, int | None]] = set()
    out: set[int] = set()
    for i in range(len(payloads) - 1, -1, -1):
        report = payloads[i]
        if not isinstance(report, OrderEvent):
            continue
        if report.reason == "duplicate_client_order_id" and report.event_id.count(".") > 1:
            continue
        key = (report.account, report.client_order_id, report.fence)
        if key in later and report.status not in TERMINAL_STATUSES:
            out.add(i)
        later.add(key)
    filled: set[tuple[str, str, int | None]] = set()
    for i, payload in enumerate(payloads):
        if isinstance(payload, Fill):
            filled.add((payload.account, payload.client_order_id, payload.fence))
        elif (
            isinstance(payload, OrderEvent)
            and payload.status == "filled"
            and (payload.account, payload.client_order_id, payload.fence) in filled
        ):
            out.add(i)  # the engine reports `filled` right after the fill that completed the order, never otherwise
    return out
