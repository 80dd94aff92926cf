"""The matching engine: order intents, cancels, prices and bars in; lifecycle events and fills out.

Pure and deterministic: time comes from the injected clock (and the event timestamps given),
randomness (latency jitter) from the config's seed. Nothing here does I/O.

Lifecycle (each step is one `OrderEvent` on `executions.report`):
accepted → [triggered] → [partially_filled …] → filled | canceled | expired; or rejected at once.

When orders are worked:
- at submit, if the order reaches the exchange at once (no latency): against the latest price
  of its symbol (from `set_price` / `on_bar`; `intent.reference_price` when none is known);
- later, when its latency has passed: at the next `set_price`, `on_bar` or `tick`;
- every resting order, against each new bar along the intrabar path (`execsim.engine.intrabar`).
A market order `at_open_of` a bar time fills at the open of that bar of its symbol, from the engine's own
bars (matched by the bars' timestamps, not by when they arrived), or of the first later bar when there was
none at that time: at submit when that bar is already known, else at the bar's arrival; prices on the
engine's tick. When the bar at that time was refused (older than the symbol's latest) the order is
rejected `at_open_of_bar_refused`: a decision from one era never fills at another's prices.
Latency does not apply (the order was placed before the open).
IOC and FOK are worked once, at their first opportunity (a price, or a bar's open); what does not
fill then is canceled (FOK: all of it unless all of it fills).
A DAY order lives for the UTC date of the first bar it is worked against; the first bar of a later
date expires it (so an order placed after the close is good for the next session).

Bars of a symbol only move forward: a bar older than the last bar applied for its symbol, or with the
same timestamp (the same bar again), is refused (`refusal`): it works no order, fills no `at_open_of`
order, moves no price and is not remembered; the engine counts it (`stale_bars`, `duplicate_bars`).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from execsim.engine.config import PRICE_QUANTUM, ZERO, EngineConfig, FeeModel, LatencyModel, PriceModel
from execsim.engine.intrabar import Touch, bar_path, walk
from schemas.common import construct_trusted
from schemas.market import Bar
from schemas.orders import TERMINAL_STATUSES, Fill, OrderEvent, OrderIntent
from tools.clock import Clock

Event = OrderEvent | Fill
OPENS_KEPT = 512  # bar opens remembered per symbol, for orders `at_open_of` a bar already seen


@dataclass(slots=True)
class WorkingOrder:
    """The simulator's view of one order."""

    intent: OrderIntent
    active_at: datetime
    status: str = "accepted"
    filled: Decimal = ZERO
    fills: int = 0
    notional: Decimal = ZERO
    triggered: bool = False
    worked: bool = False
    day: date | None = None

    @property
    def remaining(self) -> Decimal:
        return self.intent.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL_STATUSES

    @property
    def avg_price(self) -> Decimal | None:
        return self.notional / self.filled if self.filled else None


@dataclass(slots=True)
class MarketState:
    price: Decimal
    ts: datetime
    bar: Bar | None = None
    budget: Decimal | None = None  # volume still fillable before the next bar; None = no cap

    @property
    def bar_range(self) -> Decimal:
        b = self.bar
        return (b.high - b.low) / b.close if b is not None else ZERO


class BarOpens:
    """The opens of the last `limit` bars of one symbol, kept sorted by the bars' own timestamps."""

    __slots__ = ("_opens", "_times", "limit")

    def __init__(self, limit: int = OPENS_KEPT) -> None:
        self.limit = limit
        self._times: list[datetime] = []
        self._opens: dict[datetime, Decimal] = {}

    def __len__(self) -> int:
        return len(self._times)

    def add(self, ts: datetime, opened: Decimal) -> None:
        if ts not in self._opens:
            if not self._times or ts > self._times[-1]:
                self._times.append(ts)  # the usual case: bars arrive in time order
            else:
                insort(self._times, ts)
        self._opens[ts] = opened
        if len(self._times) > self.limit:
            del self._opens[self._times.pop(0)]  # the oldest by time, not by arrival

    def first_at_or_after(self, ts: datetime) -> Decimal | None:
        """The open of the bar with the smallest timestamp >= `ts`, or None when no such bar is kept."""
        i = bisect_left(self._times, ts)
        return self._opens[self._times[i]] if i < len(self._times) else None


