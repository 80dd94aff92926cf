"""The account's projection and its admission rule: one ordered fold of the authority's journal.

`Account.apply(event)` folds one `schemas.account.AccountEvent`; every process that folds the same
journal in the same order holds the same account: positions and cash (from fills alone), the open
orders with what is left of them per symbol and side, the last marks, and the risk state (limits,
trading state and its reason, equity peak, day-start equity, order-rate window). Time comes from
the events, never from a clock, so a replay is exact.

`Account.decide(command, now)` is the admission rule the authority runs, one command at a time: it
changes nothing and returns the journal event to append (an admission, a denial or a cancel) with
the reply. The authority appends the event, then applies it like every reader does.

Cost: a check reads the symbol's position, its resting buys and sells and the open-order count
from indexes kept up to date by `apply`; finished orders leave the working set. Gross exposure
walks the symbols held or with resting orders (not the order history).

Memory does not grow with history (beyond 16 bytes per order, `tools.ledger`): the open orders and the newest
`FINISHED_KEPT` finished ones are kept whole (view and intent), as are the newest `DENIALS_KEPT` denials.
An older one leaves memory and the idempotency ledger keeps what a retry needs: a 64-bit key of its client
order id with the fingerprint of the order (the fields `_same` compares) or the denial's reason code. So a
client order id stays used forever: a retry of an old order is still "duplicate" (or
"duplicate_client_order_id" for another order), a retry of an old denial is denied again. What is forgotten is
detail: `order(id)` of an old order is None (the journal keeps it). The totals (`admitted_total`,
`denied_total`, the portfolio's `fill_count`) count the whole history. Eviction is a function of the journal
alone, so every process that folds it evicts the same orders at the same entry.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter

from schemas.account import AccountEvent, Control, OrderCommand, OrderReply
from schemas.common import DEFAULT_ACCOUNT
from schemas.orders import TERMINAL_STATUSES, OrderCancel, OrderIntent, OrderView, RiskDenied
from schemas.risk import RiskLimits, TradingState
from schemas.signals import SYMBOL_PATTERN
from tools.clock import Clock
from tools.freshness import DEFAULT_MAX_SIGNAL_AGE_S
from tools.ledger import CodeLedger, Ledger
from tools.portfolio import Portfolio
from tools.risk import RiskGate, Verdict, bad_number, valuation_price

ZERO = Decimal(0)
_SYMBOL = re.compile(SYMBOL_PATTERN)
SNAPSHOT_VERSION = 2
FINISHED_KEPT = 1_000  # finished orders kept whole after they leave the working set
DENIALS_KEPT = 1_000  # denials kept whole
_ORDERS = TypeAdapter(list[OrderView])
_INTENTS = TypeAdapter(list[OrderIntent])
_DENIALS = TypeAdapter(list[RiskDenied])
_CANCELS = TypeAdapter(list[OrderCancel])


class SnapshotError(ValueError):
    """A snapshot this code cannot restore (another version, or one that does not hold together)."""


@dataclass(slots=True)
class _Working:
    symbol: str
    side: str
    remaining: Decimal


@dataclass
class Decision:
    """What `decide` answers: the reply, and the event to journal (None: nothing changes)."""

    reply: OrderReply
    event: AccountEvent | None = None


@dataclass
class Account:
    gate: RiskGate = field(default_factory=RiskGate)
    portfolio: Portfolio = field(default_factory=Portfolio)
    orders: dict[str, OrderView] = field(default_factory=dict)
    intents: dict[str, OrderIntent] = field(default_factory=dict)
    denials: dict[str, RiskDenied] = field(default_factory=dict)
    working: dict[str, _Working] = field(default_factory=dict)
    resting: dict[str, list[Decimal]] = field(default_factory=dict)  # symbol -> [buys left, sells left]
    prices: dict[str, Decimal] = field(default_factory=dict)
    price_ts: dict[str, datetime] = field(default_factory=dict)
    cancels: dict[str, OrderCancel] = field(default_factory=dict)  # open orders with a cancel sent
    control_revision: int = 0
    seq: int = 0  # the journal sequence folded so far
    account_id: str = DEFAULT_ACCOUNT
    fence: int | None = None  # the owning authority's lease revision, from the journal's newest owner entry
    owner: str | None = None
    execsim_fence: int | None = None  # the newest simulator owner's fence the authority accepted executions from
    admitted_total: int = 0  # orders admitted over the whole history
    denied_total: int = 0  # orders denied over the whole history
    finished: deque[str] = field(default_factory=deque)  # finished orders kept whole, oldest first
    denied_order: deque[str] = field(default_factory=deque)  # denials kept whole, oldest first
    placed_ledger: Ledger = field(default_factory=Ledger)  # key(coid) -> fingerprint, for evicted orders
    denied_ledger: CodeLedger = field(default_factory=CodeLedger)  # key(coid) -> reason code, for evicted denials

    # ------------------------------------------------------------------ the fold

    def apply(self, event: AccountEvent, seq: int | None = None) -> None:
        kind = event.kind
        if kind == "mark":
            assert event.mark is not None
            self._mark(event.mark.symbol, event.mark.price, event.mark.ts, event.ts)
        elif kind == "fill":
            assert event.fill is not None
            self._fill(event)
        elif kind == "report":
            assert event.report is not None
            self._report(event)
        elif kind == "admitted":
            assert event.intent is not None
            self._admit(event.intent, event.ts)
        elif kind == "denied":
            assert event.denied is not None
            self._deny(event.denied)
        elif kind == "cancel_requested":
            assert event.cancel is not None
            if event.cancel.client_order_id in self.working:
                self.cancels.setdefault(event.cancel.client_order_id, event.cancel)
        elif kind == "control":
            assert event.control is not None
            self._control(event.control, event.ts)
        elif kind == "owner":
            assert event.owner is not None
            self.fence, self.owner = event.owner.fence, event.owner.member
            if event.owner.execsim_fence is not None:
                self.execsim_fence = max(self.execsim_fence or 0, event.owner.execsim_fence)
        if seq is not None:
            self.seq = seq

    def _admit(self, intent: OrderIntent, ts: datetime) -> None:
        coid = intent.client_order_id
        if coid in self.intents or (self.placed_ledger and order_key(coid) in self.placed_ledger):
            return
        self.admitted_total += 1
        self.intents[coid] = intent
        self.orders[coid] = OrderView(
            client_order_id=coid,
            symbol=intent.symbol,
            side=intent.side,
            order_type=intent.order_type,
            quantity=intent.quantity,
            limit_price=intent.limit_price,
            stop_price=intent.stop_price,
            time_in_force=intent.time_in_force,
            status="submitted",
            origin=intent.origin,
            confirmed_by=intent.confirmed_by,
            principal=intent.principal,
            created_at=intent.created_at,
            updated_at=intent.created_at,
        )
        self.working[coid] = _Working(intent.symbol, intent.side, intent.quantity)
        self._rest(intent.symbol, intent.side, intent.quantity)
        self.gate.record_order(ts)

    def _rest(self, symbol: str, side: str, quantity: Decimal) -> None:
        sides = self.resting.get(symbol)
        if sides is None:
            sides = self.resting[symbol] = [ZERO, ZERO]
        sides[0 if side == "buy" else 1] += quantity
        if sides[0] == 0 and sides[1] == 0:
            del self.resting[symbol]

    def _deny(self, denied: RiskDenied) -> None:
        coid = denied.client_order_id
        if coid in self.denials or (self.denied_ledger and order_key(coid) in self.denied_ledger):
            return
        self.denied_total += 1
        self.denials[coid] = denied
        self.denied_order.append(coid)
        if len(self.denied_order) > DENIALS_KEPT:
            old = self.denied_order.popleft()
            gone = self.denials.pop(old)
            self.denied_ledger[order_key(old)] = sys.intern(gone.reason_code)

    def _done(self, coid: str) -> None:
        self.cancels.pop(coid, None)
        working = self.working.pop(coid, None)
        if working is None:
            return
        if working.remaining > 0:
            self._rest(working.symbol, working.side, -working.remaining)
        self.finished.append(coid)
        if len(self.finished) > FINISHED_KEPT:
            old = self.finished.popleft()
            self.orders.pop(old, None)
            intent = self.intents.pop(old)
            self.placed_ledger[order_key(old)] = order_fingerprint(intent)

    def _report(self, event: AccountEvent) -> None:
        report = event.report
        assert report is not None
        view = self.orders.get(report.client_order_id)
        if view is None or not view.is_open:
            return  # unknown here, or terminal already (terminal is final, whatever order reports come in)
        if report.reason == "duplicate_client_order_id" and report.event_id.count(".") > 1:
            return  # a refused second intent with the same id: the first order is unaffected
        self.orders[report.client_order_id] = view.model_copy(
            update={
                "status": report.status,
                "filled_quantity": max(view.filled_quantity, report.filled_quantity),
                "reason": report.reason,
                "updated_at": report.ts,
            }
        )
        if report.status in TERMINAL_STATUSES:
            self._done(report.client_order_id)

    def _fill(self, event: AccountEvent) -> None:
        fill = event.fill
        assert fill is not None
        if not self.portfolio.apply(fill):
            return
        coid = fill.client_order_id
        working = self.working.get(coid)
        complete = False
        if working is not None:
            used = min(fill.quantity, working.remaining)
            working.remaining -= used
            self._rest(working.symbol, working.side, -used)
            complete = working.remaining <= 0
        view = self.orders.get(coid)
        if view is not None:
            before = view.filled_quantity if view.avg_fill_price is not None else ZERO
            total = before + fill.quantity
            avg = ((view.avg_fill_price or ZERO) * before + fill.price * fill.quantity) / total
            update: dict[str, Any] = {
                "filled_quantity": max(view.filled_quantity, total),
                "avg_fill_price": avg,
                "updated_at": max(view.updated_at, fill.ts),
            }
            if complete and view.is_open:
                # the fill that completes the order finishes it (the simulator publishes no `filled` report after
                # it; one from an older simulator changes nothing, and the authority does not journal it)
                update["status"] = "filled"
            self.orders[coid] = view.model_copy(update=update)
        if complete:
            self._done(coid)
        self.gate.observe_equity(self.portfolio.equity(), event.ts)

    def _mark(self, symbol: str, price: Decimal, ts: datetime, applied_at: datetime) -> None:
        latest = self.price_ts.get(symbol)
        if latest is not None and ts < latest:
            return  # a bar older than the symbol's latest: market time never runs back
        self.prices[symbol] = price
        self.price_ts[symbol] = ts
        self.portfolio.mark(symbol, price)
        if self.portfolio.quantity(symbol) != 0 or self.gate.peak_equity is None:
            self.gate.observe_equity(self.portfolio.equity(), applied_at)

    def _control(self, control: Control, ts: datetime) -> None:
        cash = control.starting_cash
        if cash is not None and cash != self.portfolio.starting_cash:
            self.portfolio.cash += cash - self.portfolio.starting_cash
            self.portfolio.starting_cash = cash
        self.gate.limits = control.limits
        self.control_revision = max(self.control_revision, control.revision)
        if control.state is not None and control.state is not self.gate.state:
            if control.state is TradingState.ACTIVE:
                self.gate.resume("operator")
                self.gate.state_reason = control.reason or "operator_resume"
            else:
                self.gate._set_state(control.state, control.reason or "operator")
        # the limits in force now may already be breached: evaluate at once, not at the next mark
        self.gate.observe_equity(self.portfolio.equity(), ts)

    # ------------------------------------------------------------------ snapshots

    def to_snapshot(self) -> dict[str, Any]:
        """Everything the fold keeps, JSON-safe and exact (decimals as strings, times in ISO with their offset):
        `from_snapshot(to_snapshot())` then the rest of the journal is the fold of the whole journal."""
        return {
            "version": SNAPSHOT_VERSION,
            "account_id": self.account_id,
            "seq": self.seq,
            "fence": self.fence,
            "owner": self.owner,
            "execsim_fence": self.execsim_fence,
            "control_revision": self.control_revision,
            "gate": self.gate.to_snapshot(),
            "portfolio": self.portfolio.to_snapshot(),
            "orders": _ORDERS.dump_python(list(self.orders.values()), mode="json"),
            "intents": _INTENTS.dump_python(list(self.intents.values()), mode="json"),
            "denials": _DENIALS.dump_python(list(self.denials.values()), mode="json"),
            "cancels": _CANCELS.dump_python(list(self.cancels.values()), mode="json"),
            "admitted_total": self.admitted_total,
            "denied_total": self.denied_total,
            "finished": list(self.finished),
            "denied_order": list(self.denied_order),
            "placed_ledger": base64.b64encode(self.placed_ledger.records()).decode(),
            "denied_ledger": _pack_codes(self.denied_ledger),
            "working": [[c, w.symbol, w.side, str(w.remaining)] for c, w in self.working.items()],
            "resting": {s: [str(b), str(v)] for s, (b, v) in self.resting.items()},
            "prices": {s: str(p) for s, p in self.prices.items()},
            "price_ts": {s: t.isoformat() for s, t in self.price_ts.items()},
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], clock: Clock | None = None) -> Account:
        """The account `to_snapshot` wrote. SnapshotError for another version; any malformed part raises too
        (ValueError, TypeError, KeyError): the caller then folds the journal from its start."""
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise SnapshotError(f"snapshot version {version!r} (this code reads {SNAPSHOT_VERSION})")
        orders = _ORDERS.validate_python(data["orders"])
        intents = _INTENTS.validate_python(data["intents"])
        denials = _DENIALS.validate_python(data["denials"])
        cancels = _CANCELS.validate_python(data["cancels"])
        account = cls(
            gate=RiskGate.from_snapshot(data["gate"], clock),
            portfolio=Portfolio.from_snapshot(data["portfolio"]),
            orders={o.client_order_id: o for o in orders},
            intents={i.client_order_id: i for i in intents},
            denials={d.client_order_id: d for d in denials},
            cancels={c.client_order_id: c for c in cancels},
            working={_str(c): _Working(_str(sym), _side(side), _dec(left)) for c, sym, side, left in data["working"]},
            resting={_str(s): [_dec(b), _dec(v)] for s, (b, v) in dict(data["resting"]).items()},
            prices={_str(s): _dec(p) for s, p in dict(data["prices"]).items()},
            price_ts={_str(s): _time(t) for s, t in dict(data["price_ts"]).items()},
            control_revision=_int(data["control_revision"]),
            seq=_int(data["seq"]),
            account_id=_str(data["account_id"]),
            fence=_opt_int(data["fence"]),
            owner=None if data["owner"] is None else _str(data["owner"]),
            execsim_fence=_opt_int(data["execsim_fence"]),
            admitted_total=_int(data["admitted_total"]),
            denied_total=_int(data["denied_total"]),
            finished=deque(_str(c) for c in data["finished"]),
            denied_order=deque(_str(c) for c in data["denied_order"]),
            placed_ledger=Ledger.from_records(base64.b64decode(_str(data["placed_ledger"]), validate=True)),
            denied_ledger=CodeLedger(_unpack_codes(data["denied_ledger"]).items()),
        )
        if not set(account.working) <= set(account.orders) or not set(account.cancels) <= set(account.working):
            raise SnapshotError("the snapshot's open orders are not among its orders")
        if set(account.orders) != set(account.intents) or set(account.orders) != set(account.working) | set(
            account.finished
        ):
            raise SnapshotError("the snapshot's orders are not its open and finished orders")
        if set(account.denials) != set(account.denied_order):
            raise SnapshotError("the snapshot's denials are not its kept denials")
        return account

    def detached(self) -> Account:
        """A copy that the fold of later entries leaves alone, cheap to take (events and views are immutable, so
        shared): the authority snapshots it off the event loop while it goes on deciding."""
        return Account(
            gate=self.gate.detached(),
            portfolio=self.portfolio.detached(),
            orders=dict(self.orders),
            intents=dict(self.intents),
            denials=dict(self.denials),
            working={c: _Working(w.symbol, w.side, w.remaining) for c, w in self.working.items()},
            resting={s: list(sides) for s, sides in self.resting.items()},
            prices=dict(self.prices),
            price_ts=dict(self.price_ts),
            cancels=dict(self.cancels),
            control_revision=self.control_revision,
            seq=self.seq,
            account_id=self.account_id,
            fence=self.fence,
            owner=self.owner,
            execsim_fence=self.execsim_fence,
            admitted_total=self.admitted_total,
            denied_total=self.denied_total,
            finished=self.finished.copy(),
            denied_order=self.denied_order.copy(),
            placed_ledger=self.placed_ledger.copy(),
            denied_ledger=self.denied_ledger.copy(),
        )

    # ------------------------------------------------------------------ queries

    def knows(self, coid: str) -> bool:
        """Whether `coid` was ever admitted or denied (kept whole or only in the ledger)."""
        if coid in self.intents or coid in self.denials:
            return True
        if not self.placed_ledger and not self.denied_ledger:
            return False
        key = order_key(coid)
        return key in self.placed_ledger or key in self.denied_ledger

    def has_order(self, coid: str) -> bool:
        """Whether `coid` is open or among the finished orders kept whole."""
        return coid in self.orders

    def position(self, symbol: str) -> Decimal:
        return self.portfolio.quantity(symbol)

    def resting_of(self, symbol: str) -> tuple[Decimal, Decimal]:
        sides = self.resting.get(symbol)
        return (sides[0], sides[1]) if sides is not None else (ZERO, ZERO)

    def projected_position(self, symbol: str) -> Decimal:
        """The position if every open order filled (buys and sells both): for display and sizing."""
        buys, sells = self.resting_of(symbol)
        return self.position(symbol) + buys - sells

    def open_order_count(self) -> int:
        return len(self.working)

    def open_orders(self, symbol: str | None = None) -> list[OrderView]:
        return [self.orders[c] for c, w in self.working.items() if symbol is None or w.symbol == symbol]

    def last_price(self, symbol: str) -> Decimal | None:
        price = self.prices.get(symbol)
        return price if price is not None else self.portfolio.mark_price(symbol)

    def worst_position(self, symbol: str) -> Decimal:
        """The largest |position| the symbol can reach if every resting order of one side fills."""
        buys, sells = self.resting_of(symbol)
        pos = self.position(symbol)
        return max(abs(pos + buys), abs(pos - sells))

    def gross_exposure(self) -> Decimal:
        """Σ over symbols of the worst-case |position| × the last price (what the gate limits)."""
        total = ZERO
        for symbol in set(self.portfolio.positions) | set(self.resting):
            price = self.last_price(symbol)
            if price is not None:
                total += self.worst_position(symbol) * price
        return total

    def orders_in_window(self, now: datetime) -> int:
        return self.gate.orders_in_window(now)

    # ------------------------------------------------------------------ admission

    def check(self, command: OrderCommand, now: datetime) -> tuple[Verdict, Decimal | None]:
        """The gate's verdict on the command's order now (records nothing) and the price it was valued at."""
        shape = _shape_error(command)
        if shape is not None:
            return Verdict(False, "invalid_order", shape), None
        bad_reference = bad_number(command.reference_price, "reference_price")
        if bad_reference is not None:  # it would be the intent's reference price: the wire cannot carry it
            return bad_reference, None
        market = self._market_price(command)
        buys, sells = self.resting_of(command.symbol)
        gross = self.gross_exposure()
        last = self.last_price(command.symbol)
        if market is not None and market != last:  # the gate takes the symbol out at `market`: put it in at it
            gross += self.worst_position(command.symbol) * (market - (last or ZERO))
        verdict = self.gate.check(
            symbol=command.symbol,
            side=command.side,
            quantity=command.quantity,
            projected_position=self.position(command.symbol),
            price=market,
            order_type=command.order_type,
            limit_price=command.limit_price,
            stop_price=command.stop_price,
            open_orders=len(self.working),
            gross_exposure=gross,
            resting_buys=buys,
            resting_sells=sells,
            record=False,
            now=now,
        )
        if verdict.reason_code in ("invalid_quantity", "invalid_price"):
            return verdict, None  # a NaN or infinite price has no valuation (and no reply could carry it)
        return verdict, valuation_price(market, command.limit_price, command.stop_price)

    def _market_price(self, command: OrderCommand) -> Decimal | None:
        """The market's last price; a bridge order's own reference price (the bar it decided on) when
        higher, so a stale mark never values an order below what its decider saw."""
        market = self.last_price(command.symbol)
        ref = command.reference_price
        if ref is not None and ref.is_finite() and ref > 0:
            return ref if market is None else max(market, ref)
        return market

    def decide(
        self, command: OrderCommand, now: datetime, max_signal_age_s: float = DEFAULT_MAX_SIGNAL_AGE_S
    ) -> Decision:
        if command.kind == "cancel":
            return self._decide_cancel(command, now)
        if command.kind == "check":
            verdict, price = self.check(command, now)
            return Decision(self._reply(command, verdict.approved, verdict.reason_code, verdict.message, price=price))
        return self._decide_place(command, now, max_signal_age_s)

    def _decide_place(self, command: OrderCommand, now: datetime, max_age_s: float) -> Decision:
        coid = command.client_order_id or f"{command.origin}-{uuid.uuid4().hex[:20]}"
        command = command.model_copy(update={"client_order_id": coid})
        known = self.intents.get(coid)
        if known is not None:
            return self._placed_already(command, _same(known, command))
        denied = self.denials.get(coid)
        if denied is not None:
            return Decision(self._reply(command, False, denied.reason_code, denied.message, duplicate=True))
        if self.placed_ledger or self.denied_ledger:  # an order older than the ones kept whole
            key = order_key(coid)
            fingerprint = self.placed_ledger.get(key)
            if fingerprint is not None:
                return self._placed_already(command, fingerprint == order_fingerprint(command))
            code = self.denied_ledger.get(key)
            if code is not None:
                return Decision(
                    self._reply(
                        command,
                        False,
                        code,
                        f"this order was denied earlier ({code}); use a new client_order_id",
                        duplicate=True,
                    )
                )
        shape = _shape_error(command)
        if shape is not None:
            return Decision(self._reply(command, False, "invalid_order", shape))
        if command.replaces is not None:
            old = self.orders.get(command.replaces)
            if old is None or not old.is_open:
                return Decision(
                    self._reply(
                        command, False, "order_not_open", f"order {command.replaces} is not open: nothing to replace"
                    )
                )
        market = self._market_price(command)
        if command.order_type == "market" and market is None:
            return Decision(
                self._reply(
                    command,
                    False,
                    "no_price",
                    f"no market price is known for {command.symbol} yet: wait for a signal, then retry",
                )
            )
        verdict, price = self.check(command, now)
        if verdict.approved and command.fired_at is not None:
            age = (now - command.fired_at).total_seconds()
            if age > max_age_s:
                verdict = Verdict(
                    False,
                    "stale_signal",
                    f"the signal fired {age:.1f} s ago, more than the {max_age_s:g} s a signal may wait to be traded",
                )
        correlation = command.correlation_id or coid
        if not verdict.approved:
            if verdict.reason_code in ("invalid_quantity", "invalid_price", "no_price"):
                return Decision(self._reply(command, False, verdict.reason_code, verdict.message, price=price))
            denial = RiskDenied(
                account=self.account_id,
                client_order_id=coid,
                symbol=command.symbol,
                side=command.side,
                quantity=command.quantity,
                reason_code=verdict.reason_code,
                message=verdict.message,
                origin=command.origin,
                signal_id=command.signal_id,
                ts=now,
                correlation_id=correlation,
            )
            return Decision(
                self._reply(command, False, verdict.reason_code, verdict.message, price=price),
                AccountEvent(kind="denied", ts=now, denied=denial),
            )
        reference = command.reference_price if command.reference_price is not None else self.last_price(command.symbol)
        if reference is None:  # a limit or stop order before any market price: the engine falls back to it
            reference = price
        assert reference is not None, "the gate approves only an order it could value"
        intent = OrderIntent(
            account=self.account_id,
            fence=self.fence,
            owner=self.owner,
            client_order_id=coid,
            symbol=command.symbol,
            side=command.side,
            quantity=command.quantity,
            order_type=command.order_type,
            limit_price=command.limit_price,
            stop_price=command.stop_price,
            time_in_force=command.time_in_force,
            replaces=command.replaces,
            reference_price=reference,
            at_open_of=command.at_open_of,
            origin=command.origin,
            confirmed_by=command.confirmed_by,
            principal=command.principal,
            signal_id=command.signal_id,
            strategy=command.strategy,
            confidence=command.confidence,
            rationale=command.rationale,
            created_at=now,
            correlation_id=correlation,
        )
        return Decision(
            self._reply(
                command,
                True,
                "approved",
                "admitted (journaled); the simulator receives it next",
                price=price,
                submitted=True,
            ),
            AccountEvent(kind="admitted", ts=now, intent=intent),
        )

    def _placed_already(self, command: OrderCommand, same: bool) -> Decision:
        """The answer to a client order id already admitted: the same order again, or another one."""
        if same:
            return Decision(self._reply(command, True, "duplicate", "this order was already placed", duplicate=True))
        message = f"client_order_id {command.client_order_id} was already used for a different order"
        return Decision(self._reply(command, False, "duplicate_client_order_id", message))

    def _decide_cancel(self, command: OrderCommand, now: datetime) -> Decision:
        coid = command.client_order_id
        order = self.orders.get(coid) if coid else None
        if coid is None or order is None:
            return Decision(self._reply(command, False, "unknown_order", f"no order {coid}"))
        if not order.is_open:
            return Decision(self._reply(command, False, "order_not_open", f"order {coid} is already {order.status}"))
        cancel = OrderCancel(
            account=self.account_id,
            client_order_id=coid,
            origin=command.origin,
            reason=command.reason,
            created_at=now,
            correlation_id=command.correlation_id or coid,
        )
        return Decision(
            self._reply(command, True, "cancel_requested", "cancel sent to the simulator", submitted=True),
            AccountEvent(kind="cancel_requested", ts=now, cancel=cancel),
        )

    def _reply(
        self,
        command: OrderCommand,
        ok: bool,
        code: str,
        message: str,
        *,
        price: Decimal | None = None,
        duplicate: bool = False,
        submitted: bool = False,
    ) -> OrderReply:
        coid = command.client_order_id
        now_pos = self.projected_position(command.symbol) if command.symbol else None
        after = None
        if now_pos is not None and command.quantity.is_finite():
            after = now_pos + (command.quantity if command.side == "buy" else -command.quantity)
        notional = None
        if price is not None and command.quantity.is_finite():
            notional = command.quantity * price
        return OrderReply(
            ok=ok,
            code=code,
            message=message,
            client_order_id=coid,
            submitted=submitted,
            duplicate=duplicate,
            order=self.orders.get(coid) if coid else None,
            trading_state=self.gate.state,
            price_used=price,
            estimated_notional=notional,
            position_now=now_pos,
            position_after=after,
            journal_seq=self.seq,
        )

    # ------------------------------------------------------------------ limits

    def control_event(
        self,
        limits: RiskLimits,
        now: datetime,
        *,
        state: TradingState | None = None,
        reason: str = "",
        revision: int = 0,
    ) -> AccountEvent | None:
        """The event that puts `limits` (and `state`) in force, or None when they already are."""
        same_state = state is None or state is self.gate.state
        if limits == self.gate.limits and same_state and revision <= self.control_revision:
            return None
        return AccountEvent(
            kind="control", ts=now, control=Control(limits=limits, state=state, reason=reason, revision=revision)
        )


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _side(value: object) -> str:
    if value not in ("buy", "sell"):
        raise ValueError(f"a side is buy or sell, got {value!r}")
    return str(value)


def _dec(value: object) -> Decimal:
    number = Decimal(_str(value))
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _opt_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _time(value: object) -> datetime:
    at = datetime.fromisoformat(_str(value))
    if at.tzinfo is None:
        raise ValueError(f"a snapshot time carries its offset: {value!r}")
    return at


_SAME = ("symbol", "side", "quantity", "order_type", "limit_price", "stop_price", "time_in_force", "replaces")


def _same(intent: OrderIntent, command: OrderCommand) -> bool:
    return all(getattr(intent, k) == getattr(command, k) for k in _SAME)


def order_key(coid: str) -> int:
    """A client order id's 64-bit key in the ledger (the same in every process: blake2b, not `hash`)."""
    return int.from_bytes(hashlib.blake2b(coid.encode(), digest_size=8).digest(), "big")


