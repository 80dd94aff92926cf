"""Order operations through the account authority's rule: decide, journal, fold, with the real engine.

`Desk` is the authority's loop in one process: `Account.decide` answers a command and names the
journal event; the event is appended and folded (`Account.apply`); an admitted intent goes to the
real matching engine, whose reports and fills come back as journal events and are folded too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from execsim.engine import Engine, EngineConfig
from schemas.account import AccountEvent, Control, Mark, OrderCommand, OrderReply
from schemas.market import Bar
from schemas.orders import Fill
from schemas.risk import TradingState
from tools.account import Account
from tools.clock import TestClock
from tools.risk import RiskGate, RiskLimits

D = Decimal
T0 = datetime(2026, 1, 5, 15, tzinfo=UTC)


@dataclass
class Desk:
    account: Account
    engine: Engine
    clock: TestClock
    journal: list[AccountEvent] = field(default_factory=list)

    def send(self, kind: str = "place", **fields: Any) -> OrderReply:
        command = OrderCommand(kind=kind, **fields)  # type: ignore[arg-type]
        decision = self.account.decide(command, self.clock.now())
        event = decision.event
        if event is not None:
            self.record(event)
            if event.intent is not None:
                self.feed(self.engine.submit(event.intent))
            elif event.cancel is not None:
                self.feed(self.engine.cancel(event.cancel.client_order_id, event.cancel.reason))
        return decision.reply

    def record(self, event: AccountEvent) -> None:
        self.journal.append(event)
        self.account.apply(event, len(self.journal))

    def feed(self, events: list[Any]) -> None:
        for e in events:
            kind = "fill" if isinstance(e, Fill) else "report"
            self.record(AccountEvent(kind=kind, ts=self.clock.now(), **{kind: e}))

    def mark(self, symbol: str, price: str) -> None:
        self.feed(self.engine.set_price(symbol, D(price), self.clock.now()))
        self.record(
            AccountEvent(
                kind="mark", ts=self.clock.now(), mark=Mark(symbol=symbol, price=D(price), ts=self.clock.now())
            )
        )

    def bar(self, o: str, h: str, low: str, c: str, volume: str = "0", symbol: str = "AAPL") -> None:
        self.clock.advance(60)
        b = Bar(symbol=symbol, ts=self.clock.now(), open=D(o), high=D(h), low=D(low), close=D(c), volume=D(volume))
        self.feed(self.engine.on_bar(b))
        self.record(AccountEvent(kind="mark", ts=self.clock.now(), mark=Mark(symbol=symbol, price=b.close, ts=b.ts)))

    def control(self, state: TradingState | None = None, **limits: Any) -> None:
        control = Control(limits=RiskLimits(**limits) if limits else self.account.gate.limits, state=state)
        self.record(AccountEvent(kind="control", ts=self.clock.now(), control=control))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.journal]


def desk(price: str | None = "100", **limits: Any) -> Desk:
    clock = TestClock(T0)
    d = Desk(Account(gate=RiskGate(RiskLimits(**limits), clock)), Engine(clock, EngineConfig(fee_bps=D(10))), clock)
    if price is not None:
        d.mark("AAPL", price)
    return d


def order(coid: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"symbol": "AAPL", "side": "buy", "quantity": D(10), "client_order_id": coid, **fields}


def limit_buy(coid: str, quantity: int = 10, price: str = "90") -> dict[str, Any]:
    return order(coid, quantity=D(quantity), order_type="limit", limit_price=D(price), time_in_force="GTC")


def test_an_approved_market_order_is_admitted_filled_by_the_engine_and_tracked_from_its_reports() -> None:
    d = desk()
    reply = d.send(**order("m1"))
    assert (reply.ok, reply.code, reply.submitted) == (True, "approved", True)
    view = d.account.orders["m1"]
    assert (view.status, view.filled_quantity, view.avg_fill_price) == ("filled", D(10), D(100))
    assert d.account.position("AAPL") == D(10) and d.account.portfolio.fees_paid() == D(1)
    assert d.kinds() == ["mark", "admitted", "report", "fill", "report"]
    assert d.account.open_orders() == [] and d.account.working == {} and d.account.resting == {}


def test_a_denied_order_is_journaled_as_a_denied_event_and_never_reaches_the_engine() -> None:
    d = desk(max_order_quantity=D(5))
    reply = d.send(**order("big", quantity=D(6)))
    assert (reply.ok, reply.code, reply.submitted) == (False, "max_order_quantity", False)
    assert d.kinds() == ["mark", "denied"] and not d.engine.knows("big")
    denied = d.journal[-1].denied
    assert denied is not None and (denied.client_order_id, denied.reason_code) == ("big", "max_order_quantity")
    again = d.send(**order("big", quantity=D(6)))
    assert (again.code, again.duplicate) == ("max_order_quantity", True) and d.kinds() == ["mark", "denied"]


def test_resting_orders_count_toward_the_position_limit() -> None:
    d = desk(max_position=D(15))
    assert d.send(**limit_buy("l1")).ok
    assert d.account.resting_of("AAPL") == (D(10), D(0))
    reply = d.send(**order("m1", quantity=D(6)))
    assert reply.code == "max_position" and not d.engine.knows("m1")
    assert d.send(**order("m2", quantity=D(5))).ok


def test_repeating_a_client_order_id_answers_duplicate_and_a_different_order_under_it_is_refused() -> None:
    d = desk()
    first = d.send(**order("same", quantity=D(1)))
    journal = len(d.journal)
    again = d.send(**order("same", quantity=D(1)))
    assert (again.ok, again.code, again.duplicate, again.submitted) == (True, "duplicate", True, False)
    other = d.send(**order("same", quantity=D(2)))
    assert (other.ok, other.code) == (False, "duplicate_client_order_id")
    assert first.ok and len(d.journal) == journal and d.account.position("AAPL") == D(1)


def test_cancel_ends_an_open_order_and_passes_while_trading_is_halted() -> None:
    d = desk()
    assert d.send(**limit_buy("l1", 1)).ok
    d.control(state=TradingState.HALTED)
    assert d.send(**order("s1", side="sell", quantity=D(1))).code == "trading_halted"
    reply = d.send("cancel", client_order_id="l1", reason="changed my mind")
    assert (reply.ok, reply.code) == (True, "cancel_requested")
    assert d.account.orders["l1"].status == "canceled" and d.account.resting == {} and d.account.cancels == {}
    assert d.send("cancel", client_order_id="l1").code == "order_not_open"
    assert d.send("cancel", client_order_id="nope").code == "unknown_order"
    assert d.kinds()[-3:] == ["denied", "cancel_requested", "report"]


def test_a_check_is_a_dry_run_that_journals_nothing_and_does_not_count_toward_the_order_rate() -> None:
    d = desk(max_orders_per_window=1, max_order_notional=D(5000))
    check = d.send("check", **order(quantity=D(10)))
    assert (check.ok, check.price_used, check.estimated_notional, check.submitted) == (True, D(100), D(1000), False)
    limit = d.send("check", **order(quantity=D(60), order_type="limit", limit_price=D(90)))
    assert (limit.code, limit.price_used, limit.estimated_notional) == ("max_order_notional", D(100), D(6000))
    assert d.kinds() == ["mark"]
    assert d.send(**order("m1", quantity=D(1))).ok
    assert d.send("check", **order(quantity=D(1))).code == "order_rate"


def test_a_market_order_for_a_symbol_without_a_price_is_refused_no_price_and_journals_nothing() -> None:
    d = desk(price=None)
    reply = d.send(**order("m1", quantity=D(1)))
    assert (reply.ok, reply.code) == (False, "no_price")
    assert d.journal == [] and not d.engine.knows("m1")


def test_an_order_whose_prices_do_not_fit_its_type_is_an_invalid_order() -> None:
    d = desk()
    assert d.send(**order("a", order_type="limit")).code == "invalid_order"
    assert d.send(**order("b", stop_price=D(1))).code == "invalid_order"
    assert d.send(**order("c", symbol="not a ticker!")).code == "invalid_order"
    assert d.kinds() == ["mark"]


def test_replace_needs_an_open_order_and_replacing_one_cancels_it_in_the_engine() -> None:
    d = desk()
    assert d.send(**order("r1", quantity=D(1), replaces="ghost")).code == "order_not_open"
    assert d.send(**limit_buy("l1", 5)).ok
    assert d.send(**limit_buy("l2", 5, "95") | {"replaces": "l1"}).ok
    assert d.account.orders["l1"].status == "canceled" and d.account.orders["l1"].reason == "replaced_by:l2"
    assert list(d.account.working) == ["l2"] and d.account.resting_of("AAPL") == (D(5), D(0))
    assert d.send(**limit_buy("l3", 5) | {"replaces": "l1"}).code == "order_not_open"


def test_partial_fills_leave_the_remainder_resting_until_the_order_is_done() -> None:
    clock = TestClock(T0)
    d = Desk(Account(gate=RiskGate(RiskLimits(), clock)), Engine(clock, EngineConfig(participation=D("0.5"))), clock)
    d.mark("AAPL", "100")
    assert d.send(**limit_buy("l1", 10, "95")).ok
    d.bar("96", "96", "94", "95", volume="8")  # 4 units may fill on this bar
    assert d.account.orders["l1"].status == "partially_filled" and d.account.resting_of("AAPL") == (D(6), D(0))
    d.bar("95", "95", "94", "94", volume="100")
    assert d.account.orders["l1"].status == "filled" and d.account.working == {} and d.account.resting == {}
    assert d.account.position("AAPL") == D(10)


def test_a_day_order_expires_at_the_next_session_and_leaves_the_working_set() -> None:
    d = desk()
    assert d.send(**limit_buy("d1") | {"time_in_force": "DAY"}).ok
    d.bar("100", "101", "99", "100")
    d.clock.advance(24 * 3600)
    d.bar("100", "101", "99", "100")
    assert d.account.orders["d1"].status == "expired" and d.account.working == {}


def test_a_projection_folded_from_the_journal_equals_the_live_one() -> None:
    d = desk(max_position=D(50))
    d.send(**order("m1", quantity=D(7)))
    d.send(**limit_buy("l1", 5))
    d.send(**order("s1", side="sell", quantity=D(3), order_type="stop", stop_price=D(95)))
    d.send(**order("big", quantity=D(100)))
    d.bar("99", "99", "94", "96")
    d.clock.advance(timedelta(minutes=5).total_seconds())
    d.send("cancel", client_order_id="l1")
    replay = Account(gate=RiskGate(RiskLimits(max_position=D(50))))
    for seq, event in enumerate(d.journal, 1):
        replay.apply(event, seq)
    live = d.account
    assert replay.orders == live.orders and replay.working == live.working and replay.resting == live.resting
    assert replay.portfolio.cash == live.portfolio.cash and replay.denials == live.denials
    assert {s: replay.position(s) for s in ("AAPL",)} == {s: live.position(s) for s in ("AAPL",)}
    assert replay.seq == live.seq == len(d.journal)
