"""Order operations, framework-free: preview, place, cancel, list, get. What the MCP order tools wrap.

Every order placed here passes the one risk gate (`tools.risk.RiskGate`) before it reaches the
execution port; there is no path around it. A denial is sent through the port too (it publishes
`decisions.risk_denied`). Order state comes from the executions stream: feed `OrderBook` the
intents (`decisions.order_intent`), reports (`executions.report`) and fills (`executions.fill`).

Errors in the input raise `OrderInputError` with a stable `code` and change nothing:
`invalid_order` (a field combination that cannot work), `no_price` (a market order for a symbol
with no known price), `duplicate_client_order_id` (the id was used for a different order),
`unknown_order`, `order_not_open`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, model_validator

from schemas.common import Money, Side
from schemas.orders import (
    CLIENT_ORDER_ID,
    TERMINAL_STATUSES,
    Fill,
    OrderCancel,
    OrderEvent,
    OrderIntent,
    OrderType,
    Origin,
    RiskDenied,
    TimeInForce,
)
from schemas.signals import SYMBOL_PATTERN
from tools.clock import Clock
from tools.portfolio import Portfolio
from tools.risk import RiskGate, Verdict

ZERO = Decimal(0)


class OrderInputError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------- models


class OrderRequest(BaseModel):
    """An order as a caller (an MCP tool, the agent) asks for it."""

    symbol: str = Field(pattern=SYMBOL_PATTERN)
    side: Side
    quantity: Decimal = Field(gt=0, max_digits=20, decimal_places=10)
    order_type: OrderType = "market"
    limit_price: Decimal | None = Field(default=None, gt=0)
    stop_price: Decimal | None = Field(default=None, gt=0)
    time_in_force: TimeInForce = "DAY"
    client_order_id: str | None = Field(default=None, pattern=CLIENT_ORDER_ID)
    replaces: str | None = Field(default=None, pattern=CLIENT_ORDER_ID)
    rationale: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _prices_fit_the_type(self) -> OrderRequest:
        t = self.order_type
        if t in ("limit", "stop_limit") and self.limit_price is None:
            raise ValueError(f"a {t} order needs limit_price")
        if t in ("stop", "stop_limit") and self.stop_price is None:
            raise ValueError(f"a {t} order needs stop_price")
        if t in ("market", "stop") and self.limit_price is not None:
            raise ValueError(f"a {t} order takes no limit_price")
        if t in ("market", "limit") and self.stop_price is not None:
            raise ValueError(f"a {t} order takes no stop_price")
        return self


class OrderView(BaseModel):
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
    filled_quantity: Money = ZERO
    avg_fill_price: Money | None = None
    reason: str | None = None
    origin: Origin
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL_STATUSES


class OrderPreview(BaseModel):
    symbol: str
    side: Side
    quantity: Money
    order_type: OrderType
    estimated_price: Money | None = Field(description="Last price for a market order; the limit/stop price otherwise")
    estimated_notional: Money | None
    estimated_fee: Money | None
    approved: bool = Field(description="What the risk gate would say now (previews are not counted in the order rate)")
    reason_code: str
    message: str
    trading_state: str


class PlaceResult(BaseModel):
    client_order_id: str
    submitted: bool = Field(description="True when the order went to the simulator; False when denied or a repeat")
    duplicate: bool = False
    reason_code: str
    message: str
    order: OrderView | None = None


class CancelResult(BaseModel):
    client_order_id: str
    cancel_requested: bool
    order: OrderView


# ---------------------------------------------------------------------- ports


class ExecutionPort(Protocol):
    """Where approved orders, cancels and denials go (the NATS adapter publishes them)."""

    async def send(self, intent: OrderIntent) -> None: ...
    async def cancel(self, cancel: OrderCancel) -> None: ...
    async def deny(self, denied: RiskDenied) -> None: ...


# ---------------------------------------------------------------------- order state


@dataclass
class OrderBook:
    """Order state from the streams. Idempotent: each message may arrive more than once."""

    orders: dict[str, OrderView] = field(default_factory=dict)
    intents: dict[str, OrderIntent] = field(default_factory=dict)
    _fills: dict[str, set[str]] = field(default_factory=dict)
    _notional: dict[str, Decimal] = field(default_factory=dict)
    _filled: dict[str, Decimal] = field(default_factory=dict)

    def on_intent(self, intent: OrderIntent) -> None:
        if intent.client_order_id in self.intents:
            return
        self.intents[intent.client_order_id] = intent
        self.orders[intent.client_order_id] = OrderView(
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            order_type=intent.order_type,
            quantity=intent.quantity,
            limit_price=intent.limit_price,
            stop_price=intent.stop_price,
            time_in_force=intent.time_in_force,
            status="submitted",
            origin=intent.origin,
            created_at=intent.created_at,
            updated_at=intent.created_at,
        )

    def forget(self, client_order_id: str) -> None:
        """Undo an optimistic `on_intent` whose publish failed."""
        self.intents.pop(client_order_id, None)
        self.orders.pop(client_order_id, None)

    def on_event(self, event: OrderEvent) -> None:
        view = self.orders.get(event.client_order_id)
        if view is None:
            return
        if event.reason == "duplicate_client_order_id" and event.event_id.count(".") > 1:
            return  # a refused second intent with the same id: the first order is unaffected
        if not view.is_open:
            return  # terminal is final, even if reports arrive out of order
        self.orders[event.client_order_id] = view.model_copy(
            update={
                "status": event.status,
                "filled_quantity": max(view.filled_quantity, event.filled_quantity),
                "reason": event.reason,
                "updated_at": event.ts,
            }
        )

    def on_fill(self, fill: Fill) -> None:
        view = self.orders.get(fill.client_order_id)
        seen = self._fills.setdefault(fill.client_order_id, set())
        if view is None or fill.fill_id in seen:
            return
        seen.add(fill.fill_id)
        notional = self._notional.get(fill.client_order_id, ZERO) + fill.quantity * fill.price
        total = self._filled.get(fill.client_order_id, ZERO) + fill.quantity
        self._notional[fill.client_order_id] = notional
        self._filled[fill.client_order_id] = total
        self.orders[fill.client_order_id] = view.model_copy(
            update={
                "filled_quantity": max(view.filled_quantity, total),
                "avg_fill_price": notional / total,
                "updated_at": max(view.updated_at, fill.ts),
            }
        )

    def get(self, client_order_id: str) -> OrderView | None:
        return self.orders.get(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[OrderView]:
        return [o for o in self.orders.values() if o.is_open and (symbol is None or o.symbol == symbol)]

    def pending_quantity(self, symbol: str) -> Decimal:
        """Signed quantity of open orders not yet filled: what would still move the position."""
        total = ZERO
        for o in self.open_orders(symbol):
            left = o.quantity - o.filled_quantity
            total += left if o.side == "buy" else -left
        return total


@dataclass
class LocalAccount:
    """What the risk gate needs to know about the account, from the portfolio, the order book and
    the last prices. `extra_pending`: orders a caller sent that the book has not seen yet
    (client order id -> (symbol, signed quantity))."""

    portfolio: Portfolio
    book: OrderBook
    prices: dict[str, Decimal]
    extra_pending: dict[str, tuple[str, Decimal]] = field(default_factory=dict)

    def projected_position(self, symbol: str) -> Decimal:
        extra = sum((q for c, (s, q) in self.extra_pending.items() if s == symbol and c not in self.book.orders), ZERO)
        return self.portfolio.quantity(symbol) + self.book.pending_quantity(symbol) + extra

    def open_order_count(self) -> int:
        return len(self.book.open_orders()) + sum(1 for c in self.extra_pending if c not in self.book.orders)

    def last_price(self, symbol: str) -> Decimal | None:
        return self.prices.get(symbol) or self.portfolio.mark_price(symbol)

    def gross_exposure(self) -> Decimal:
        symbols = set(self.portfolio.positions) | {o.symbol for o in self.book.open_orders()}
        symbols |= {s for s, _ in self.extra_pending.values()}
        total = ZERO
        for symbol in symbols:
            price = self.last_price(symbol)
            if price is not None:
                total += abs(self.projected_position(symbol) * price)
        return total


def check_order(
    gate: RiskGate,
    account: LocalAccount,
    *,
    symbol: str,
    side: Side,
    quantity: Decimal,
    order_type: str = "market",
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
    price: Decimal | None = None,
    record: bool = True,
) -> Verdict:
    """The one way to ask the gate about an order: fills in the account's side of the check."""
    return gate.check(
        symbol=symbol,
        side=side,
        quantity=quantity,
        projected_position=account.projected_position(symbol),
        price=price if price is not None else account.last_price(symbol),
        order_type=order_type,
        limit_price=limit_price,
        stop_price=stop_price,
        open_orders=account.open_order_count(),
        gross_exposure=account.gross_exposure(),
        record=record,
    )


