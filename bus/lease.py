"""Account leases in JetStream KV: one owner per account among a pool of members of one role, with fencing tokens.

Bucket `ACCOUNT_LEASES` (file storage, history 1, max_age = the lease TTL, so an entry that is not renewed
disappears on its own). Keys:

- `<role>.<account>`: the lease. Value `{"member", "fence", "acquired_at"}` (acquired_at ISO UTC). Taken with
  `kv.create` (only if absent, also over a delete or purge marker); the revision `create` returned is the
  **fence**. The creating entry is re-written at once with its fence (a reader of an entry whose fence is null
  takes the entry's revision: that entry is the create). Renewed every `renew_s` with
  `kv.update(key, value, last=<revision>)`: the fence stays, the revision moves. Fences of one account only
  grow across owners (they are sequence numbers of one stream, which survive expiry and restarts).
- `<role>.member.<member>`: a member's heartbeat, put every `renew_s`; members alive = heartbeats seen within
  the TTL. A member takes free accounts only while it holds fewer than ceil(accounts / alive members); a member
  holding more than that for `settle_s` releases the extra ones (highest-sorted first: on_lost, then delete
  with `last=`), so a newcomer can take them.

Safety: a renew that fails for good (the key is gone or someone else's) loses the lease at once; a renew that
cannot get through (NATS unreachable, a stalled loop) is fenced by the member itself when no renew has
succeeded for `ttl * 2/3` (counted from the send of the last successful one, so before the server can expire
the key and another member can create it). on_lost is always awaited before the key is deleted.

    python -m bus.lease --nats URL --role authority --member m1 --accounts a,b,c

prints one JSON line per acquire / loss and runs until SIGTERM / SIGINT (for tests and bench/lease_failover.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from observability.runtime import wait_any
from schemas.common import ACCOUNT_PATTERN

log = logging.getLogger(__name__)

BUCKET = "ACCOUNT_LEASES"
DEFAULT_TTL_S = 3.0
DEFAULT_RENEW_S = 1.0
SELF_FENCE_FRACTION = 2 / 3
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # roles and members: one KV key token
_DELETED = ("DEL", "PURGE")

OnAcquired = Callable[[str, int], Awaitable[None]]
OnLost = Callable[[str], Awaitable[None]]
Clock = Callable[[], float]


def lease_key(role: str, account: str) -> str:
    return f"{role}.{account}"


def member_key(role: str, member: str) -> str:
    return f"{role}.member.{member}"


def bucket_config(ttl_s: float = DEFAULT_TTL_S) -> api.KeyValueConfig:
    """The bucket as this module creates it (and as an admin should provision it on a locked bus)."""
    return api.KeyValueConfig(bucket=BUCKET, history=1, ttl=ttl_s, storage=api.StorageType.FILE)


async def lease_bucket(js: JetStreamContext, ttl_s: float = DEFAULT_TTL_S) -> KeyValue:
    """The `ACCOUNT_LEASES` bucket, created with `ttl_s` as its max age if missing."""
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket_config(ttl_s))


@dataclass(frozen=True)
class LeaseRecord:
    """A lease as stored: who holds `account` with which fence, at KV revision `revision`."""

    member: str
    fence: int
    acquired_at: str
    revision: int


def _record(entry: KeyValue.Entry) -> LeaseRecord | None:
    if not entry.value or entry.revision is None:
        return None
    try:
        data = json.loads(entry.value)
        return LeaseRecord(
            member=str(data["member"]),
            fence=int(data.get("fence") or entry.revision),
            acquired_at=str(data.get("acquired_at", "")),
            revision=int(entry.revision),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def read_lease(kv: KeyValue, role: str, account: str) -> LeaseRecord | None:
    """The current lease of `account` for `role`, or None when nobody holds it (absent, deleted or expired)."""
    try:
        entry = await kv.get(lease_key(role, account))
    except KeyNotFoundError:
        return None
    return _record(entry)


@dataclass
class _Lease:
    account: str
    fence: int
    revision: int
    acquired_at: str
    confirmed: float  # clock() when the last successful create / renew was sent
    held: bool = False  # on_acquired has returned
    lost: bool = False

    def value(self, member: str, fence: int | None) -> bytes:
        return json.dumps({"member": member, "fence": fence, "acquired_at": self.acquired_at}).encode()


@dataclass
class _Seen:
    member: str | None  # None: deleted or purged
    at: float


@dataclass
class AccountLeases:
    """Hold a fair share of `accounts` for `member` of the pool `role`; see the module docstring.

    `held` maps each account this member owns (on_acquired returned, not lost since) to its fence.
    """

    js: JetStreamContext
    role: str
    member: str
    accounts: Sequence[str]
    on_acquired: OnAcquired
    on_lost: OnLost
    ttl_s: float = DEFAULT_TTL_S
    renew_s: float = DEFAULT_RENEW_S
    settle_s: float | None = None  # how long an excess must last before it is released (default: renew_s)
    clock: Clock = time.monotonic

    _kv: KeyValue | None = field(default=None, init=False, repr=False)
    _leases: dict[str, _Lease] = field(default_factory=dict, init=False, repr=False)
    _seen_accounts: dict[str, _Seen] = field(default_factory=dict, init=False, repr=False)
    _seen_members: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _last_attempt: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _cooldown: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _excess_since: float | None = field(default=None, init=False, repr=False)
    _last_renew: float = field(default=-math.inf, init=False, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _watcher: Any = field(default=None, init=False, repr=False)
    _watcher_task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _own_seen: float = field(default=-math.inf, init=False, repr=False)  # our heartbeat, as our watcher saw it
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)
    _acquiring: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not re.match(NAME_PATTERN, self.role) or not re.match(NAME_PATTERN, self.member):
            raise ValueError(f"role and member must match {NAME_PATTERN}: {self.role!r}, {self.member!r}")
        bad = [a for a in self.accounts if not re.match(ACCOUNT_PATTERN, a)]
        if bad:
            raise ValueError(f"invalid account ids {bad} (expected {ACCOUNT_PATTERN})")
        if len(set(self.accounts)) != len(self.accounts):
            raise ValueError("duplicate account ids")
        self.accounts = sorted(self.accounts)
        self._check_timings()

    def _check_timings(self) -> None:
        if not 0 < self.renew_s < self.self_fence_s:
            raise ValueError(f"renew_s ({self.renew_s}) must be below ttl_s * 2/3 ({self.self_fence_s:.3f})")

    @property
    def self_fence_s(self) -> float:
        return self.ttl_s * SELF_FENCE_FRACTION

    @property
    def held(self) -> dict[str, int]:
        return {a: lease.fence for a, lease in sorted(self._leases.items()) if lease.held}

    def valid(self, account: str) -> bool:
        """Whether this member may still act for `account` right now: it holds the lease, and a renew sent less than
        ttl * 2/3 ago succeeded (the check the watchdog makes, made at the moment of asking, so a batch that took
        long can ask again before it acks)."""
        lease = self._leases.get(account)
        return lease is not None and not lease.lost and self.clock() - lease.confirmed <= self.self_fence_s

    @property
    def alive_members(self) -> set[str]:
        now = self.clock()
        return {self.member} | {m for m, at in self._seen_members.items() if now - at < self.ttl_s}

    @property
    def share(self) -> int:
        return math.ceil(len(self.accounts) / len(self.alive_members))

    # --- life cycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (or create) the bucket, announce this member, load the pool's view, start the self-fence watchdog."""
        self._kv = await lease_bucket(self.js, self.ttl_s)
        status = await self._kv.status()
        bucket_ttl = status.ttl
        if bucket_ttl and abs(bucket_ttl - self.ttl_s) > 1e-6:
            # the server expires keys after the bucket's max age: fence against that one
            log.warning("lease bucket ttl is %.3f s, not %.3f s: using the bucket's", bucket_ttl, self.ttl_s)
            self.ttl_s = float(bucket_ttl)
            self._check_timings()
        await self._heartbeat()
        await self._start_watcher()
        self._tasks.append(asyncio.create_task(self._watchdog(), name=f"lease-watchdog-{self.member}"))

    async def run(self, stop: asyncio.Event) -> None:
        """Renew, rebalance and acquire until `stop` is set (then call `stop()` to release)."""
        poll = min(0.2, self.renew_s / 4)
        while not stop.is_set() and not self._stopped:
            now = self.clock()
            if now - self._last_renew >= self.renew_s:
                self._last_renew = now
                await self._renew_all()
                await self._heartbeat()
                await self._check_watcher()
            await self._rebalance()
            await self._acquire_free()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_any(stop, self._changed), poll)

    async def stop(self, release: bool = True) -> None:
        """on_lost for every held account; with `release`, delete its lease and this member's heartbeat (else the
        keys are left to expire, as after a crash)."""
        self._stopped = True
        tasks = [*self._tasks, *self._acquiring, *([self._watcher_task] if self._watcher_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._watcher_task = None
        for account in sorted(self._leases):
            lease = self._leases.pop(account)
            lease.lost = True
            if lease.held:
                await self._call_on_lost(account)
            if release:
                await self._delete(lease)
        if release and self._kv is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._kv.delete(member_key(self.role, self.member)), self.renew_s)
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()
            self._watcher = None

    # --- the pool's view, from a watcher on `<role>.>` --------------------------------------------------------

    async def _start_watcher(self) -> None:
        assert self._kv is not None
        self._watcher = await self._kv.watch(f"{self.role}.>")
        self._own_seen = self.clock()
        loaded = asyncio.Event()
        self._watcher_task = asyncio.create_task(self._follow(self._watcher, loaded), name=f"lease-view-{self.member}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loaded.wait(), 5)

    async def _check_watcher(self) -> None:
        """Our own heartbeats must come back through the watcher; if they stop (a consumer lost across a reconnect
        or a server restart), watch again. Acquisition does not depend on the view (creates are retried anyway),
        membership and rebalancing do."""
        if self.clock() - self._own_seen < 2 * self.ttl_s:
            return
        log.warning("lease view of %s is stale: watching again", self.role)
        old, task = self._watcher, self._watcher_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), self.renew_s)
        try:
            await self._start_watcher()
        except Exception as exc:
            log.warning("lease watch failed: %r", exc)

    async def _follow(self, watcher: Any, loaded: asyncio.Event) -> None:
        prefix = f"{self.role}."
        async for entry in watcher:
            if entry is None:
                loaded.set()
                continue
            now = self.clock()
            name = entry.key[len(prefix) :]
            if name.startswith("member."):
                who = name[len("member.") :]
                if who == self.member:
                    self._own_seen = now
                elif entry.operation in _DELETED:
                    self._seen_members.pop(who, None)
                else:
                    self._seen_members[who] = now
            elif name in self._seen_accounts or re.match(ACCOUNT_PATTERN, name):
                record = None if entry.operation in _DELETED else _record(entry)
                self._seen_accounts[name] = _Seen(record.member if record else None, now)
            self._changed.set()

    def _looks_free(self, account: str, now: float) -> bool:
        seen = self._seen_accounts.get(account)
        return seen is None or seen.member is None or now - seen.at >= self.ttl_s

    # --- acquire ----------------------------------------------------------------------------------------------

    async def _acquire_free(self) -> None:
        assert self._kv is not None
        now = self.clock()
        for account in self.accounts:
            if len(self._leases) >= self.share:
                return
            if account in self._leases or self._cooldown.get(account, -math.inf) > now:
                continue
            if not self._looks_free(account, now) and now - self._last_attempt.get(account, -math.inf) < self.renew_s:
                continue
            self._last_attempt[account] = now
            sent = self.clock()
            acquired_at = datetime.now(UTC).isoformat()
            lease = _Lease(account, fence=0, revision=0, acquired_at=acquired_at, confirmed=sent)
            try:
                revision = await asyncio.wait_for(
                    self._kv.create(lease_key(self.role, account), lease.value(self.member, None)), self.renew_s
                )
            except KeyWrongLastSequenceError:
                continue  # someone holds it
            except Exception as exc:  # NATS unreachable or slow: try again on a later pass
                log.debug("lease create %s failed: %r", account, exc)
                continue
            lease.fence = lease.revision = int(revision)
            self._leases[account] = lease
            task = asyncio.create_task(self._took(lease), name=f"lease-acquired-{account}")
            self._acquiring.add(task)
            task.add_done_callback(self._acquiring.discard)

    async def _took(self, lease: _Lease) -> None:
        await self._renew(lease)  # stamp the fence into the value at once
        if lease.lost:
            return
        try:
            await self.on_acquired(lease.account, lease.fence)
        except Exception:
            log.exception("on_acquired(%s, %d) failed: releasing the lease", lease.account, lease.fence)
            if self._leases.get(lease.account) is lease:
                del self._leases[lease.account]
            lease.lost = True
            self._cooldown[lease.account] = self.clock() + self.ttl_s
            await self._delete(lease)
            return
        if self._leases.get(lease.account) is not lease:  # lost while on_acquired ran: stand down now
            await self._call_on_lost(lease.account)
            return
        lease.held = True
        log.info("%s %s acquired %s with fence %d", self.role, self.member, lease.account, lease.fence)

    # --- renew and self-fence ---------------------------------------------------------------------------------

    async def _renew_all(self) -> None:
        now = self.clock()
        for lease in list(self._leases.values()):
            if now - lease.confirmed > self.self_fence_s:
                await self._lose(lease, "no successful renew within ttl * 2/3")
        await asyncio.gather(*(self._renew(lease) for lease in list(self._leases.values())))

    async def _renew(self, lease: _Lease) -> None:
        assert self._kv is not None
        key = lease_key(self.role, lease.account)
        sent = self.clock()
        try:
            revision = await asyncio.wait_for(
                self._kv.update(key, lease.value(self.member, lease.fence), last=lease.revision), self.renew_s
            )
        except KeyWrongLastSequenceError:
            await self._verify(lease)
            return
        except Exception as exc:  # unreachable or slow: the watchdog fences if this lasts
            log.warning("lease renew %s failed: %r", lease.account, exc)
            return
        lease.revision = int(revision)  # even when lost meanwhile: the pending delete then removes this revision
        if lease.lost:
            return
        if self.clock() - lease.confirmed > self.self_fence_s:  # the loop stalled past the deadline
            await self._lose(lease, "renew came back after the self-fence deadline")
            return
        lease.confirmed = sent

    async def _verify(self, lease: _Lease) -> None:
        """A renew saw another revision: still ours (an earlier renew that timed out went through) or lost."""
        assert self._kv is not None
        try:
            current = await asyncio.wait_for(read_lease(self._kv, self.role, lease.account), self.renew_s)
        except Exception as exc:
            log.warning("lease check %s failed: %r", lease.account, exc)
            return
        if current is not None and current.member == self.member and current.fence == lease.fence:
            lease.revision = current.revision
            return
        who = f"{current.member} (fence {current.fence})" if current else "nobody (expired or deleted)"
        await self._lose(lease, f"the key is held by {who}")

    async def _watchdog(self) -> None:
        while True:
            now = self.clock()
            for lease in list(self._leases.values()):
                if now - lease.confirmed > self.self_fence_s:
                    await self._lose(lease, "no successful renew within ttl * 2/3")
            await asyncio.sleep(self._watchdog_sleep(now))

    def _watchdog_sleep(self, now: float) -> float:
        """Until the first self-fence deadline. A renew only moves it later, and a lease taken meanwhile is confirmed
        from its create's send, which waits at most renew_s: its deadline is at least self_fence_s - renew_s ahead,
        never sooner than the longest sleep (which bounds the wait when nothing is held)."""
        longest = min(self.self_fence_s / 4, self.self_fence_s - self.renew_s)
        deadlines = [lease.confirmed + self.self_fence_s - now for lease in self._leases.values()]
        return max(0.005, min([longest, *deadlines]))

    async def _lose(self, lease: _Lease, why: str) -> None:
        if lease.lost or self._leases.get(lease.account) is not lease:
            return
        lease.lost = True
        del self._leases[lease.account]
        log.warning("%s %s lost %s (fence %d): %s", self.role, self.member, lease.account, lease.fence, why)
        if lease.held:
            await self._call_on_lost(lease.account)
        # the key may still be ours: delete it (only at our revision) so that another member need not wait
        task = asyncio.create_task(self._delete(lease))
        self._acquiring.add(task)
        task.add_done_callback(self._acquiring.discard)

    async def _call_on_lost(self, account: str) -> None:
        try:
            await self.on_lost(account)
        except Exception:
            log.exception("on_lost(%s) failed", account)

    async def _delete(self, lease: _Lease) -> None:
        if self._kv is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._kv.delete(lease_key(self.role, lease.account), last=lease.revision), 1.0)

    async def _heartbeat(self) -> None:
        assert self._kv is not None
        value = json.dumps({"member": self.member, "held": len(self._leases), "at": datetime.now(UTC).isoformat()})
        try:
            await asyncio.wait_for(self._kv.put(member_key(self.role, self.member), value.encode()), self.renew_s)
        except Exception as exc:
            log.warning("lease heartbeat failed: %r", exc)

    # --- fair share -------------------------------------------------------------------------------------------

    async def _rebalance(self) -> None:
        now = self.clock()
        extra = len(self._leases) - self.share
        if extra <= 0:
            self._excess_since = None
            return
        if self._excess_since is None:
            self._excess_since = now
        settle = self.renew_s if self.settle_s is None else self.settle_s
        if now - self._excess_since < settle:
            return
        releasable = sorted((a for a, lease in self._leases.items() if lease.held), reverse=True)[:extra]
        for account in releasable:
            lease = self._leases.pop(account)
            lease.lost = True
            log.info("%s %s releases %s to rebalance (share %d)", self.role, self.member, account, self.share)
            await self._call_on_lost(account)
            await self._delete(lease)
            self._cooldown[account] = self.clock() + settle
        self._excess_since = None


