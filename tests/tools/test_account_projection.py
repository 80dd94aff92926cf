"""The account projection and its worst-case gate, case by case: what the authority admits, what it
journals, and that a fresh fold of the journal holds the same account."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from execsim.engine import Engine, EngineConfig
from schemas.account import AccountEvent, Control, Mark, OrderCommand, OrderReply
from schemas.orders import Fill
from schemas.risk import TradingState
from tools.account import FINISHED_KEPT, Account
from tools.clock import TestClock
from tools.portfolio import FILL_IDS_KEPT, FILLS_KEPT, Portfolio
from tools.risk import LimitChangeRefused, RiskGate, RiskLimits

D = Decimal
T0 = datetime(2026, 1, 5, 15, tzinfo=UTC)


@dataclass
class Book:
    """An account, its journal and the real engine; every event is journaled, then folded."""

    account: Account
    clock: TestClock = field(default_factory=lambda: TestClock(T0))
    journal: list[AccountEvent] = field(default_factory=list)
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = Engine(self.clock, EngineConfig())

    def record(self, event: AccountEvent) -> None:
        self.journal.append(event)
        self.account.apply(event, len(self.journal))

    def send(self, kind: str = "place", **fields: Any) -> OrderReply:
        decision = self.account.decide(OrderCommand(kind=kind, **fields), self.clock.now())  # type: ignore[arg-type]
        event = decision.event
        if event is not None:
            self.record(event)
            if event.intent is not None:
                self.feed(self.engine.submit(event.intent))
            elif event.cancel is not None:
                self.feed(self.engine.cancel(event.cancel.client_order_id))
        return decision.reply

    def feed(self, events: list[Any]) -> None:
        for e in events:
            kind = "fill" if isinstance(e, Fill) else "report"
            self.record(AccountEvent(kind=kind, ts=self.clock.now(), **{kind: e}))

    def mark(self, symbol: str, price: str, ts: datetime | None = None) -> None:
        at = ts or self.clock.now()
        self.feed(self.engine.set_price(symbol, D(price), self.clock.now()))
        self.record(AccountEvent(kind="mark", ts=self.clock.now(), mark=Mark(symbol=symbol, price=D(price), ts=at)))

    def control(self, state: TradingState | None = None, **limits: Any) -> None:
        lim = RiskLimits(**limits) if limits else self.account.gate.limits
        self.record(AccountEvent(kind="control", ts=self.clock.now(), control=Control(limits=lim, state=state)))


def book(**limits: Any) -> Book:
    b = Book(Account(gate=RiskGate(RiskLimits(**limits))))
    if limits:
        b.control(**limits)
    return b


def o(symbol: str, side: str, quantity: Any, coid: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"symbol": symbol, "side": side, "quantity": D(quantity), "client_order_id": coid, **fields}


def projection(a: Account, now: datetime) -> dict[str, Any]:
    """Everything a reader must agree on with the authority."""
    g = a.gate
    return {
        "positions": {s: (p.quantity, p.avg_price, p.realized_pnl, p.fees) for s, p in a.portfolio.positions.items()},
        "cash": a.portfolio.cash,
        "orders": a.orders,
        "open": {v.client_order_id: v.quantity - v.filled_quantity for v in a.open_orders()},
        "resting": a.resting,
        "state": (g.state, g.state_reason),
        "peak": g.peak_equity,
        "day_start": g.day_start_equity,
        "in_window": a.orders_in_window(now),
        "prices": a.prices,
        "limits": g.limits,
        "seq": a.seq,
    }


def fold(events: list[AccountEvent]) -> Account:
    replay = Account()
    for seq, event in enumerate(events, 1):
        replay.apply(event, seq)
    return replay


# (a) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order",
    [
        o("IBM", "sell", 900, order_type="limit", limit_price=D("0.01")),
        o("IBM", "buy", 900, order_type="stop", stop_price=D("0.01")),
        o("IBM", "buy", 900, order_type="stop_limit", stop_price=D("0.01"), limit_price=D("0.01")),
    ],
)
def test_a_marketable_limit_or_stop_far_from_the_market_is_valued_at_the_market(order: dict[str, Any]) -> None:
    b = book(max_order_notional=D(100_000))
    b.mark("IBM", "120")
    check = b.send("check", **order)
    assert (check.ok, check.code, check.price_used, check.estimated_notional) == (
        False,
        "max_order_notional",
        D(120),
        D(108_000),
    )
    placed = b.send(**order)
    assert placed.code == "max_order_notional" and b.journal[-1].kind == "denied"


# (b) ------------------------------------------------------------------------------------------------


def test_resting_orders_of_the_two_sides_never_net_out() -> None:
    b = book(max_position=D(1000))
    b.mark("IBM", "100")
    assert b.send(**o("IBM", "buy", 600, "rb", order_type="limit", limit_price=D(90), time_in_force="GTC")).ok
    assert b.send(**o("IBM", "sell", 600, "rs", order_type="limit", limit_price=D(110), time_in_force="GTC")).ok
    assert b.account.resting_of("IBM") == (D(600), D(600)) and b.account.projected_position("IBM") == 0
    denied = b.send(**o("IBM", "buy", 600))
    assert denied.code == "max_position"
    assert b.send(**o("IBM", "buy", 400)).ok  # 600 resting + 400 reaches the limit exactly


# (c) ------------------------------------------------------------------------------------------------


def test_in_reducing_a_sell_that_could_flip_with_the_resting_sells_is_denied() -> None:
    b = book()
    b.mark("IBM", "100")
    assert b.send(**o("IBM", "buy", 100)).ok and b.account.position("IBM") == D(100)
    assert b.send(**o("IBM", "sell", 100, "rs", order_type="limit", limit_price=D(150), time_in_force="GTC")).ok
    b.control(state=TradingState.REDUCING)
    assert b.send(**o("IBM", "sell", 1)).code == "reducing_only"
    assert b.send(**o("IBM", "buy", 1)).code == "reducing_only"
    b.send("cancel", client_order_id="rs")
    assert b.send(**o("IBM", "sell", 1)).ok  # with nothing resting it only shrinks the position


# (d) ------------------------------------------------------------------------------------------------


def test_a_mark_that_breaches_the_daily_loss_limit_moves_to_reducing_at_once_and_survives_a_replay() -> None:
    b = book(daily_loss_limit=D(100))
    b.mark("AAPL", "100")
    assert b.send(**o("AAPL", "buy", 15)).ok
    assert b.account.gate.state is TradingState.ACTIVE
    b.clock.advance(60)
    b.mark("AAPL", "60")  # 15 × 40 = 600 lost, no fill since
    assert (b.account.gate.state, b.account.gate.state_reason) == (TradingState.REDUCING, "daily_loss_limit")
    assert b.send(**o("AAPL", "buy", 1)).code == "reducing_only"
    now = b.clock.now()
    replay = fold(b.journal)
    assert projection(replay, now) == projection(b.account, now)
    assert replay.gate.state is TradingState.REDUCING and replay.gate.day_start_equity == D(100_000)


def test_a_widened_rate_window_counts_the_same_orders_live_and_in_a_replay() -> None:
    b = book(max_orders_per_window=2, order_window_seconds=60)
    b.mark("IBM", "100")
    for coid in ("r1", "r2"):
        assert b.send(**o("IBM", "buy", 1, coid, order_type="limit", limit_price=D(50), time_in_force="GTC")).ok
    b.clock.advance(120)
    assert b.send("check", **o("IBM", "buy", 1)).ok  # the window has passed: a dry run (that must prune nothing)
    b.control(max_orders_per_window=2, order_window_seconds=3600)
    now = b.clock.now()
    replay = fold(b.journal)
    assert b.account.orders_in_window(now) == replay.orders_in_window(now) == 2
    assert b.send("check", **o("IBM", "buy", 1)).code == "order_rate"


# (e) ------------------------------------------------------------------------------------------------


def test_an_mcp_actor_may_not_add_a_per_symbol_position_limit_above_the_global_one() -> None:
    gate = RiskGate(RiskLimits(max_position=D(1000)))
    with pytest.raises(LimitChangeRefused) as refused:
        gate.update_limits(RiskLimits(max_position=D(1000), max_position_per_symbol={"AAPL": D(1500)}), "mcp")
    assert refused.value.code == "loosening_not_allowed" and gate.limits.max_position_per_symbol == {}
    gate.update_limits(RiskLimits(max_position=D(1000), max_position_per_symbol={"AAPL": D(500)}), "mcp")
    assert gate.limits.position_limit("AAPL") == D(500)


# (f) ------------------------------------------------------------------------------------------------


def test_a_stale_signal_is_denied_and_journaled_as_a_denial() -> None:
    b = book()
    b.mark("IBM", "100")
    reply = b.send(**o("IBM", "buy", 1, "late", fired_at=b.clock.now() - timedelta(seconds=6)))
    assert (reply.ok, reply.code) == (False, "stale_signal")
    denied = b.journal[-1].denied
    assert denied is not None and (denied.client_order_id, denied.reason_code) == ("late", "stale_signal")
    assert not b.engine.knows("late")


def test_a_daily_bar_with_an_old_market_time_but_a_fresh_fired_at_is_admitted() -> None:
    b = book()
    b.clock.advance(8 * 3600)
    yesterday = T0 - timedelta(days=1)
    b.mark("IBM", "100", ts=yesterday)
    reply = b.send(**o("IBM", "buy", 1, "daily", fired_at=b.clock.now() - timedelta(seconds=1), reference_price=D(100)))
    assert (reply.ok, reply.code) == (True, "approved") and b.account.position("IBM") == D(1)


# (g) ------------------------------------------------------------------------------------------------

BAD = [D("NaN"), D("sNaN"), D("Infinity"), D("-Infinity"), D(-1), D(0), D("0.00000000001"), D("1e30")]


@pytest.mark.parametrize("value", BAD, ids=str)
@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"quantity": None}, "invalid_quantity"),
        ({"order_type": "limit", "limit_price": None}, "invalid_price"),
        ({"order_type": "stop", "stop_price": None}, "invalid_price"),
        ({"order_type": "stop_limit", "stop_price": D(100), "limit_price": None}, "invalid_price"),
        ({"reference_price": None}, "invalid_price"),
    ],
    ids=["quantity", "limit", "stop", "stop_limit", "reference"],
)
@pytest.mark.parametrize("kind", ["check", "place"])
def test_a_bad_number_is_a_coded_denial_that_journals_nothing(
    kind: str, fields: dict[str, Any], code: str, value: Decimal
) -> None:
    b = book(max_order_notional=D(100_000), max_gross_exposure=D(200_000))
    b.mark("IBM", "120")
    values = {k: (value if v is None else v) for k, v in fields.items()}
    command = OrderCommand.model_construct(**{"kind": kind, "symbol": "IBM", "quantity": D(1), **values})
    decision = b.account.decide(command, b.clock.now())
    assert (decision.reply.ok, decision.reply.code, decision.event) == (False, code, None)


@pytest.mark.parametrize("value", BAD, ids=str)
@pytest.mark.parametrize("name", ["quantity", "price", "limit_price", "stop_price"])
def test_the_gate_itself_answers_a_bad_number_with_a_code(name: str, value: Decimal) -> None:
    args: dict[str, Any] = {"symbol": "IBM", "side": "sell", "quantity": D(1), "projected_position": D(0)}
    args[name] = value
    verdict = RiskGate(RiskLimits(**{"max_gross_exposure": D(1)})).check(**args)  # type: ignore[arg-type]
    assert (verdict.approved, verdict.reason_code) == (
        False,
        "invalid_quantity" if name == "quantity" else "invalid_price",
    )


# (h) ------------------------------------------------------------------------------------------------


def test_finished_orders_leave_the_working_set() -> None:
    b = book(max_open_orders=1, max_position=D(10))
    b.mark("IBM", "100")
    for i in range(5_000):
        assert b.send(**o("IBM", "buy" if i % 2 == 0 else "sell", 1)).ok
        coid = f"l{i}"
        assert b.send(**o("IBM", "buy", 1, coid, order_type="limit", limit_price=D(50), time_in_force="GTC")).ok
        assert b.send("cancel", client_order_id=coid).ok
    a = b.account
    assert a.working == {} and a.resting == {} and a.cancels == {}
    assert a.open_order_count() == 0 and a.position("IBM") == 0
    # memory holds the newest finished orders whole, the rest as 64-bit keys; the totals count all of them
    assert len(a.orders) == len(a.intents) == FINISHED_KEPT and len(a.placed_ledger) == 10_000 - FINISHED_KEPT
    assert a.admitted_total == 10_000 and a.portfolio.fill_count == 5_000


def test_an_order_older_than_the_ones_kept_whole_is_still_a_duplicate_and_its_id_still_used() -> None:
    b = book(max_position=D(10), max_order_notional=D(500))
    b.mark("IBM", "100")
    assert b.send(**o("IBM", "buy", 1, "first")).ok
    assert not b.send(**o("IBM", "buy", 9, "denied-first")).ok  # 900 > the notional limit
    for i in range(FINISHED_KEPT):
        assert b.send(**o("IBM", "buy" if i % 2 else "sell", 1, f"n{i}")).ok
        assert not b.send(**o("IBM", "buy", 9, f"d{i}")).ok
    a = b.account
    assert "first" not in a.orders and "denied-first" not in a.denials and a.knows("first") and a.knows("denied-first")
    entries = len(b.journal)

    again = b.send(**o("IBM", "buy", D("1.000"), "first"))  # the same order (1.000 is 1)
    assert (again.ok, again.code, again.duplicate) == (True, "duplicate", True)
    other = b.send(**o("IBM", "sell", 1, "first"))
    assert (other.ok, other.code) == (False, "duplicate_client_order_id")
    denied = b.send(**o("IBM", "buy", 1, "denied-first"))  # would pass now, but it was denied: denied again
    assert (denied.ok, denied.code, denied.duplicate) == (False, "max_order_notional", True)
    assert len(b.journal) == entries, "a retry of an evicted order or denial journals nothing"
    assert a.admitted_total == FINISHED_KEPT + 1 and a.denied_total == FINISHED_KEPT + 1
    assert not a.knows("never-sent") and b.send(**o("IBM", "buy", 1, "never-sent")).ok


def test_memory_of_the_fold_stays_flat_as_orders_pile_up() -> None:
    """The fold's containers hold the working set and a fixed number of finished orders, denials and fills
    whole; what grows is the two ledgers, one 64-bit key and value per order."""
    b = book(max_position=D(10))
    b.mark("IBM", "100")
    sizes = []
    for i in range(6_000):
        assert b.send(**o("IBM", "buy" if i % 2 else "sell", 1)).ok
        if i % 2_000 == 1_999:
            a = b.account
            sizes.append((len(a.orders), len(a.intents), len(a.portfolio.fills), len(a.finished)))
    assert sizes == [(FINISHED_KEPT, FINISHED_KEPT, FILLS_KEPT, FINISHED_KEPT)] * 3
    assert len(b.account.placed_ledger) == 6_000 - FINISHED_KEPT and b.account.portfolio.fill_count == 6_000


def test_fill_ids_are_remembered_for_the_newest_fills_only() -> None:
    p = Portfolio()
    for i in range(FILL_IDS_KEPT + 10):
        assert p.apply(_fill(f"f{i}"))
    assert not p.apply(_fill(f"f{FILL_IDS_KEPT + 9}")) and p.knows_fill("f10") and not p.knows_fill("f9")
    assert len(p._seen) == len(p._seen_order) == FILL_IDS_KEPT and p.fill_count == FILL_IDS_KEPT + 10


def _fill(fill_id: str) -> Fill:
    return Fill(
        fill_id=fill_id, client_order_id="c", symbol="IBM", side="buy", quantity=D(1), price=D(1), fee=D(0), ts=T0,
        correlation_id="c",
    )  # fmt: skip


# the gross exposure starts from what the gate takes out ----------------------------------------------


def test_gross_exposure_values_the_symbol_at_the_orders_reference_price_when_it_is_above_the_mark() -> None:
    b = book(max_position=D(5000), max_gross_exposure=D(150_000), max_order_notional=D(1_000_000))
    b.mark("IBM", "100")
    assert b.send(**o("IBM", "buy", 1000)).ok  # gross 100 000 at the mark
    # the bridge decided on a bar at 200: 1100 × 200 = 220 000 is beyond the limit
    assert b.send("check", **o("IBM", "buy", 100, reference_price=D(200))).code == "max_gross_exposure"
    assert b.send("check", **o("IBM", "buy", 100)).ok  # 1100 × 100 at the mark is within it
