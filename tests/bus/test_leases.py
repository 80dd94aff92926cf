"""Account leases in JetStream KV (bus.lease), against a real nats-server: one owner per account at a time, fair
share across members, failover after kill -9, self-fencing, and fences that only grow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from bus.embedded import EmbeddedNats
from bus.jetstream import connect
from bus.lease import AccountLeases, lease_bucket, lease_key, member_key, read_lease
from tests.conftest import wait_for

ROLE = "authority"
EIGHT = [f"acct-{i}" for i in range(8)]
ROOT = Path(__file__).resolve().parents[2]
SLACK_S = 0.4  # scheduling slack on two noisy cores


@dataclass
class Event:
    t: float  # time.time(): comparable between this process and `python -m bus.lease` children
    member: str
    event: str  # acquired | lost
    account: str
    fence: int | None = None


@dataclass
class Journal:
    """Every acquire / lose of every member, in the order the callbacks ran."""

    events: list[Event] = field(default_factory=list)

    def callbacks(self, member: str):  # type: ignore[no-untyped-def]
        async def acquired(account: str, fence: int) -> None:
            self.events.append(Event(time.time(), member, "acquired", account, fence))

        async def lost(account: str) -> None:
            self.events.append(Event(time.time(), member, "lost", account))

        return acquired, lost

    def of(self, member: str, event: str) -> list[Event]:
        return [e for e in self.events if e.member == member and e.event == event]

    def assert_never_two_owners(self) -> None:
        owner: dict[str, str] = {}
        for e in sorted(self.events, key=lambda e: e.t):
            if e.event == "acquired":
                assert e.account not in owner, f"{e.member} acquired {e.account} while {owner.get(e.account)} held it"
                owner[e.account] = e.member
            else:
                assert owner.get(e.account) == e.member, f"{e.member} lost {e.account} it did not hold"
                del owner[e.account]

    def assert_fences_grow(self) -> None:
        last: dict[str, int] = {}
        for e in sorted(self.events, key=lambda e: e.t):
            if e.event == "acquired":
                assert e.fence is not None and e.fence > last.get(e.account, 0), e
                last[e.account] = e.fence


@dataclass
class Member:
    leases: AccountLeases
    nc: NATS
    stop: asyncio.Event
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def pool(server: EmbeddedNats, journal: Journal) -> AsyncIterator:  # type: ignore[type-arg]
    """A factory of in-process members, each on its own connection; all stopped (and released) at the end."""
    members: list[Member] = []

    async def join(name: str, accounts: list[str], **timings: float) -> Member:
        nc = await connect(server.url, f"lease-{name}")
        acquired, lost = journal.callbacks(name)
        leases = AccountLeases(nc.jetstream(), ROLE, name, accounts, acquired, lost, **timings)  # type: ignore[arg-type]
        await leases.start()
        stop = asyncio.Event()
        member = Member(leases, nc, stop, asyncio.create_task(leases.run(stop)))
        members.append(member)
        return member

    try:
        yield join
    finally:
        for m in members:
            m.stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(m.task, 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(m.leases.stop(release=True), 5)
            with contextlib.suppress(Exception):
                await m.nc.close()


async def test_a_lone_member_takes_every_account_with_its_kv_revision_as_fence(nats_server: EmbeddedNats) -> None:
    journal = Journal()
    async with pool(nats_server, journal) as join:
        a = await join("a", EIGHT)
        await wait_for(lambda: len(a.leases.held) == 8, 5, "a to hold all eight accounts")
        nc = await connect(nats_server.url, "reader")
        kv = await lease_bucket(nc.jetstream())
        for account, fence in a.leases.held.items():
            record = await read_lease(kv, ROLE, account)
            assert record is not None and record.member == "a" and record.fence == fence
            assert record.revision >= fence
        assert (await kv.get(member_key(ROLE, "a"))).value
        await nc.close()
    assert len({e.fence for e in journal.of("a", "acquired")}) == 8


async def test_two_members_split_eight_accounts_four_and_four_and_never_both_hold_one(
    nats_server: EmbeddedNats,
) -> None:
    journal = Journal()
    async with pool(nats_server, journal) as join:
        a = await join("a", EIGHT)
        await wait_for(lambda: len(a.leases.held) == 8, 5, "a to hold all eight accounts")
        b = await join("b", EIGHT)
        await wait_for(lambda: len(a.leases.held) == 4 and len(b.leases.held) == 4, 10, "a 4 / b 4")
        assert set(a.leases.held) | set(b.leases.held) == set(EIGHT)
        assert sorted(e.account for e in journal.of("a", "lost")) == sorted(b.leases.held)  # the highest four
        assert sorted(b.leases.held) == EIGHT[4:]
        # settled: nothing moves for a few renew periods
        before = len(journal.events)
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: len(journal.events) != before, 2.5, "a further move")
        assert len(journal.events) == before, journal.events[before:]
    journal.assert_never_two_owners()
    journal.assert_fences_grow()


async def test_a_stopped_member_releases_at_once_and_the_other_takes_its_accounts_without_waiting_for_expiry(
    nats_server: EmbeddedNats,
) -> None:
    journal = Journal()
    async with pool(nats_server, journal) as join:
        a = await join("a", EIGHT, ttl_s=30.0, renew_s=1.0)
        b = await join("b", EIGHT, ttl_s=30.0, renew_s=1.0)
        await wait_for(lambda: len(a.leases.held) == 4 and len(b.leases.held) == 4, 10, "a 4 / b 4")
        t0 = time.monotonic()
        lost_before = len(journal.of("a", "lost"))  # a may have handed one to b while they balanced
        a.stop.set()
        await a.task
        await a.leases.stop(release=True)
        assert a.leases.held == {}
        await wait_for(lambda: len(b.leases.held) == 8, 5, "b to take a's accounts")
        assert time.monotonic() - t0 < 5  # far below the 30 s TTL: deleted, not expired
    assert len(journal.of("a", "lost")) - lost_before == 4
    journal.assert_never_two_owners()
    journal.assert_fences_grow()


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    lines: list[dict[str, object]]
    reader: asyncio.Task[None]


async def spawn_member(server: EmbeddedNats, member: str, accounts: list[str], journal: Journal) -> Child:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bus.lease", "--nats", server.url, "--role", ROLE, "--member", member,
        "--accounts", ",".join(accounts),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    lines: list[dict[str, object]] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = json.loads(raw)
            lines.append(line)
            if line["event"] in ("acquired", "lost"):
                fence = line.get("fence")
                journal.events.append(
                    Event(
                        float(line["t"]),  # type: ignore[arg-type]
                        member,
                        str(line["event"]),
                        str(line["account"]),
                        int(fence) if fence is not None else None,  # type: ignore[call-overload]
                    )
                )

    return Child(proc, lines, asyncio.create_task(read()))


def holding(journal: Journal, member: str) -> set[str]:
    held: set[str] = set()
    for e in journal.events:
        if e.member == member:
            (held.add if e.event == "acquired" else held.discard)(e.account)
    return held


async def test_the_accounts_of_a_member_killed_with_sigkill_are_taken_by_the_survivor_within_ttl_plus_two_seconds(
    nats_server: EmbeddedNats,
) -> None:
    journal = Journal()
    child = await spawn_member(nats_server, "doomed", EIGHT, journal)
    try:
        await wait_for(lambda: len(holding(journal, "doomed")) == 8, 15, "the child to hold all eight accounts")
        async with pool(nats_server, journal) as join:
            survivor = await join("survivor", EIGHT)
            await wait_for(lambda: len(survivor.leases.held) == 4, 10, "the survivor to take its share")
            await wait_for(lambda: len(holding(journal, "doomed")) == 4, 5, "the child to keep its share")
            dead_fences = {e.account: e.fence for e in journal.of("doomed", "acquired")}
            orphaned = holding(journal, "doomed")
            killed_at = time.monotonic()
            child.proc.send_signal(signal.SIGKILL)
            await child.proc.wait()
            ttl = survivor.leases.ttl_s
            await wait_for(lambda: len(survivor.leases.held) == 8, ttl + 2, "the survivor to take every account")
            failover = time.monotonic() - killed_at
            print(f"\nfailover after kill -9: {failover:.2f} s for {len(orphaned)} accounts (ttl {ttl} s)")
            assert failover < ttl + 2
            for account in orphaned:
                fence = survivor.leases.held[account]
                assert dead_fences[account] is not None and fence > dead_fences[account]
    finally:
        if child.proc.returncode is None:
            child.proc.kill()
            await child.proc.wait()
        child.reader.cancel()
    journal.assert_fences_grow()


async def test_a_member_whose_renewals_hang_calls_on_lost_within_two_thirds_of_the_ttl_before_another_takes_over(
    nats_server: EmbeddedNats,
) -> None:
    journal = Journal()
    async with pool(nats_server, journal) as join:
        a = await join("a", ["solo"])
        await wait_for(lambda: "solo" in a.leases.held, 5, "a to hold the account")
        b = await join("b", ["solo"])
        hang = asyncio.Event()

        async def hanging_update(*args: object, **kwargs: object) -> int:
            await hang.wait()
            raise AssertionError("never released")

        assert a.leases._kv is not None
        confirmed = a.leases._leases["solo"].confirmed
        a.leases._kv.update = hanging_update  # type: ignore[method-assign]
        await wait_for(lambda: journal.of("a", "lost"), a.leases.ttl_s, "a to fence itself")
        fenced_after = time.monotonic() - confirmed
        print(
            f"\nself-fenced {fenced_after:.2f} s after the last successful renew (bound {a.leases.self_fence_s:.2f} s)"
        )
        assert fenced_after <= a.leases.self_fence_s + SLACK_S
        assert a.leases.held == {}
        await wait_for(lambda: "solo" in b.leases.held, a.leases.ttl_s + 2, "b to take the account")
        assert journal.of("b", "acquired")[0].t > journal.of("a", "lost")[0].t
    journal.assert_never_two_owners()
    journal.assert_fences_grow()


async def test_a_lease_is_not_valid_past_its_self_fence_deadline_even_before_the_watchdog_runs(
    nats_server: EmbeddedNats,
) -> None:
    """`valid` is what a simulator asks before it acks a batch that took long: it must answer from the clock, not
    from whether the watchdog has had a turn of the event loop since the deadline."""
    journal = Journal()
    async with pool(nats_server, journal) as join:
        a = await join("a", ["solo"])
        await wait_for(lambda: "solo" in a.leases.held, 5, "a to hold the account")
        assert a.leases.valid("solo") and not a.leases.valid("other")
        time.sleep(a.leases.self_fence_s + 0.05)  # a stalled loop: no renew, no watchdog turn
        assert "solo" in a.leases.held, "the watchdog has not run yet"
        assert not a.leases.valid("solo")


async def test_a_member_cut_off_from_nats_calls_on_lost_before_the_lease_expires_for_the_others(
    nats_server: EmbeddedNats,
) -> None:
    journal = Journal()
    async with pool(nats_server, journal) as join:
        a = await join("a", ["solo"])
        await wait_for(lambda: "solo" in a.leases.held, 5, "a to hold the account")
        b = await join("b", ["solo"])
        confirmed = a.leases._leases["solo"].confirmed
        await a.nc.close()
        await wait_for(lambda: journal.of("a", "lost"), a.leases.ttl_s, "a to fence itself")
        assert time.monotonic() - confirmed <= a.leases.self_fence_s + SLACK_S
        await wait_for(lambda: "solo" in b.leases.held, a.leases.ttl_s + 2, "b to take the account")
        assert journal.of("b", "acquired")[0].t > journal.of("a", "lost")[0].t
    journal.assert_never_two_owners()


async def test_a_renew_that_finds_the_key_taken_by_someone_else_loses_the_lease(nats_server: EmbeddedNats) -> None:
    journal = Journal()
    async with pool(nats_server, journal) as join:
        a = await join("a", ["solo"], ttl_s=3.0, renew_s=0.5)
        await wait_for(lambda: "solo" in a.leases.held, 5, "a to hold the account")
        fence = a.leases.held["solo"]
        nc = await connect(nats_server.url, "intruder")
        kv = await lease_bucket(nc.jetstream())
        key = lease_key(ROLE, "solo")
        await kv.delete(key)
        intruder_fence = await kv.create(key, json.dumps({"member": "intruder", "fence": None}).encode())
        await wait_for(lambda: journal.of("a", "lost"), 2, "a to see its renew refused")
        assert a.leases.held == {}
        record = await read_lease(kv, ROLE, "solo")
        assert record is not None and record.member == "intruder" and record.fence == intruder_fence > fence
        # the intruder does not renew: its key expires and a takes the account back with a newer fence
        await wait_for(lambda: "solo" in a.leases.held, a.leases.ttl_s + 2, "a to take the account back")
        assert a.leases.held["solo"] > intruder_fence
        await nc.close()


async def test_a_lease_whose_on_acquired_raises_is_released_and_not_held(nats_server: EmbeddedNats) -> None:
    nc = await connect(nats_server.url, "failing")
    calls: list[str] = []

    async def refuse(account: str, fence: int) -> None:
        calls.append(account)
        raise RuntimeError("cannot load the account")

    lost_calls: list[str] = []

    async def lost(account: str) -> None:
        lost_calls.append(account)

    leases = AccountLeases(nc.jetstream(), ROLE, "a", ["solo"], refuse, lost)
    await leases.start()
    stop = asyncio.Event()
    task = asyncio.create_task(leases.run(stop))
    try:
        await wait_for(lambda: calls, 5, "on_acquired to be called")
        kv = await lease_bucket(nc.jetstream())

        async def released() -> bool:
            return await read_lease(kv, ROLE, "solo") is None

        await wait_for(released, 2, "the lease to be released")
        assert leases.held == {} and lost_calls == []
    finally:
        stop.set()
        await task
        await leases.stop()
        await nc.close()


async def test_kv_create_succeeds_over_an_expired_key_and_over_delete_and_purge_markers(
    nats_server: EmbeddedNats,
) -> None:
    nc = await connect(nats_server.url, "kv")
    kv = await lease_bucket(nc.jetstream(), ttl_s=1.0)
    first = await kv.create("k", b"1")
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.create("k", b"again")
    await kv.delete("k", last=first)
    after_delete = await kv.create("k", b"2")
    await kv.purge("k")
    after_purge = await kv.create("k", b"3")
    written = time.monotonic()

    async def expired() -> bool:
        try:
            await kv.get("k")
        except KeyNotFoundError:
            return True
        return False

    await wait_for(expired, 3, "the key to expire")
    print(f"\nkey gone {time.monotonic() - written:.2f} s after its write (max age 1 s)")
    after_expiry = await kv.create("k", b"4")
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("k", b"stale", last=after_purge)
    assert first < after_delete < after_purge < after_expiry
    await nc.close()


async def test_a_member_whose_view_stops_watches_again_and_still_makes_room_for_a_newcomer(
    nats_server: EmbeddedNats,
) -> None:
    journal = Journal()
    async with pool(nats_server, journal) as join:
        a = await join("a", EIGHT, ttl_s=1.5, renew_s=0.5)
        await wait_for(lambda: len(a.leases.held) == 8, 5, "a to hold all eight accounts")
        stale = a.leases._watcher
        await stale.stop()  # the view goes silent, as after a consumer lost across a reconnect
        await wait_for(lambda: a.leases._watcher is not stale, 4 * a.leases.ttl_s, "a to watch again")
        b = await join("b", EIGHT, ttl_s=1.5, renew_s=0.5)
        await wait_for(lambda: len(a.leases.held) == 4 and len(b.leases.held) == 4, 10, "a 4 / b 4")
    journal.assert_never_two_owners()
    journal.assert_fences_grow()