# --- CLI: python -m bus.lease ----------------------------------------------------------------------------------


def _emit(event: str, account: str, fence: int | None = None) -> None:
    line: dict[str, object] = {"event": event, "account": account, "t": time.time()}
    if fence is not None:
        line["fence"] = fence
    print(json.dumps(line), flush=True)


async def _main(args: argparse.Namespace) -> None:
    from bus.jetstream import connect

    role = args.role if args.credentials or args.data_dir else None
    nc = await connect(args.nats, f"lease-{args.role}-{args.member}", role=role, data_dir=args.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def acquired(account: str, fence: int) -> None:
        _emit("acquired", account, fence)

    async def lost(account: str) -> None:
        _emit("lost", account)

    leases = AccountLeases(
        nc.jetstream(),
        args.role,
        args.member,
        [a for a in args.accounts.split(",") if a],
        acquired,
        lost,
        ttl_s=args.ttl,
        renew_s=args.renew,
    )
    await leases.start()
    print(json.dumps({"event": "started", "member": args.member, "t": time.time()}), flush=True)
    try:
        await leases.run(stop)
    finally:
        await leases.stop(release=True)
        await nc.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bus.lease", description=__doc__.splitlines()[0])
    parser.add_argument("--nats", required=True, help="NATS URL")
    parser.add_argument("--role", required=True, help="the pool: authority or execsim")
    parser.add_argument("--member", required=True, help="this member's id")
    parser.add_argument("--accounts", required=True, help="comma-separated account ids")
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL_S, help="lease TTL in seconds (the bucket's max age)")
    parser.add_argument("--renew", type=float, default=DEFAULT_RENEW_S, help="renew period in seconds")
    parser.add_argument("--credentials", action="store_true", help="connect with the role's credentials")
    parser.add_argument("--data-dir", type=Path, default=None, help="where nats-auth.json lives (locked bus)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