def order_fingerprint(order: OrderIntent | OrderCommand) -> int:
    """64 bits of the fields `_same` compares; equal numbers give equal fingerprints (1.0 and 1.00 too)."""
    parts = []
    for name in _SAME:
        value = getattr(order, name)
        if isinstance(value, Decimal):
            value = value.normalize() if value.is_finite() else value
        parts.append("" if value is None else str(value))
    return int.from_bytes(hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest(), "big")


def _pack(pairs: Any) -> str:
    """(key, fingerprint) pairs as base64 of big-endian 16-byte records: 100k orders are 2.1 MB of text."""
    return base64.b64encode(b"".join(k.to_bytes(8, "big") + v.to_bytes(8, "big") for k, v in pairs)).decode()


def _unpack(text: object) -> list[tuple[int, int]]:
    raw = base64.b64decode(_str(text), validate=True)
    if len(raw) % 16:
        raise ValueError("a ledger is 16-byte records")
    return [
        (int.from_bytes(raw[i : i + 8], "big"), int.from_bytes(raw[i + 8 : i + 16], "big"))
        for i in range(0, len(raw), 16)
    ]


def _pack_codes(ledger: CodeLedger) -> dict[str, str]:
    """The denial ledger by reason code: {code: packed keys}, so each code is written once."""
    by_code: dict[str, list[int]] = {}
    for key, code in ledger.items():
        by_code.setdefault(code, []).append(key)
    return {code: _pack((k, 0) for k in keys) for code, keys in by_code.items()}


def _unpack_codes(data: object) -> dict[int, str]:
    if not isinstance(data, dict):
        raise TypeError("the denial ledger is an object of reason codes")
    out: dict[int, str] = {}
    for code, packed in data.items():
        interned = sys.intern(_str(code))
        for key, _ in _unpack(packed):
            out[key] = interned
    return out


def _shape_error(c: OrderCommand) -> str | None:
    """A field combination that cannot work (the gate checks the numbers themselves)."""
    if not _SYMBOL.fullmatch(c.symbol or ""):
        return f"symbol {c.symbol!r} is not a ticker (letters, digits and . _ : / -)"
    t = c.order_type
    if t in ("limit", "stop_limit") and c.limit_price is None:
        return f"a {t} order needs limit_price"
    if t in ("stop", "stop_limit") and c.stop_price is None:
        return f"a {t} order needs stop_price"
    if t in ("market", "stop") and c.limit_price is not None:
        return f"a {t} order takes no limit_price"
    if t in ("market", "limit") and c.stop_price is not None:
        return f"a {t} order takes no stop_price"
    if c.at_open_of is not None and t != "market":
        return "at_open_of is for market orders only"
    return None