_SAME = ("symbol", "side", "quantity", "order_type", "limit_price", "stop_price", "time_in_force", "replaces")


@dataclass
class Engine:
    clock: Clock
    config: EngineConfig = field(default_factory=EngineConfig)
    _orders: dict[str, WorkingOrder] = field(default_factory=dict)
    _open: dict[str, dict[str, WorkingOrder]] = field(default_factory=dict)
    _market: dict[str, MarketState] = field(default_factory=dict)
    _canceled_early: set[str] = field(default_factory=set)
    # per symbol, the times of the last bars refused as older than the latest (insertion-ordered, bounded)
    _refused: dict[str, dict[datetime, None]] = field(default_factory=dict)
    _opens: dict[str, BarOpens] = field(default_factory=dict)
    stale_bars: int = 0  # bars refused as older than the symbol's latest bar
    duplicate_bars: int = 0  # bars refused as the symbol's latest bar again (same timestamp)
    fence: int | None = None  # the simulator owner's lease revision, stamped on every report and fill

    def __post_init__(self) -> None:
        self._prices = PriceModel(self.config)
        self._fees = FeeModel(self.config)
        self._latency = LatencyModel(self.config)

    # ------------------------------------------------------------------ queries

    def knows(self, client_order_id: str) -> bool:
        return client_order_id in self._orders

    def order(self, client_order_id: str) -> WorkingOrder | None:
        return self._orders.get(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[WorkingOrder]:
        if symbol is not None:
            return list(self._open.get(symbol, {}).values())
        return [o for book in self._open.values() for o in book.values()]

    def open_count(self) -> int:
        return sum(len(book) for book in self._open.values())

    def has_pending_activation(self) -> bool:
        return any(not o.worked for book in self._open.values() for o in book.values())

    def last_price(self, symbol: str) -> Decimal | None:
        st = self._market.get(symbol)
        return st.price if st else None

    def quote(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """(bid, ask) from the last price and the configured spread, or None when no price is known."""
        st = self._market.get(symbol)
        return self._prices.quote(st.price) if st else None

    def refusal(self, bar: Bar) -> str | None:
        """Why `on_bar` would refuse `bar`: "older_than_latest" (before the last bar applied for its symbol),
        "duplicate" (that bar's timestamp again), or None (it is newer: it will be applied)."""
        st = self._market.get(bar.symbol)
        latest = st.bar if st is not None else None
        if latest is None or bar.ts > latest.ts:
            return None
        return "older_than_latest" if bar.ts < latest.ts else "duplicate"

    def estimate(self, intent: OrderIntent) -> Decimal:
        """The price a market order would get now (a limit's limit price is its worst case)."""
        st = self._market.get(intent.symbol)
        last = st.price if st else intent.reference_price
        taker = self._prices.taker(intent.side, last, st.bar_range if st else ZERO)
        if intent.limit_price is not None:
            return min(taker, intent.limit_price) if intent.side == "buy" else max(taker, intent.limit_price)
        return taker

    def estimate_fee(self, quantity: Decimal, price: Decimal) -> Decimal:
        return self._fees.fee(quantity, price)

    # ------------------------------------------------------------------ restore after restart

    def remember(self, intent: OrderIntent) -> None:
        """Restore an order already finished before a restart (from the executions stream)."""
        if intent.client_order_id not in self._orders:
            self._orders[intent.client_order_id] = WorkingOrder(intent, intent.created_at, status="filled", worked=True)

    def restore(
        self,
        intent: OrderIntent,
        *,
        status: str,
        filled: Decimal = ZERO,
        fills: int = 0,
        notional: Decimal = ZERO,
        triggered: bool = False,
    ) -> None:
        """Restore an order from what was already published about it; open ones are worked again."""
        order = WorkingOrder(
            intent,
            active_at=intent.created_at,
            status=status,
            filled=filled,
            fills=fills,
            notional=notional,
            triggered=triggered,
            worked=status != "accepted" or fills > 0 or triggered,
        )
        self._orders[intent.client_order_id] = order
        if order.is_open:
            self._open.setdefault(intent.symbol, {})[intent.client_order_id] = order

    def restore_market(self, bar: Bar) -> None:
        """Restore the market state of a symbol from a bar already processed before a restart. A bar
        `on_bar` would refuse (older than the latest, or the same again) is skipped, as it was then."""
        if self.refusal(bar) is None:
            self._set_market_from_bar(bar)

    # ------------------------------------------------------------------ commands

    def submit(self, intent: OrderIntent) -> list[Event]:
        """Accept (or reject) an order and work it at once if it reaches the exchange at once."""
        coid = intent.client_order_id
        known = self._orders.get(coid)
        now = self.clock.now()
        if known is not None:
            if all(getattr(known.intent, k) == getattr(intent, k) for k in _SAME):
                return []
            digest = hashlib.sha1(intent.model_dump_json().encode()).hexdigest()[:10]
            return [self._event(intent, "rejected", ZERO, now, "duplicate_client_order_id", f".{digest}")]
        order = WorkingOrder(intent, active_at=now + self._latency.delay())
        self._orders[coid] = order
        reason = _invalid(intent)
        if reason is None and coid in self._canceled_early:
            reason = "canceled_before_accepted"
        events: list[Event] = []
        if reason is None and intent.at_open_of in self._refused.get(intent.symbol, {}):
            # its bar was refused as older than the symbol's latest: filling it at a later bar's open would
            # trade a decision from one era at the prices of another
            reason = "at_open_of_bar_refused"
        if reason is None and intent.replaces is not None:
            old = self._orders.get(intent.replaces)
            if old is None or not old.is_open or old.intent.symbol != intent.symbol:
                reason = "replace_target_not_open"
            else:
                events.extend(self._close(old, "canceled", now, f"replaced_by:{coid}"))
        if reason is not None:
            order.status = "rejected"
            return [self._event(intent, "rejected", ZERO, now, reason)]
        events.append(self._event(intent, "accepted", ZERO, now))
        book = self._open.get(intent.symbol)
        if book is None:
            book = self._open[intent.symbol] = {}
        book[coid] = order
        if intent.at_open_of is not None:
            opened = self._open_at(intent.symbol, intent.at_open_of)
            if opened is not None:
                self._work_once(order, opened, now, events)
        elif order.active_at <= now:
            st = self._market.get(intent.symbol)
            self._work_once(order, st.price if st else intent.reference_price, now, events)
        return events

    def forget(self, client_order_id: str) -> bool:
        """Drop a finished order from memory; False (and nothing dropped) while it is still open.
        Its id is then no longer known, so a later order reusing it is not caught as a duplicate: only for
        callers whose ids never repeat (the backtest's broker), so memory stays flat over millions of orders."""
        order = self._orders.get(client_order_id)
        if order is None or order.is_open:
            return False
        del self._orders[client_order_id]
        return True

    def cancel(self, client_order_id: str, reason: str | None = None) -> list[Event]:
        """Cancel an open order. Unknown or finished orders: no events (a cancel is idempotent)."""
        order = self._orders.get(client_order_id)
        if order is None:
            self._canceled_early.add(client_order_id)
            return []
        if not order.is_open:
            return []
        return self._close(order, "canceled", self.clock.now(), reason)

    def set_price(self, symbol: str, price: Decimal, ts: datetime | None = None) -> list[Event]:
        """A new last trade price: market orders from now on fill near it; orders whose latency has
        passed are worked at it. Resting limit and stop orders wait for bars."""
        ts = ts or self.clock.now()
        st = self._market.get(symbol)
        if st is None:
            st = self._market[symbol] = MarketState(price, ts)
        else:
            st.price, st.ts = price, ts
        st.budget = self._budget(st.bar)
        events: list[Event] = []
        for order in list(self._open.get(symbol, {}).values()):
            if not order.worked and order.active_at <= ts and order.intent.at_open_of is None:
                self._work_once(order, price, ts, events)
        return events

    def tick(self) -> list[Event]:
        """Clock-driven housekeeping: work orders whose latency has passed (at the last price) and
        expire DAY orders from an earlier date."""
        now = self.clock.now()
        events: list[Event] = []
        for symbol, book in list(self._open.items()):
            st = self._market.get(symbol)
            for order in list(book.values()):
                if order.day is not None and order.intent.time_in_force == "DAY" and now.date() > order.day:
                    events.extend(self._close(order, "expired", now, "end_of_day"))
                elif not order.worked and order.active_at <= now and order.intent.at_open_of is None:
                    self._work_once(order, st.price if st else order.intent.reference_price, now, events)
        return events

    def on_bar(self, bar: Bar) -> list[Event]:
        """Work every resting order of the bar's symbol along its intrabar path, then make the bar
        the symbol's market state (last price = close). A bar not newer than the symbol's last bar is
        refused: no events, no state change (see `refusal`); counted in `stale_bars` / `duplicate_bars`."""
        refused = self.refusal(bar)
        if refused is not None:
            if refused == "duplicate":
                self.duplicate_bars += 1
            else:
                self.stale_bars += 1
                refused_times = self._refused.setdefault(bar.symbol, {})
                refused_times[bar.ts] = None
                if len(refused_times) > OPENS_KEPT:
                    del refused_times[next(iter(refused_times))]
            return []
        events: list[Event] = []
        now = self.clock.now()
        budget = self._budget(bar)
        bar_day = bar.ts.date()
        points = bar_path(bar, self.config.intrabar_path)
        bar_range = (bar.high - bar.low) / bar.close
        for order in list(self._open.get(bar.symbol, {}).values()):
            at_open = order.intent.at_open_of
            if at_open is not None:
                if not order.worked and bar.ts >= at_open:
                    self._work_once(order, bar.open.quantize(PRICE_QUANTUM), now, events)
                continue
            if order.active_at > bar.ts:
                continue
            tif = order.intent.time_in_force
            if tif == "DAY":
                if order.day is not None and bar_day > order.day:
                    events.extend(self._close(order, "expired", now, "end_of_day"))
                    continue
                order.day = order.day or bar_day
            once = tif in ("IOC", "FOK")
            touch = self._walk(order, points[:1] if once else points)
            budget = self._apply(order, touch, budget, bar_range, now, events, once)
            order.worked = True
        self._set_market_from_bar(bar)
        st = self._market[bar.symbol]
        st.budget = budget
        return events

    # ------------------------------------------------------------------ internals

    def _budget(self, bar: Bar | None) -> Decimal | None:
        p = self.config.participation
        if p is None or bar is None or bar.volume <= 0:
            return None
        return bar.volume * p

    def _open_at(self, symbol: str, ts: datetime) -> Decimal | None:
        """The open (on the engine's tick) of the remembered bar with the smallest time at or after `ts`."""
        opens = self._opens.get(symbol)
        opened = opens.first_at_or_after(ts) if opens is not None else None
        return opened.quantize(PRICE_QUANTUM) if opened is not None else None

    def _set_market_from_bar(self, bar: Bar) -> None:
        opens = self._opens.get(bar.symbol)
        if opens is None:
            opens = self._opens[bar.symbol] = BarOpens()
        opens.add(bar.ts, bar.open)
        st = self._market.get(bar.symbol)
        if st is None:
            self._market[bar.symbol] = MarketState(bar.close, bar.ts, bar, self._budget(bar))
        else:
            st.price, st.ts, st.bar = bar.close, bar.ts, bar

    def _walk(self, order: WorkingOrder, points: tuple[Decimal, ...]) -> Touch:
        i = order.intent
        return walk(i.side, i.order_type, i.limit_price, i.stop_price, order.triggered, points)

    def _work_once(self, order: WorkingOrder, price: Decimal, now: datetime, events: list[Event]) -> None:
        """First opportunity at a single price (submit, latency passed)."""
        st = self._market.get(order.intent.symbol)
        once = order.intent.time_in_force in ("IOC", "FOK")
        budget = st.budget if st else None
        budget = self._apply(
            order, self._walk(order, (price,)), budget, st.bar_range if st else ZERO, now, events, once
        )
        if st is not None:
            st.budget = budget
        order.worked = True

    def _apply(
        self,
        order: WorkingOrder,
        touch: Touch,
        budget: Decimal | None,
        bar_range: Decimal,
        now: datetime,
        events: list[Event],
        once: bool,
    ) -> Decimal | None:
        """Turn a touch into events; return the volume budget left. `once`: IOC / FOK semantics."""
        intent = order.intent
        if touch.triggered and not order.triggered:
            order.triggered = True
            events.append(self._event(intent, "triggered", order.filled, now, f"stop_at:{touch.trigger_price}"))
        quantity = ZERO
        if touch.fill_at is not None:
            quantity = order.remaining if budget is None else min(order.remaining, budget)
        if once and intent.time_in_force == "FOK" and quantity < order.remaining:
            events.extend(self._close(order, "canceled", now, "fok_not_fillable"))
            return budget
        if quantity > 0:
            assert touch.fill_at is not None
            if touch.kind == "maker":
                price = touch.fill_at
            else:
                price = self._prices.taker(intent.side, touch.fill_at, bar_range)
                if intent.limit_price is not None:
                    price = min(price, intent.limit_price) if intent.side == "buy" else max(price, intent.limit_price)
            self._fill(order, quantity, price, now, events)
            if budget is not None:
                budget -= quantity
        if once and order.is_open:
            events.extend(self._close(order, "canceled", now, "ioc_remainder" if order.filled else "ioc_not_filled"))
        return budget

    def _fill(self, order: WorkingOrder, quantity: Decimal, price: Decimal, now: datetime, events: list[Event]) -> None:
        intent = order.intent
        order.fills += 1
        order.filled += quantity
        order.notional += quantity * price
        events.append(
            construct_trusted(
                Fill,
                {
                    "schema_version": 1,
                    "account": intent.account,
                    "fence": self.fence,
                    "fill_id": f"{intent.client_order_id}.f{order.fills}",
                    "client_order_id": intent.client_order_id,
                    "symbol": intent.symbol,
                    "side": intent.side,
                    "quantity": quantity,
                    "price": price,
                    "fee": self._fees.fee(quantity, price),
                    "ts": now,
                    "correlation_id": intent.correlation_id,
                },
            )
        )
        if order.remaining == 0:
            order.status = "filled"
            self._unbook(intent)
            events.append(self._event(intent, "filled", order.filled, now))
        else:
            order.status = "partially_filled"
            events.append(self._event(intent, "partially_filled", order.filled, now, None, f".{order.fills}"))

    def _close(self, order: WorkingOrder, status: str, now: datetime, reason: str | None) -> list[Event]:
        order.status = status
        self._unbook(order.intent)
        return [self._event(order.intent, status, order.filled, now, reason)]

    def _unbook(self, intent: OrderIntent) -> None:
        book = self._open.get(intent.symbol)
        if book is not None:
            book.pop(intent.client_order_id, None)

    def _event(
        self,
        intent: OrderIntent,
        status: str,
        filled: Decimal,
        now: datetime,
        reason: str | None = None,
        suffix: str = "",
    ) -> OrderEvent:
        return construct_trusted(
            OrderEvent,
            {
                "schema_version": 1,
                "account": intent.account,
                "fence": self.fence,
                "event_id": f"{intent.client_order_id}.{status}{suffix}",
                "client_order_id": intent.client_order_id,
                "symbol": intent.symbol,
                "side": intent.side,
                "status": status,
                "quantity": intent.quantity,
                "filled_quantity": filled,
                "reason": reason,
                "ts": now,
                "correlation_id": intent.correlation_id,
            },
        )


def _invalid(intent: OrderIntent) -> str | None:
    t = intent.order_type
    if t in ("limit", "stop_limit") and intent.limit_price is None:
        return "limit_price_required"
    if t in ("stop", "stop_limit") and intent.stop_price is None:
        return "stop_price_required"
    if t in ("market", "stop") and intent.limit_price is not None:
        return "limit_price_not_allowed"
    if t in ("market", "limit") and intent.stop_price is not None:
        return "stop_price_not_allowed"
    if t != "market" and intent.at_open_of is not None:
        return "at_open_of_market_only"
    return None
