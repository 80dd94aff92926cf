"""Which execution messages the authority journals (`Authority._execution_events`), against a real journal.

A report or fill of an order its view does not know at all is journaled anyway: if the view were behind the
journal, the append's sequence check would fail and the message would come back after the refold, instead of being
acked and lost. One of an order it knows as finished long ago (only in the idempotency ledger) is a repeat and is
dropped, and so is a report of an order already final."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from nats.aio.msg import Msg

from authority.service import Authority
from bus.embedded import EmbeddedNats
from bus.journal import ensure_journal
from schemas.account import OrderCommand
from schemas.orders import Fill, OrderEvent
from schemas.risk import RiskLimits
from tests.authority import test_superseded_reports as superseded
from tools import account as account_module

D = Decimal
T0 = datetime(2026, 1, 5, 15, tzinfo=UTC)


def report(coid: str, status: str) -> OrderEvent:
    return superseded.report(coid, status, symbol="CNF", quantity=1)


def fill(coid: str) -> Fill:
    return superseded.fill(coid, symbol="CNF", quantity=1)


def delivered(js, payload: Fill | OrderEvent) -> Msg:  # type: ignore[no-untyped-def]
    """`payload` as the authority's executions consumer receives it."""
    subject = "executions.fill" if isinstance(payload, Fill) else "executions.report"
    return Msg(_client=js._nc, subject=subject, data=payload.model_dump_json().encode())


async def test_unknown_orders_are_journaled_and_orders_finished_long_ago_are_not(
    nats_server: EmbeddedNats, js, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(account_module, "FINISHED_KEPT", 1)
    await ensure_journal(js)
    authority = Authority(js._nc, js, key=b"k", limits=RiskLimits(max_position=D(1000)))
    await authority.start()
    try:
        for coid in ("old", "new"):
            command = OrderCommand(
                kind="place", symbol="CNF", side="buy", quantity=D(1), order_type="limit", limit_price=D(10),
                time_in_force="GTC", client_order_id=coid, origin="mcp",
            )  # fmt: skip
            assert (await authority.handle(command)).ok
            for event, msg_id in authority._execution_events(report(coid, "filled")):
                await authority._durable([await authority._stage(event, msg_id)])
        account = authority.account
        assert "old" not in account.orders and account.knows("old"), "old left memory for the ledger"
        assert account.orders["new"].status == "filled"

        def kinds(payload: Fill | OrderEvent) -> list[str]:
            return [event.kind for event, _ in authority._execution_events(payload)]

        assert kinds(report("ghost", "accepted")) == ["report"]
        assert kinds(fill("ghost")) == ["fill"]
        assert kinds(report("old", "canceled")) == [] and kinds(fill("old")) == []
        assert kinds(report("new", "canceled")) == []  # final already
    finally:
        await authority.stop()


async def test_a_fill_redelivered_after_its_append_was_refused_is_not_acked_until_journaled(
    nats_server: EmbeddedNats, js
) -> None:
    """The projection folds an entry when it is sent; if the journal refuses it, the projection holds a fill the
    journal does not. A redelivery of that fill must not be dropped as known and acked (it was: an order then stayed
    working forever in the cluster failover test); it is refused until the journal is folded again, then
    journaled."""
    from authority.service import Unavailable
    from schemas.account import AccountEvent, Mark, journal_subject

    await ensure_journal(js)
    authority = Authority(js._nc, js, key=b"k", limits=RiskLimits(max_position=D(1000)))
    await authority.start()
    try:
        command = OrderCommand(
            kind="place", symbol="CNF", side="buy", quantity=D(1), order_type="limit", limit_price=D(10),
            time_in_force="GTC", client_order_id="o1", origin="mcp",
        )  # fmt: skip
        assert (await authority.handle(command)).ok
        # another writer appends: the authority's next append expects a sequence the journal has moved past
        mark = AccountEvent(kind="mark", ts=T0, mark=Mark(symbol="CNF", price=D(10), ts=T0))
        await js.publish(journal_subject(), mark.model_dump_json().encode())
        msg = delivered(js, fill("o1"))
        with pytest.raises(Unavailable):
            await authority._on_executions([msg])  # staged, folded, refused by the journal
        with pytest.raises(Unavailable):
            await authority._on_executions([msg])  # the redelivery: not acked on a projection the journal refused
        async with authority._lock:
            await authority._recover()
        await authority._on_executions([msg])  # folded again: journaled now
        assert authority.account.portfolio.knows_fill("o1.f1")
        assert authority.account.position("CNF") == D(1)
    finally:
        await authority.stop()


async def test_the_filled_report_after_the_fill_that_completed_the_order_is_not_journaled(
    nats_server: EmbeddedNats, js
) -> None:
    """The fill that completes an order finishes it in the fold (status `filled`, no longer working), so the
    simulator's `filled` report that follows changes nothing and is not journaled: a market order filled at once
    costs the journal its admission and its fill. A partial fill leaves the order open, and its reports journaled.
    The journal folded afresh shows the same finished order."""
    from bus.journal import read_journal
    from tools.account import Account

    await ensure_journal(js)
    authority = Authority(js._nc, js, key=b"k", limits=RiskLimits(max_position=D(1000)))
    await authority.start()
    try:
        for coid, quantity in (("whole", 1), ("part", 2)):
            command = OrderCommand(
                kind="place", symbol="CNF", side="buy", quantity=D(quantity), order_type="limit",
                limit_price=D(10), time_in_force="GTC", client_order_id=coid, origin="mcp",
            )  # fmt: skip
            assert (await authority.handle(command)).ok
        start = (await js.stream_info("ACCOUNT")).state.last_seq
        await authority._on_executions([delivered(js, fill("whole"))])
        # a batch of its own: the fold decides, not superseded_reports
        await authority._on_executions([delivered(js, report("whole", "filled"))])
        partial = superseded.report("part", "partially_filled")
        await authority._on_executions([delivered(js, fill("part")), delivered(js, partial)])

        journal = await read_journal(js, "paper")
        assert [event.kind for seq, event in journal if seq > start] == ["fill", "fill", "report"]
        view = authority.account.orders["whole"]
        assert (view.status, view.filled_quantity, view.avg_fill_price) == ("filled", D(1), D(10))
        assert "whole" not in authority.account.working
        assert authority.account.orders["part"].is_open and "part" in authority.account.working

        fresh = Account()
        for seq, event in journal:
            fresh.apply(event, seq)
        assert fresh.orders["whole"] == view and "whole" not in fresh.working
        assert fresh.position("CNF") == authority.account.position("CNF") == D(2)
    finally:
        await authority.stop()
