"""Two authorities on one journal (a misconfiguration: run exactly one per account) cannot fork the account:
the journal's expected-sequence check refuses the one whose view is behind, which answers
`authority_unavailable`, folds the journal again, and then decides on the truth."""

from __future__ import annotations

from collections.abc import Awaitable
from decimal import Decimal

import nats

from authority.service import Authority
from bus.embedded import EmbeddedNats
from bus.journal import ensure_journal
from schemas.account import OrderCommand
from tests.authority.test_authority_processes import fold
from tests.conftest import stream_count
from tools.risk import RiskLimits

LIMITS = RiskLimits(max_position=Decimal(10))


def buy(coid: str, quantity: int = 8) -> OrderCommand:
    return OrderCommand(
        kind="place", symbol="CNF", side="buy", quantity=Decimal(quantity), order_type="limit",
        limit_price=Decimal(10), time_in_force="GTC", client_order_id=coid, origin="mcp",
    )  # fmt: skip


async def test_the_authority_whose_view_is_behind_is_refused_by_the_journal_and_then_decides_on_the_truth(
    nats_server: EmbeddedNats, js
) -> None:
    await ensure_journal(js)
    first = Authority(js._nc, js, key=b"k", limits=LIMITS)
    second = Authority(js._nc, js, key=b"k", limits=LIMITS)
    await first.start()
    await second.start()  # both folded the same journal: the configured limits
    try:
        assert (await first.handle(buy("a-1"))).ok
        refused = await _answer(second, buy("b-1"))
        assert refused == "authority_unavailable", "its view missed a-1: the journal refused the append"
        async with second._lock:
            await second._recover()
        after = await second.handle(buy("b-2"))
        assert (after.ok, after.code) == (False, "max_position"), "8 resting + 8 more is past 10"
        journal = await fold(js)
        assert set(journal.intents) == {"a-1"} and set(journal.denials) == {"b-2"}
        assert await stream_count(js, "DECISIONS", "decisions.order_intent") == 1
        assert second.account.seq == journal.seq and set(second.account.intents) == {"a-1"}
    finally:
        await first.stop()
        await second.stop()


async def test_a_refused_authority_recovers_even_while_the_operator_bucket_cannot_be_read(
    nats_server: EmbeddedNats, js
) -> None:
    """Housekeeping's steps fail on their own: the operator's record is read in the same pass as the journal
    recovery, and a KV outage must not keep the authority answering `authority_unavailable` for good."""
    await ensure_journal(js)
    first = Authority(js._nc, js, key=b"k", limits=LIMITS)
    second = Authority(js._nc, js, key=b"k", limits=LIMITS)
    await first.start()
    await second.start()
    try:
        assert (await first.handle(buy("a-1"))).ok
        assert await _answer(second, buy("b-1")) == "authority_unavailable"
        # the operator's bucket cannot be read: its handle is on a connection that has gone (as a KV request times
        # out while the journal's stream still answers)
        gone = await nats.connect(nats_server.url)
        second._control_kv = await gone.jetstream().key_value("RISK_CONTROL")
        await gone.close()
        assert await _raises(second._read_control()), "the operator's record cannot be read"
        await second._housekeeping_pass()
        assert not second._broken, "recovered although the operator's record could not be read"
        after = await second.handle(buy("b-2"))
        assert (after.ok, after.code) == (False, "max_position"), "decided on the journal: a-1 is resting"
        assert second.account.seq == (await fold(js)).seq
    finally:
        await first.stop()
        await second.stop()


async def _raises(awaitable: Awaitable[object]) -> bool:
    try:
        await awaitable
    except Exception:
        return True
    return False


async def _answer(authority: Authority, command: OrderCommand) -> str:
    try:
        return (await authority.handle(command)).code
    except Exception as exc:  # what _on_request turns into an authority_unavailable reply
        return "authority_unavailable" if type(exc).__name__ == "Unavailable" else repr(exc)


async def test_nothing_about_an_order_reaches_the_simulator_before_the_journal_has_it(
    nats_server: EmbeddedNats, js
) -> None:
    from observability import metrics

    await ensure_journal(js)
    authority = Authority(js._nc, js, key=b"k", limits=LIMITS)
    await authority.start()
    try:
        assert (await authority.handle(buy("x-1", 2))).ok  # no simulator runs: it stays `submitted`
        republished = metrics.authority_republished_total._value.get()
        authority._in_flight.add("x-1")  # as while its journal entry is unacknowledged
        again = await authority.handle(buy("x-1", 2))
        assert (again.ok, again.code) == (True, "duplicate")
        assert metrics.authority_republished_total._value.get() == republished, "not re-sent before the journal"
        authority._in_flight.discard("x-1")
        await authority.handle(buy("x-1", 2))
        assert metrics.authority_republished_total._value.get() == republished + 1, "re-sent once it is durable"
    finally:
        await authority.stop()
