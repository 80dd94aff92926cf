"""Which execution messages the authority journals (`Authority._execution_events`), against a real journal.

A report or fill of an order its view does not know at all is journaled anyway: if the view were behind the
journal, the append's sequence check would fail and the message would come back after the refold, instead of being
acked and lost. One of an order it knows as finished long ago (only in the idempotency ledger) is a repeat and is
dropped, and so is a report of an order already final."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from authority.service import Authority
from bus.embedded import EmbeddedNats
from bus.journal import ensure_journal
from schemas.account import OrderCommand
from schemas.orders import Fill, OrderEvent
from schemas.risk import RiskLimits
from tools import account as account_module

D = Decimal
T0 = datetime(2026, 1, 5, 15, tzinfo=UTC)


def report(coid: str, status: str) -> OrderEvent:
    return OrderEvent(
        event_id=f"{coid}.{status}", client_order_id=coid, symbol="CNF", side="buy", status=status,
        quantity=D(1), filled_quantity=D(1 if status == "filled" else 0), ts=T0, correlation_id=coid,
    )  # fmt: skip


def fill(coid: str) -> Fill:
    return Fill(
        fill_id=f"{coid}.f1", client_order_id=coid, symbol="CNF", side="buy", quantity=D(1), price=D(10),
        fee=D(0), ts=T0, correlation_id=coid,
    )  # fmt: skip


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
