"""The account authority's contract: the journal it alone writes, and the order requests it answers.

Journal: stream `ACCOUNT` (the default account) or `ACCOUNT_<account>`, subject
`account.<account>.events`. Every change to the account's truth
— an order admitted or denied, a cancel sent, a report or fill from the simulator, a market mark, an
operator control — is one `AccountEvent`, appended in the order the authority applied it. Any
process folds the journal in order (`tools.account.Account.apply`) and holds exactly the
authority's projection at that sequence.

Requests: core NATS request/reply on `orders.request.<account>`: an `OrderCommand` in, an
`OrderReply` out. The authority handles one at a time per account.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from schemas.common import ACCOUNT_PATTERN, DEFAULT_ACCOUNT, Contract, Money, Side, UtcDatetime
from schemas.orders import (
    CLIENT_ORDER_ID,
    PRINCIPAL,
    ConfirmedBy,
    Fill,
    OrderCancel,
    OrderEvent,
    OrderIntent,
    OrderType,
    OrderView,
    Origin,
    RiskDenied,
    TimeInForce,
)
from schemas.risk import RiskLimits, TradingState

ACCOUNT_STREAM = "ACCOUNT"


def journal_subject(account: str = DEFAULT_ACCOUNT) -> str:
    return f"account.{account}.events"


def journal_stream(account: str = DEFAULT_ACCOUNT) -> str:
    """Each account's journal is its own stream, so its sequence is the account's alone: the authority can keep
    many appends in flight, each expecting the one before (`ACCOUNT` for the default account, as before)."""
    return ACCOUNT_STREAM if account == DEFAULT_ACCOUNT else f"{ACCOUNT_STREAM}_{account}"


def account_of_stream(stream: str) -> str | None:
    """The account whose journal `stream` is, or None for any other stream."""
    if stream == ACCOUNT_STREAM:
        return DEFAULT_ACCOUNT
    prefix = f"{ACCOUNT_STREAM}_"
    return stream[len(prefix) :] if stream.startswith(prefix) else None


def request_subject(account: str = DEFAULT_ACCOUNT) -> str:
    return f"orders.request.{account}"


class Mark(Contract):
    """The market's price for a symbol at `ts` (a bar's close or a price signal)."""

    symbol: str
    price: Money
    ts: UtcDatetime


class Control(Contract):
    """The limits and operator state in force from this event on."""

    limits: RiskLimits
    state: TradingState | None = Field(default=None, description="The state the operator set; None leaves it")
    reason: str = ""
    revision: int = Field(default=0, ge=0, description="The operator record's revision (0: configured limits)")
    starting_cash: Money | None = Field(default=None, description="The paper account's starting cash, when it changes")


class Owner(Contract):
    """An authority took the account: from this entry on, its lease revision is the account's fencing token.

    Appended (with the journal's expected-sequence check) before the new owner decides anything, so a stale
    owner's later appends fail and every intent in the journal after it carries this fence or a newer one."""

    member: str = Field(max_length=128)
    fence: int = Field(ge=0, description="The authority lease's revision when this member acquired it")
    execsim_fence: int | None = Field(default=None, ge=0)


EventKind = Literal["admitted", "denied", "cancel_requested", "report", "fill", "mark", "control", "owner"]


class AccountEvent(Contract):
    """One entry of the journal; exactly the field named by `kind` is set.

    A simulator report is journaled only when it changes the order: not a report that a later one in the same
    batch replaces, and not the `filled` report that follows the fill completing the order (the fill's entry
    finishes the order, status `filled`)."""

    schema_version: Literal[1] = 1
    kind: EventKind
    ts: UtcDatetime = Field(description="The authority's clock when it applied the event")
    intent: OrderIntent | None = None
    denied: RiskDenied | None = None
    cancel: OrderCancel | None = None
    report: OrderEvent | None = None
    fill: Fill | None = None
    mark: Mark | None = None
    control: Control | None = None
    owner: Owner | None = None


class OrderCommand(Contract):
    """A request to the authority: `check` (a dry run), `place` or `cancel`.

    Numbers are plain decimals here on purpose: the gate checks every quantity and price itself and
    answers a coded denial, never an exception."""

    schema_version: Literal[1] = 1
    kind: Literal["check", "place", "cancel"]
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=ACCOUNT_PATTERN)
    symbol: str = ""
    side: Side = "buy"
    quantity: Decimal = Decimal(0)
    order_type: OrderType = "market"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = "DAY"
    client_order_id: str | None = Field(default=None, pattern=CLIENT_ORDER_ID)
    replaces: str | None = Field(default=None, pattern=CLIENT_ORDER_ID)
    origin: Origin = "mcp"
    confirmed_by: ConfirmedBy | None = None
    principal: str | None = Field(default=None, pattern=PRINCIPAL)
    signal_id: str | None = None
    strategy: str | None = None
    confidence: float | None = Field(default=None, ge=0, le=1)
    rationale: dict[str, Any] = Field(default_factory=dict)
    at_open_of: UtcDatetime | None = None
    reference_price: Decimal | None = Field(default=None, description="The price the decider saw (bridge)")
    fired_at: UtcDatetime | None = Field(default=None, description="When the signal behind it fired (staleness)")
    reason: str | None = Field(default=None, max_length=200, description="cancel: why")
    correlation_id: str | None = Field(default=None, max_length=128)


class OrderReply(Contract):
    """The authority's answer. `code` is stable: approved, duplicate, a risk reason code, or an input error."""

    schema_version: Literal[1] = 1
    ok: bool
    code: str
    message: str = ""
    client_order_id: str | None = None
    submitted: bool = False
    duplicate: bool = False
    order: OrderView | None = None
    trading_state: TradingState
    price_used: Money | None = None
    estimated_notional: Money | None = None
    position_now: Money | None = None
    position_after: Money | None = None
    journal_seq: int = Field(default=0, description="The journal sequence that holds this decision")
