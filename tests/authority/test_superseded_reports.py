"""Within one batch of executions, a non-final report that a later report of the same order replaces in full, and the
`filled` report after the fill that completed the order, are not journaled (`schemas.orders.superseded_reports`; the
simulator does not publish them either): the fold keeps only the newest status, and the completing fill finishes the
order, so the entry would change nothing but the journal's length."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from schemas.orders import Fill, OrderEvent
from schemas.orders import superseded_reports as _superseded_reports

T0 = datetime(2026, 1, 5, 15, tzinfo=UTC)


def report(
    coid: str, status: str, event_id: str | None = None, *, symbol: str = "AAA", quantity: int = 2, **fields: object
) -> OrderEvent:
    """A buy's report; `filled` carries the whole quantity filled. (tests/authority/test_execution_entries.py too)"""
    return OrderEvent(
        event_id=event_id or f"{coid}.{status}", client_order_id=coid, symbol=symbol, side="buy", status=status,
        quantity=Decimal(quantity), filled_quantity=Decimal(quantity if status == "filled" else 0), ts=T0,
        correlation_id=coid, **fields,
    )  # fmt: skip


def fill(coid: str, *, symbol: str = "AAA", quantity: int = 2) -> Fill:
    return Fill(
        fill_id=f"{coid}.f1", client_order_id=coid, symbol=symbol, side="buy", quantity=Decimal(quantity),
        price=Decimal(10), fee=Decimal(0), ts=T0, correlation_id=coid,
    )  # fmt: skip


def test_accepted_then_filled_in_one_batch_journals_only_the_fill() -> None:
    batch = [report("a", "accepted"), fill("a"), report("a", "filled"), report("b", "accepted"), None]
    assert _superseded_reports(batch) == {0, 2}


def test_a_filled_report_is_kept_when_its_fill_is_not_before_it_in_the_list() -> None:
    """Only the fill itself finishes the order for a reader: without it in the list (another batch, or another
    owner's fill), the `filled` report is what says so."""
    assert _superseded_reports([report("a", "filled"), fill("a")]) == set()
    assert _superseded_reports([fill("b"), report("a", "filled")]) == set()
    other_owner = fill("a").model_copy(update={"fence": 1})
    assert _superseded_reports([other_owner, report("a", "filled", fence=2)]) == set()


def test_a_final_report_is_never_superseded_and_other_orders_are_left_alone() -> None:
    batch = [report("a", "canceled"), report("a", "filled"), report("b", "accepted"), report("c", "accepted")]
    assert _superseded_reports(batch) == set()


def test_a_refused_second_intent_supersedes_nothing() -> None:
    refused = report("a", "rejected", event_id="a.rejected.0123456789", reason="duplicate_client_order_id")
    assert _superseded_reports([report("a", "accepted"), refused]) == set()


def test_a_report_from_another_simulator_owner_supersedes_nothing() -> None:
    """A newer owner's report may be voided or may bring an owner entry: each owner's reports stand alone."""
    assert _superseded_reports([report("a", "accepted", fence=1), report("a", "filled", fence=2)]) == set()
    assert _superseded_reports([report("a", "accepted", fence=2), report("a", "filled", fence=2)]) == {0}
