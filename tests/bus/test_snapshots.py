"""Snapshots of the account projection on a real nats-server: the authority writes them, readers start from them and
fold only the journal after them, and a snapshot of another journal (reset, re-created) or a damaged one is never
used: the reader folds from the start."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

import authority.service as service
import bus.snapshot as snapshot
from authority.service import Authority
from bus.account_view import AppState
from bus.embedded import EmbeddedNats
from bus.journal import JournalFollower, ensure_journal, journal_config, read_journal
from bus.snapshot import BUCKET, read_snapshot, write_snapshot
from schemas.account import AccountEvent, Mark, OrderCommand, journal_stream, journal_subject
from schemas.orders import Fill, OrderEvent, OrderIntent
from tests.conftest import wait_for
from tools.account import Account
from tools.risk import RiskLimits

D = Decimal
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def order_entries(i: int) -> list[AccountEvent]:
    """A filled market order: a mark, the admission, the fill and the filled report."""
    ts = T0 + timedelta(seconds=i)
    coid = f"o-{i}"
    side = "buy" if i % 2 else "sell"
    intent = OrderIntent(
        client_order_id=coid, symbol="CNF", side=side, quantity=D(2), reference_price=D(100), origin="bridge",
        created_at=ts, correlation_id=coid,
    )  # fmt: skip
    fill = Fill(
        fill_id=f"{coid}.f", client_order_id=coid, symbol="CNF", side=side, quantity=D(2), price=D(100) + i,
        fee=D("0.01"), ts=ts, correlation_id=coid,
    )  # fmt: skip
    filled = OrderEvent(
        event_id=f"{coid}.filled", client_order_id=coid, symbol="CNF", side=side, status="filled", quantity=D(2),
        filled_quantity=D(2), ts=ts, correlation_id=coid,
    )  # fmt: skip
    return [
        AccountEvent(kind="mark", ts=ts, mark=Mark(symbol="CNF", price=D(100) + i, ts=ts)),
        AccountEvent(kind="admitted", ts=ts, intent=intent),
        AccountEvent(kind="fill", ts=ts, fill=fill),
        AccountEvent(kind="report", ts=ts, report=filled),
    ]


async def append_orders(js, start: int, stop: int) -> None:  # type: ignore[no-untyped-def]
    await ensure_journal(js)
    for i in range(start, stop):
        for event in order_entries(i):
            await js.publish(journal_subject(), event.model_dump_json().encode())


async def fold_after(js, account: Account) -> int:  # type: ignore[no-untyped-def]
    """Fold the journal after `account.seq` into it; returns how many entries that took."""
    applied = []

    def apply(seq: int, event: AccountEvent) -> None:
        applied.append(seq)
        account.apply(event, seq)

    follower = JournalFollower(js, apply, "paper", after=account.seq)
    await follower.start()
    await asyncio.wait_for(follower.caught_up.wait(), 30)
    await follower.stop()
    return len(applied)


async def test_a_reader_starts_from_the_snapshot_and_folds_only_the_entries_after_it(
    nats_server: EmbeddedNats, js
) -> None:
    assert await read_snapshot(js, "paper") is None, "no bucket yet: no snapshot"
    await append_orders(js, 0, 10)
    written = Account()
    await fold_after(js, written)
    await write_snapshot(js, "paper", 40, written.to_snapshot())
    await append_orders(js, 10, 13)

    restored = await read_snapshot(js, "paper")
    assert restored is not None
    seq, account = restored
    assert seq == account.seq == 40
    assert await fold_after(js, account) == 12
    whole = Account()
    assert await fold_after(js, whole) == 52
    assert account.to_snapshot() == whole.to_snapshot()
    assert account.portfolio.equity() == whole.portfolio.equity() and account.orders == whole.orders


async def test_a_snapshot_bigger_than_a_part_is_stored_in_parts_and_a_smaller_one_leaves_none_behind(
    nats_server: EmbeddedNats, js, monkeypatch: pytest.MonkeyPatch
) -> None:
    await append_orders(js, 0, 30)
    account = Account()
    await fold_after(js, account)
    monkeypatch.setattr(snapshot, "PART_BYTES", 512)
    await write_snapshot(js, "paper", account.seq, account.to_snapshot())
    kv = await js.key_value(BUCKET)
    head = json.loads((await kv.get("paper")).value)
    assert head["parts"] > 2 and head["seq"] == 120
    restored = await read_snapshot(js, "paper")
    assert restored is not None and restored[1].to_snapshot() == account.to_snapshot()

    monkeypatch.setattr(snapshot, "PART_BYTES", 1 << 20)
    await write_snapshot(js, "paper", account.seq, account.to_snapshot())
    assert sorted(await kv.keys()) == ["paper", "paper.0"]
    assert await read_snapshot(js, "paper") is not None


async def test_a_snapshot_of_a_journal_that_was_reset_is_not_used(nats_server: EmbeddedNats, js) -> None:
    await append_orders(js, 0, 5)
    account = Account()
    await fold_after(js, account)
    await write_snapshot(js, "paper", account.seq, account.to_snapshot())
    assert await read_snapshot(js, "paper") is not None

    await js.delete_stream(journal_stream())  # what `trading-mcp reset` does to the journal (the bucket aside)
    await js.add_stream(journal_config())
    assert await read_snapshot(js, "paper") is None, "the journal is shorter than the snapshot"
    await append_orders(js, 100, 106)  # as long as before, and longer: another journal all the same
    assert await read_snapshot(js, "paper") is None


@pytest.mark.parametrize("damage", ["head", "part", "format", "body"])
async def test_a_damaged_snapshot_is_not_used(nats_server: EmbeddedNats, js, damage: str) -> None:
    await append_orders(js, 0, 5)
    account = Account()
    await fold_after(js, account)
    await write_snapshot(js, "paper", account.seq, account.to_snapshot())
    kv = await js.key_value(BUCKET)
    head = json.loads((await kv.get("paper")).value)
    if damage == "head":
        await kv.put("paper", b"{not json")
    elif damage == "part":
        await kv.put("paper.0", b"garbage")
    elif damage == "format":
        await kv.put("paper", json.dumps({**head, "format": 2}).encode())
    else:  # a body of another version, with a head that matches it
        data = {**account.to_snapshot(), "version": 99}
        await write_snapshot(js, "paper", account.seq, data)
    assert await read_snapshot(js, "paper") is None


async def test_the_authority_snapshots_every_n_durable_entries_and_at_stop_and_every_reader_starts_from_it(
    nats_server: EmbeddedNats, js, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "SNAPSHOT_EVERY", 4)
    monkeypatch.setattr(service, "SNAPSHOT_MIN_INTERVAL_S", 0.0)
    await ensure_journal(js)
    authority = Authority(js._nc, js, key=b"k", limits=RiskLimits(max_position=D(1000)))
    await authority.start()
    for i in range(7):
        command = OrderCommand(
            kind="place", symbol="CNF", side="buy", quantity=D(1), order_type="limit", limit_price=D(10),
            time_in_force="GTC", client_order_id=f"b-{i}", origin="mcp",
        )  # fmt: skip
        assert (await authority.handle(command)).ok

    async def head_seq() -> int:
        try:
            return int(json.loads((await (await js.key_value(BUCKET)).get("paper")).value)["seq"])
        except Exception:
            return 0

    await wait_for(lambda: _at_least(head_seq(), 4), what="a snapshot every 4 entries")
    await authority.stop()
    final = authority.account.seq
    assert await head_seq() == final == 8, "at stop: the control entry and seven admissions"

    whole = Account()
    await fold_after(js, whole)
    again = Authority(js._nc, js, key=b"k", limits=RiskLimits(max_position=D(1000)))
    await again.start()
    try:
        assert again._snapshot_seq == final, "it started from the snapshot"
        assert again.account.to_snapshot() == whole.to_snapshot()
        assert (await again.handle(command)).duplicate, "a restored projection still knows every order"
    finally:
        await again.stop()

    view = AppState(js._nc, js)
    await view.start()
    try:
        assert view.account.orders == whole.orders and len(view.account.open_orders()) == 7
        assert view.account.seq == whole.seq
    finally:
        await view.stop()


async def _at_least(value: asyncio.Future[int] | object, n: int) -> bool:
    return int(await value) >= n  # type: ignore[misc]


async def test_read_journal_since_a_time_gives_the_entries_stored_from_then_on(nats_server: EmbeddedNats, js) -> None:
    """The authority re-publishes a window of denials from the journal when it keeps fewer whole: the entries
    stored at or after a time, in order (JetStream's own store time, not the events' ts)."""
    await append_orders(js, 0, 3)
    middle = datetime.now(UTC)  # after the first three orders' acks: they were stored before it
    await append_orders(js, 3, 5)
    later = await read_journal(js, "paper", since=middle)
    assert [seq for seq, _ in later] == list(range(13, 21))
    assert [e.kind for _, e in later][:4] == ["mark", "admitted", "fill", "report"]
    assert len(await read_journal(js, "paper")) == 20
    assert await read_journal(js, "paper", since=datetime.now(UTC) + timedelta(minutes=1)) == []


async def test_a_forked_snapshot_is_the_account_at_the_fork_whatever_the_parent_does_after() -> None:
    account = Account(account_id="paper")
    seq = 0
    for i in range(300):
        for event in order_entries(i):
            seq += 1
            account.apply(event, seq)
    expected = snapshot._encode(account.to_snapshot())
    forked = snapshot.ForkedSnapshot(account)
    for i in range(300, 400):  # the parent folds on while the child encodes
        for event in order_entries(i):
            seq += 1
            account.apply(event, seq)
    blob = await forked.blob()
    assert forked.seq == 1200 and account.seq == 1600
    assert blob == expected
    restored = snapshot._decode(blob, None)
    assert restored.seq == 1200 and restored.admitted_total == 300


async def test_a_forked_snapshot_whose_child_fails_raises_and_leaves_no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    account = Account(account_id="paper")

    def broken(self: Account) -> dict[str, object]:
        raise RuntimeError("cannot encode")

    monkeypatch.setattr(Account, "to_snapshot", broken)  # the child inherits the patch with the image
    forked = snapshot.ForkedSnapshot(account)
    with pytest.raises(RuntimeError, match="exited with status 1"):
        await forked.blob()
    with pytest.raises(ChildProcessError):
        os.waitpid(forked._pid, os.WNOHANG)  # reaped: the child is gone, not a zombie