def order_price(account: LocalAccount, request: OrderRequest) -> Decimal | None:
    """The price an order is judged at: its limit, else its stop, else the market's last price."""
    if request.limit_price is not None:
        return request.limit_price
    if request.stop_price is not None:
        return request.stop_price
    return account.last_price(request.symbol)


def dry_run(gate: RiskGate, account: LocalAccount, request: OrderRequest) -> tuple[Verdict, Decimal | None]:
    """The gate's verdict on an order without placing it or counting it toward the order rate,
    and the price it was judged at (None when nothing is known)."""
    price = order_price(account, request)
    verdict = check_order(
        gate,
        account,
        symbol=request.symbol,
        side=request.side,
        quantity=request.quantity,
        order_type=request.order_type,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
        price=account.last_price(request.symbol) if request.order_type == "market" else price,
        record=False,
    )
    return verdict, price


# ---------------------------------------------------------------------- operations


FeeEstimate = Any  # Callable[[Decimal, Decimal], Decimal]: (quantity, price) -> fee


@dataclass
class OrderOperations:
    """preview · place · cancel · list · get, for one account. `origin` marks who placed orders."""

    gate: RiskGate
    account: LocalAccount
    port: ExecutionPort
    clock: Clock
    origin: Origin = "mcp"
    fee_estimate: FeeEstimate = field(default=lambda quantity, price: ZERO)

    def preview(self, request: OrderRequest) -> OrderPreview:
        """Estimate price, notional and fee, and ask the risk gate (without counting it)."""
        verdict, price = dry_run(self.gate, self.account, request)
        return OrderPreview(
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            estimated_price=price,
            estimated_notional=request.quantity * price if price is not None else None,
            estimated_fee=self.fee_estimate(request.quantity, price) if price is not None else None,
            approved=verdict.approved,
            reason_code=verdict.reason_code,
            message=verdict.message,
            trading_state=self.gate.state.value,
        )

    async def place(self, request: OrderRequest, correlation_id: str | None = None) -> PlaceResult:
        """Through the risk gate, then the execution port. Repeating a client order id with the same
        order returns the existing one and sends nothing; with a different order it is an error."""
        coid = request.client_order_id or f"{self.origin}-{uuid.uuid4().hex[:20]}"
        correlation_id = correlation_id or coid
        price = self._price(request)
        # the simulator falls back to `reference_price` when it has no market price of its own, so it must
        # be the market's last price, never the order's limit or stop (a buy limit far below the market
        # would otherwise fill at once)
        market = self.account.last_price(request.symbol)
        if price is None or market is None:
            raise OrderInputError(
                "no_price", f"no market price is known for {request.symbol} yet: wait for a signal, then retry"
            )
        now = self.clock.now()
        intent = OrderIntent(
            client_order_id=coid,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
            replaces=request.replaces,
            reference_price=market,
            origin=self.origin,
            rationale=request.rationale,
            created_at=now,
            correlation_id=correlation_id,
        )
        known = self.account.book.intents.get(coid)
        if known is not None:
            if _same(known, intent):
                return PlaceResult(
                    client_order_id=coid,
                    submitted=False,
                    duplicate=True,
                    reason_code="duplicate",
                    message="this order was already placed",
                    order=self.account.book.get(coid),
                )
            raise OrderInputError(
                "duplicate_client_order_id", f"client_order_id {coid} was already used for a different order"
            )
        if request.replaces is not None:
            old = self.account.book.get(request.replaces)
            if old is None or not old.is_open:
                raise OrderInputError("order_not_open", f"order {request.replaces} is not open: nothing to replace")
        verdict = self._check(request, price, record=True)
        if not verdict.approved:
            await self.port.deny(
                RiskDenied(
                    client_order_id=coid,
                    symbol=request.symbol,
                    side=request.side,
                    quantity=request.quantity,
                    reason_code=verdict.reason_code,
                    message=verdict.message,
                    origin=self.origin,
                    ts=now,
                    correlation_id=correlation_id,
                )
            )
            return PlaceResult(
                client_order_id=coid, submitted=False, reason_code=verdict.reason_code, message=verdict.message
            )
        self.account.book.on_intent(intent)
        try:
            await self.port.send(intent)
        except Exception:
            self.account.book.forget(coid)
            raise
        return PlaceResult(
            client_order_id=coid,
            submitted=True,
            reason_code="approved",
            message="sent to the simulator",
            order=self.account.book.get(coid),
        )

    async def cancel(self, client_order_id: str, reason: str | None = None) -> CancelResult:
        """Ask the simulator to cancel an open order. Cancels pass in every trading state."""
        order = self.account.book.get(client_order_id)
        if order is None:
            raise OrderInputError("unknown_order", f"no order {client_order_id}")
        if not order.is_open:
            raise OrderInputError("order_not_open", f"order {client_order_id} is already {order.status}")
        await self.port.cancel(
            OrderCancel(
                client_order_id=client_order_id,
                origin=self.origin,
                reason=reason,
                created_at=self.clock.now(),
                correlation_id=client_order_id,
            )
        )
        return CancelResult(client_order_id=client_order_id, cancel_requested=True, order=order)

    def list(
        self, status: Literal["open", "all"] = "open", symbol: str | None = None, limit: int = 50
    ) -> list[OrderView]:
        """Orders newest first; `open` only those not yet filled, canceled, expired or rejected."""
        orders = [
            o
            for o in reversed(self.account.book.orders.values())
            if (status == "all" or o.is_open) and (symbol is None or o.symbol == symbol)
        ]
        return orders[:limit]

    def get(self, client_order_id: str) -> OrderView:
        order = self.account.book.get(client_order_id)
        if order is None:
            raise OrderInputError("unknown_order", f"no order {client_order_id}")
        return order

    def _price(self, request: OrderRequest) -> Decimal | None:
        return order_price(self.account, request)

    def _check(self, request: OrderRequest, price: Decimal | None, *, record: bool) -> Verdict:
        return check_order(
            self.gate,
            self.account,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            price=self.account.last_price(request.symbol) if request.order_type == "market" else price,
            record=record,
        )


def _same(a: OrderIntent, b: OrderIntent) -> bool:
    keys = ("symbol", "side", "quantity", "order_type", "limit_price", "stop_price", "time_in_force", "replaces")
    return all(getattr(a, k) == getattr(b, k) for k in keys)
