"""Snapshots of the account projection: restoring one and folding the rest of the journal is folding the whole journal.

The random journals are the account state machine's (tests/tools/test_account_state_machine.py: orders, cancels,
bars with gaps, limit changes, loss limits, kill switch and resume), with two more steps: a reader that starts from a
snapshot of the fold so far (through JSON) and follows the journal from there, and an authority that restarts from
its own snapshot and goes on deciding. After every step both hold what the full fold holds, on every observable.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.stateful import invariant, rule

from schemas.account import AccountEvent, Control, Mark, OrderCommand, Owner
from schemas.orders import Fill, OrderEvent
from schemas.risk import RiskLimits, TradingState
from tests.tools import test_account_state_machine as machine
from tools import account as account_module
from tools import portfolio as portfolio_module
from tools.account import Account, SnapshotError
from tools.clock import TestClock
from tools.risk import RiskGate

D = Decimal
T0 = datetime(2026, 1, 5, 15, tzinfo=UTC)


def through_json(account: Account, clock: TestClock | None = None) -> Account:
    return Account.from_snapshot(json.loads(json.dumps(account.to_snapshot())), clock)


def observables(a: Account, now: datetime) -> dict[str, Any]:
    """Everything a reader or the authority can see of the account (the state machine's projection and more)."""
    p, g = a.portfolio, a.gate
    return {
        **machine.projection(a, now),
        "account": p.account(),
        "open_positions": p.open_positions(),
        "fills": p.fills,
        "recent_fills": p.recent_fills(10_000),
        "marks": p.marks,
        "equity": p.equity(),
        "gross_exposure": a.gross_exposure(),
        "open_orders": a.open_orders(),
        "intents": a.intents,
        "denials": a.denials,
        "cancels": a.cancels,
        "price_ts": a.price_ts,
        "control_revision": a.control_revision,
        "owner": (a.account_id, a.fence, a.owner, a.execsim_fence),
        "totals": (a.admitted_total, a.denied_total, p.fill_count, p.last_fill_at),
        "kept": (list(a.finished), list(a.denied_order)),
        "ledgers": (a.placed_ledger, a.denied_ledger),
        "fill_ids": list(p._seen_order),
        "rate": [g.orders_in_window(now + timedelta(seconds=s)) for s in (0, 30, 3600, 86_400)],
    }


class SnapshotMachine(machine.AccountMachine):
    def __init__(self) -> None:
        super().__init__()
        self.resumed: Account | None = None  # a reader restored from a snapshot of a prefix, following the rest

    def record(self, event: AccountEvent) -> None:
        super().record(event)
        if self.resumed is not None:
            self.resumed.apply(event, len(self.journal))

    @rule()
    def a_reader_starts_from_a_snapshot(self) -> None:
        self.resumed = through_json(self.reader, self.clock)

    @rule()
    def the_authority_restarts_from_its_snapshot(self) -> None:
        self.account = through_json(self.account, self.clock)

    @invariant()
    def a_reader_from_a_snapshot_holds_the_full_fold(self) -> None:
        if self.resumed is None:
            return
        now = self.clock.now()
        assert observables(self.resumed, now) == observables(self.reader, now)
        assert self.resumed.to_snapshot() == self.reader.to_snapshot()

    @invariant()
    def the_authority_holds_the_full_fold(self) -> None:
        now = self.clock.now()
        assert observables(self.account, now) == observables(self.reader, now)


@pytest.fixture(autouse=True)
def _small_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep 3 finished orders, 2 denials and 4 fill ids whole, so the random journals evict (into the ledgers)
    within their few dozen steps, and snapshots carry evicted state too."""
    monkeypatch.setattr(account_module, "FINISHED_KEPT", 3)
    monkeypatch.setattr(account_module, "DENIALS_KEPT", 2)
    monkeypatch.setattr(portfolio_module, "FILL_IDS_KEPT", 4)


SnapshotMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, derandomize=True, deadline=None)
TestSnapshotMachine = SnapshotMachine.TestCase


# ---------------------------------------------------------------------- cases the machine does not reach


def journal() -> list[AccountEvent]:
    """Owners (authority and simulator), a denial, a cancel sent and still open, a partial fill, a day rollover."""
    limits = RiskLimits(max_position=D(50), max_orders_per_window=5, daily_loss_limit=D(40))
    a = Account()
    out: list[AccountEvent] = []

    def add(event: AccountEvent) -> None:
        out.append(event)
        a.apply(event, len(out))

    def place(coid: str, qty: str, ts: datetime, **kw: Any) -> None:
        command = OrderCommand(kind="place", symbol="AAA", side="buy", quantity=D(qty), client_order_id=coid, **kw)
        event = a.decide(command, ts).event
        assert event is not None
        add(event)

    add(AccountEvent(kind="control", ts=T0, control=Control(limits=limits, revision=3, starting_cash=D("5000.50"))))
    add(AccountEvent(kind="owner", ts=T0, owner=Owner(member="a-1", fence=7, execsim_fence=4)))
    add(AccountEvent(kind="mark", ts=T0, mark=Mark(symbol="AAA", price=D("10.125"), ts=T0)))
    place("o1", "20", T0)
    place("o2", "40", T0)  # beyond the position limit with o1 resting: denied
    place("o3", "5", T0, order_type="limit", limit_price=D("9.5"))
    fill = Fill(
        fill_id="f1", client_order_id="o1", symbol="AAA", side="buy", quantity=D(8), price=D("10.2"), fee=D("0.01"),
        ts=T0, correlation_id="o1",
    )  # fmt: skip
    add(AccountEvent(kind="fill", ts=T0, fill=fill))
    report = OrderEvent(
        event_id="o1.p", client_order_id="o1", symbol="AAA", side="buy", status="partially_filled", quantity=D(20),
        filled_quantity=D(8), ts=T0, correlation_id="o1",
    )  # fmt: skip
    add(AccountEvent(kind="report", ts=T0, report=report))
    cancel = a.decide(OrderCommand(kind="cancel", client_order_id="o3"), T0).event
    assert cancel is not None
    add(cancel)
    add(AccountEvent(kind="mark", ts=T0, mark=Mark(symbol="AAA", price=D("4"), ts=T0)))
    assert a.gate.state is TradingState.REDUCING
    later = T0 + timedelta(days=1)
    add(AccountEvent(kind="mark", ts=later, mark=Mark(symbol="AAA", price=D("4.5"), ts=later)))
    assert a.gate.state_reason == "new_day" and a.denials and a.cancels and a.execsim_fence == 4
    return out


def fold(events: list[AccountEvent], into: Account | None = None, start: int = 0) -> Account:
    account = into or Account()
    for seq, event in enumerate(events[start:], start + 1):
        account.apply(event, seq)
    return account


@pytest.mark.parametrize("cut", range(len(journal()) + 1))
def test_a_snapshot_at_any_entry_then_the_rest_is_the_whole_fold(cut: int) -> None:
    events = journal()
    whole = fold(events)
    resumed = fold(events, through_json(fold(events[:cut])), cut)
    now = T0 + timedelta(days=1)
    assert observables(resumed, now) == observables(whole, now)
    assert resumed.to_snapshot() == whole.to_snapshot()


def test_a_snapshot_is_plain_json_with_decimals_as_exact_strings() -> None:
    snapshot = fold(journal()).to_snapshot()
    text = json.dumps(snapshot)
    assert '"5000.50"' in text and '"10.125"' in text
    assert json.loads(text) == snapshot


def test_a_detached_copy_is_left_alone_by_later_entries() -> None:
    events = journal()
    account = fold(events[:8])
    copy = account.detached()
    before = copy.to_snapshot()
    assert before == account.to_snapshot()
    fold(events, account, 8)
    assert copy.to_snapshot() == before != account.to_snapshot()


def test_another_version_is_refused() -> None:
    snapshot = fold(journal()).to_snapshot()
    with pytest.raises(SnapshotError):
        Account.from_snapshot({**snapshot, "version": 99})
    with pytest.raises(SnapshotError):
        Account.from_snapshot({})


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s["portfolio"].update(cash=1.5),  # a float where an exact decimal belongs
        lambda s: s["gate"].update(state="PANIC"),
        lambda s: s.update(seq="12"),
        lambda s: s["working"].append(["ghost", "AAA", "buy", "1"]),  # open, but no such order
        lambda s: s["orders"][0].update(quantity="NaN"),
        lambda s: s["price_ts"].update(AAA="2026-01-05T15:00:00"),  # a naive time
        lambda s: s.pop("intents"),
        lambda s: s.update(placed_ledger="AAAA"),  # not whole 16-byte records
        lambda s: s["finished"].append("ghost"),  # kept whole, but no such order
        lambda s: s["portfolio"].update(fill_count=-1),
    ],
)
def test_a_malformed_snapshot_raises(damage: Any) -> None:
    snapshot = json.loads(json.dumps(fold(journal()).to_snapshot()))
    damage(snapshot)
    with pytest.raises((ValueError, TypeError, KeyError, ArithmeticError)):
        Account.from_snapshot(snapshot)


def test_the_restored_gate_takes_the_given_clock() -> None:
    clock = TestClock(T0)
    restored = Account.from_snapshot(Account(gate=RiskGate(clock=TestClock(T0))).to_snapshot(), clock)
    assert restored.gate.clock is clock
