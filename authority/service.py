"""The account authority: the only component that admits orders for an account.

It owns the account's live projection (`tools.account.Account`) and decides one thing at a time,
under one lock:
- order requests (`orders.request.<account>`, request/reply, queue group `authority`): check, place
  or cancel, from every source — MCP tools in any process, the bridge, the agent, the operator;
- the simulator's reports and fills (durable `authority-exec` on EXECUTIONS);
- market marks (durable `authority-market` on SIGNALS): a symbol's price at its bar's own time;
- the operator's signed control record (KV `RISK_CONTROL`).

Each decision is folded into the projection exactly as every reader folds it and appended to the
account journal (stream ACCOUNT) with an expected-sequence check, in the same order. Appends are
pipelined (a group commit): the lock covers only the in-memory decision and the send, and nobody is
answered, nor is any consequence acted on, before the journal has acknowledged the entry. Then an
admitted order is published, signed, on `decisions.order_intent`; a denial on
`decisions.risk_denied`; a cancel on `decisions.order_cancel` — in journal order, by one worker.
If an append fails (another writer moved the journal, NATS went away), the projection is ahead of
the journal: the authority answers `authority_unavailable` until it has folded the journal again.
A crash between the journal and a publish is repaired by re-publishing what the journal says was
admitted (or cancelled) and the simulator has not acknowledged: the publish's message id and the
simulator's own id check make that a no-op when it did get through.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
import uvicorn
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import ValidationError
from starlette.applications import Starlette

from authority.control import TOKEN_FILE, bucket, load_or_create_token, read_signed
from authority.settings import AuthoritySettings
from bus import authority_key
from bus.jetstream import connect, consume_batches, ensure_streams, log_if_failed, publish_bytes
from bus.journal import JournalFollower, ensure_journal, read_journal, stage_append
from bus.ownership import Ownership, default_member
from bus.snapshot import ForkedSnapshot, read_snapshot, write_snapshot
from observability import metrics, runtime
from observability.heap import freeze_startup_heap
from observability.http import OpsServer, ops_routes
from schemas.account import AccountEvent, Control, Mark, OrderCommand, OrderReply, Owner, request_subject
from schemas.common import ACCOUNT_HEADER, DEFAULT_ACCOUNT, scoped_id
from schemas.market import Bar
from schemas.orders import Fill, OrderEvent, SimulatorOwner, fence_step, superseded_reports
from schemas.risk import RiskLimits, TradingState
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.account import Account
from tools.clock import Clock, LiveClock
from tools.portfolio import Portfolio
from tools.risk import RiskGate
from tools.risk_control import ControlRefused, SignedControl, patched_limits, verify

log = structlog.get_logger("authority")

EXEC_DURABLE = "authority-exec"
MARKET_DURABLE = "authority-market"
QUEUE = "authority"
REPUBLISH_AFTER = timedelta(seconds=3)
HOUSEKEEPING_S = 0.5
ACK_WAIT_S = 5.0  # a batch is folded in well under a second: after a crash, its redelivery need not wait long
DENIALS_REPUBLISHED_WITHIN = timedelta(minutes=9)  # inside DECISIONS' 10-minute duplicate window
JOURNAL_ACK_S = 5.0  # an append not acknowledged by then counts as failed (the fold is rebuilt)
SNAPSHOT_EVERY = 2_000  # journal entries between two snapshots of the projection (bus.snapshot), at least
SNAPSHOT_MIN_INTERVAL_S = 10.0  # and time. The projection's memory is bounded (tools.account), so a snapshot costs
# about the same at any age: ~0.2 s of CPU at 100k orders of history (copy, JSON, zlib). Before it was bounded,
# snapshotting every 2,000 entries at 100 signals/s slowed decisions from p50 21 ms to 714 ms.
SNAPSHOT_STOP_S = 10.0


def durables(account: str) -> tuple[str, str]:
    """The authority's two durable consumer names for `account` (the default account keeps the names it had)."""
    if account == DEFAULT_ACCOUNT:
        return EXEC_DURABLE, MARKET_DURABLE
    return f"{EXEC_DURABLE}-{account}", f"{MARKET_DURABLE}-{account}"


class Unavailable(RuntimeError):
    """The authority cannot decide right now (its journal append failed; it is folding the journal again)."""


@dataclass
class _Staged:
    """One journal entry in flight: its sequence, the journal's acknowledgement, what to publish once it is
    durable, and `done` for whoever waits (a requester, a consumer batch)."""

    seq: int
    ack: asyncio.Future[Any]
    effect: tuple[Subject, bytes, str, str, bool] | None
    done: asyncio.Future[int]
    order: str | None = None  # the client order id an admission or cancel is about


class Authority:
    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        *,
        key: bytes,
        limits: RiskLimits,
        account: str = DEFAULT_ACCOUNT,
        starting_cash: Decimal = Decimal(100_000),
        operator_token: str = "",
        max_signal_age_s: float = 5.0,
        clock: Clock | None = None,
        fence: int | None = None,
        member: str | None = None,
        still_owner: Callable[[str], bool] | None = None,
    ) -> None:
        self.nc, self.js, self.key = nc, js, key
        self.account_id = account
        self.fence, self.member, self.still_owner = fence, member, still_owner
        self.exec_durable, self.market_durable = durables(account)
        self.configured = limits
        self.operator_token = operator_token
        self.max_signal_age_s = max_signal_age_s
        self.clock = clock or LiveClock()
        # the fold starts where every reader's starts; the configured limits enter it as a journaled control event
        self.account = self._fresh()
        self.starting_cash = starting_cash
        self._lock = asyncio.Lock()
        self._tail = 0  # the journal sequence of the last entry sent (acknowledged or in flight)
        self._broken = False
        self._effects: asyncio.Queue[_Staged] = asyncio.Queue()
        self._in_flight: set[str] = set()  # orders whose admission or cancel the journal has not acknowledged
        self._republished: dict[str, datetime] = {}
        self._refused_logged = ""
        self._sub: Any = None
        self._stopping = False
        self._snapshot_started = -math.inf  # time.monotonic() of the last periodic snapshot
        self.ready = asyncio.Event()
        self._durable_seq = 0  # the last journal entry acknowledged (every one before it is too)
        self._snapshot_seq = 0  # the entry of the newest snapshot written or started from
        self._snapshot_task: asyncio.Task[None] | None = None
        self._control_kv: KeyValue | None = None  # the operator's bucket, looked up once (start, else housekeeping)

    # ------------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Fold the journal, put the configured and operator limits in force, answer requests."""
        await ensure_journal(self.js, self.account_id)
        await self._fold_journal()
        self._effects_task = asyncio.create_task(self._effects_worker(), name=f"authority-effects-{self.account_id}")
        self._effects_task.add_done_callback(log_if_failed)
        if self.fence is not None:  # the journal names its new owner before anything else it decides
            async with self._lock:
                owner = await self._stage(
                    AccountEvent(
                        kind="owner",
                        ts=self.clock.now(),
                        owner=Owner(
                            member=self.member or "authority",
                            fence=self.fence,
                            execsim_fence=self.account.execsim_fence,
                        ),
                    ),
                    f"owner-{self.fence}",
                )
            await self._durable([owner])
        signed = await self._read_control()
        async with self._lock:
            staged = await self._apply_control(signed, initial=True)
        if staged is not None:
            await self._durable([staged])
        self._sub = await self.nc.subscribe(request_subject(self.account_id), queue=QUEUE, cb=self._on_request)
        await self._republish_recent_denials()
        self.ready.set()
        log.info(
            "authority ready",
            account=self.account_id,
            journal_seq=self.account.seq,
            open_orders=self.account.open_order_count(),
            trading_state=self.account.gate.state.value,
            fence=self.fence,
        )

    def _fresh(self) -> Account:
        return Account(gate=RiskGate(clock=self.clock), portfolio=Portfolio(), account_id=self.account_id)

    def _check_sound(self) -> None:
        """Refuse while the projection may hold entries the journal refused (until `_recover` folds it again):
        nothing is decided, dropped or acked on it."""
        if self._broken:
            raise Unavailable("the authority is folding its journal again after a failed append")

    def _in_flight_tail(self) -> list[_Staged]:
        """The newest entry still in flight, if any. A message dropped as known (a repeat, final already) waits for
        it before its ack: the entry that made the message known may yet be refused (else a redelivered fill is
        acked while its first append fails, and lost)."""
        last = self._last_staged
        return [last] if last is not None and not last.done.done() else []

    def _check_owner(self) -> None:
        if self.still_owner is not None and not self.still_owner(self.account_id):
            raise Unavailable(f"this authority no longer holds account {self.account_id}")

    def tasks(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """The consumers and housekeeping that run until `stop`."""
        specs = [
            (
                "authority-exec",
                consume_batches(
                    self.js,
                    stream="EXECUTIONS",
                    durable=self.exec_durable,
                    subjects=["executions.>"],
                    handler=self._on_executions,
                    stop=stop,
                    batch=256,
                    ack_wait=ACK_WAIT_S,
                ),
            ),
            (
                "authority-market",
                consume_batches(
                    self.js,
                    stream="SIGNALS",
                    durable=self.market_durable,
                    subjects=[Subject.SIGNALS_NORMALIZED.value],
                    handler=self._on_signals,
                    stop=stop,
                    batch=256,
                    ack_wait=ACK_WAIT_S,
                ),
            ),
            ("authority-housekeeping", self._housekeeping(stop)),
        ]
        out = []
        for name, coro in specs:
            task = asyncio.create_task(coro, name=f"{name}-{self.account_id}")
            task.add_done_callback(log_if_failed)
            out.append(task)
        return out

    async def stop(self) -> None:
        self._stopping = True
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drained(), 3)
        self._effects_task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._snapshot_at_stop(), SNAPSHOT_STOP_S)

    async def _snapshot_at_stop(self) -> None:
        if self._snapshot_task is not None:
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        if self._snapshot_due(every=1):
            await self._write_snapshot(ForkedSnapshot(self.account))

    def _snapshot_due(self, every: int | None = None) -> bool:
        """The projection is exactly the durable journal (nothing in flight, no failed append) and `every` entries
        (SNAPSHOT_EVERY) or more came since the last snapshot."""
        seq = self.account.seq
        every = SNAPSHOT_EVERY if every is None else every
        return (
            not self._broken
            and seq == self._tail == self._durable_seq
            and seq - self._snapshot_seq >= every
            and (self._snapshot_task is None or self._snapshot_task.done())
        )

    def _maybe_snapshot(self) -> None:
        """Snapshot the projection in the background when one is due: a forked child encodes this instant's image
        (`bus.snapshot.ForkedSnapshot`) while decisions go on here."""
        if time.monotonic() - self._snapshot_started < SNAPSHOT_MIN_INTERVAL_S:
            return
        if self._snapshot_due():
            self._snapshot_started = time.monotonic()
            try:
                forked = ForkedSnapshot(self.account)  # now, synchronously: the projection is the durable journal
            except OSError as exc:  # no fork (out of memory or processes): readers fold a little more journal
                log.warning("account snapshot not taken", account=self.account_id, error=repr(exc))
                return
            self._snapshot_task = asyncio.create_task(
                self._write_snapshot(forked), name=f"authority-snapshot-{self.account_id}"
            )

    async def _write_snapshot(self, forked: ForkedSnapshot) -> None:
        started = time.perf_counter()
        try:
            size = await write_snapshot(self.js, self.account_id, forked.seq, forked)
        except Exception as exc:  # never fatal: readers fold a little more journal
            log.warning("account snapshot failed", account=self.account_id, journal_seq=forked.seq, error=repr(exc))
            return
        self._snapshot_seq = max(self._snapshot_seq, forked.seq)
        log.info(
            "account snapshot written",
            account=self.account_id,
            journal_seq=forked.seq,
            bytes=size,
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _drained(self) -> None:
        while not self._effects.empty():
            await asyncio.sleep(0.01)

    async def _fold_journal(self) -> None:
        """Fold every journal entry after the projection's sequence (at start, and after a failed append), a fresh
        projection starting from the newest usable snapshot (bus.snapshot; none: from the first entry)."""
        if self.account.seq == 0:
            restored = await read_snapshot(self.js, self.account_id, self.clock)
            if restored is not None:
                self._snapshot_seq, self.account = restored
        follower = JournalFollower(
            self.js, lambda seq, ev: self.account.apply(ev, seq), self.account_id, self.account.seq
        )
        await follower.start()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 120)
        finally:
            await follower.stop()
        self._tail = self._durable_seq = self.account.seq

    # ------------------------------------------------------------------ the journal

    async def _stage(self, event: AccountEvent, msg_id: str, effect: bool = True) -> _Staged:
        """Send `event` to the journal and fold it (the caller holds the lock). The entry is durable once
        `done` resolves; its consequence (an intent, a denial, a cancel) is published after that."""
        self._check_sound()
        expected = self._tail
        ack = await stage_append(
            self.js,
            self.account_id,
            event,
            msg_id=scoped_id(self.account_id, msg_id),
            expected_seq=expected,
            timeout=JOURNAL_ACK_S,
        )
        self._tail = expected + 1
        self.account.apply(event, self._tail)
        order = _order_of(event)
        staged = _Staged(
            self._tail,
            ack,
            self._effect_of(event) if effect else None,
            asyncio.get_running_loop().create_future(),
            order,
        )
        if order is not None:
            self._in_flight.add(order)  # nothing about it reaches the simulator before the journal has it
        self._last_staged = staged
        self._effects.put_nowait(staged)
        metrics.authority_journal_appends_total.labels(event.kind).inc()
        return staged

    async def _effects_worker(self) -> None:
        """In journal order: wait until each entry is durable, then publish its consequence."""
        while True:
            staged = await self._effects.get()
            started = time.perf_counter()
            try:
                if self._broken and not staged.ack.done():
                    # an entry behind a failed one: it expected the failed one's sequence, so it cannot have been
                    # stored unless the failed one was; do not wait out its timeout (the fold is rebuilt anyway)
                    raise Unavailable("an earlier journal append failed")
                ack = await staged.ack  # completes within JOURNAL_ACK_S of its send (bus.jetstream.Acks)
                if ack.duplicate or ack.seq != staged.seq:
                    raise RuntimeError(
                        f"the journal stored entry {staged.seq} as {ack.seq} (duplicate={ack.duplicate})"
                    )
            except Exception as exc:
                if not self._broken:
                    self._broken = True
                    metrics.authority_journal_conflicts_total.inc()
                    log.warning("journal append failed; folding the journal again", seq=staged.seq, error=repr(exc))
                if not staged.done.done():
                    staged.done.set_exception(Unavailable(f"the journal append failed ({type(exc).__name__})"))
                continue
            metrics.authority_journal_append_seconds.observe(time.perf_counter() - started)
            if staged.order is not None:
                self._in_flight.discard(staged.order)
            self._durable_seq = staged.seq
            if not staged.done.done():  # durable: the requester may have its answer
                staged.done.set_result(staged.seq)
            self._maybe_snapshot()
            if staged.effect is not None:  # then its consequence, still in journal order
                await self._publish_effect(staged.effect, until_stored=True)

    async def _durable(self, staged: list[_Staged]) -> None:
        """Wait until every entry is in the journal; Unavailable if one failed or none answered in time."""
        try:
            await asyncio.wait_for(asyncio.gather(*(asyncio.shield(s.done) for s in staged)), 2 * JOURNAL_ACK_S)
        except TimeoutError as exc:
            raise Unavailable("the journal did not acknowledge in time") from exc

    async def _recover(self) -> None:
        """After a failed append: fold the whole journal into a fresh projection (holding the lock)."""
        while not self._effects.empty():  # let every entry in flight settle first
            await asyncio.sleep(0.01)
        self.account = self._fresh()
        self._in_flight.clear()
        await self._fold_journal()
        self._broken = False
        log.warning("authority recovered: the projection is the journal again", journal_seq=self.account.seq)

    # ------------------------------------------------------------------ requests

    _requests: set[asyncio.Task[None]] | None = None  # requests being answered (a strong reference to each)
    _last_request: _Staged | None = None  # the newest journal entry a request staged
    _last_staged: _Staged | None = None  # the newest journal entry staged by anyone

    async def _on_request(self, msg: Msg) -> None:
        """Answer each request in its own task. Decisions still happen one at a time in arrival order (the lock
        is FIFO and each task reaches it without yielding first), but a request waiting for the journal's
        acknowledgement no longer holds the next one back: requests are pipelined into the journal too."""
        if self._requests is None:
            self._requests = set()
        task = asyncio.create_task(self._answer(msg), name=f"authority-request-{self.account_id}")
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _answer(self, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            command = OrderCommand.model_validate_json(msg.data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "request"
            reply = OrderReply(
                ok=False,
                code="invalid_order",
                message=f"{where}: {first.get('msg')} (got {first.get('input')!r})",
                trading_state=self.account.gate.state,
            )
            metrics.authority_requests_total.labels("invalid", reply.code).inc()
            await self._respond(msg, reply)
            return
        try:
            reply = await self.handle(command)
        except Exception as exc:
            if not isinstance(exc, Unavailable):
                log.exception("order request failed", client_order_id=command.client_order_id)
            reply = OrderReply(
                ok=False,
                code="authority_unavailable",
                message=f"the authority could not record the decision ({type(exc).__name__}); nothing was placed — "
                "retry with the same client_order_id",
                client_order_id=command.client_order_id,
                trading_state=self.account.gate.state,
            )
        metrics.authority_requests_total.labels(command.kind, reply.code).inc()
        metrics.authority_decision_seconds.observe(time.perf_counter() - started)
        await self._respond(msg, reply)

    async def _respond(self, msg: Msg, reply: OrderReply) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(reply.model_dump_json().encode())

    async def handle(self, command: OrderCommand) -> OrderReply:
        """Decide one command, journal it, fold it, act on it: the one order path. The answer goes out only
        once the decision is durable."""
        staged: _Staged | None = None
        self._check_owner()
        async with self._lock:
            self._check_sound()
            now = self.clock.now()
            decision = self.account.decide(command, now, self.max_signal_age_s)
            event = decision.event
            earlier = self._last_request
            if event is not None:
                staged = self._last_request = await self._stage(
                    event, _msg_id(command, decision.reply.client_order_id, now)
                )
            elif decision.reply.duplicate and decision.reply.code == "duplicate":
                await self._republish_if_unacknowledged(decision.reply.client_order_id, now, force=True)
            coid = decision.reply.client_order_id
            reply = decision.reply.model_copy(
                update={
                    "journal_seq": self.account.seq,
                    "order": self.account.orders.get(coid) if coid else None,
                    "trading_state": self.account.gate.state,
                }
            )
        if staged is None and earlier is not None and not earlier.done.done():
            # an answer without an entry of its own (a duplicate, a check) may speak of an entry still in flight:
            # it waits until the journal has every request decided before it
            await self._durable([earlier])
        if staged is not None:
            await self._durable([staged])
            if event is not None and event.kind == "denied":
                log.info("order denied", client_order_id=coid, reason=reply.code, origin=command.origin)
            elif event is not None:
                what = "order admitted" if event.kind == "admitted" else "cancel sent"
                log.info(what, client_order_id=coid, origin=command.origin)
        return reply

    def _effect_of(self, event: AccountEvent) -> tuple[Subject, bytes, str, str, bool] | None:
        if event.kind == "admitted" and event.intent is not None:
            i = event.intent
            if self.fence is not None and i.fence != self.fence:  # re-published by a newer owner: its fence
                i = i.model_copy(update={"fence": self.fence, "owner": self.member})
            return (
                Subject.ORDER_INTENT,
                i.model_dump_json().encode(),
                scoped_id(i.account, i.client_order_id),
                i.correlation_id,
                True,
            )
        if event.kind == "cancel_requested" and event.cancel is not None:
            c = event.cancel
            return (
                Subject.ORDER_CANCEL,
                c.model_dump_json().encode(),
                scoped_id(c.account, f"cancel-{c.client_order_id}"),
                c.correlation_id,
                True,
            )
        if event.kind == "denied" and event.denied is not None:
            d = event.denied
            return (
                Subject.RISK_DENIED,
                d.model_dump_json().encode(),
                scoped_id(d.account, f"deny-{d.client_order_id}"),
                d.correlation_id,
                False,
            )
        return None

    async def _publish_effect(
        self, effect: tuple[Subject, bytes, str, str, bool], *, until_stored: bool = False
    ) -> None:
        """Publish a journaled decision's consequence (the message id makes a repeat a no-op). `until_stored`: the
        effects worker's own publish retries until the stream has it (a stream without a leader for a few seconds
        must not lose a denial, which nothing else re-publishes); other callers try once."""
        subject, data, msg_id, correlation, signed = effect
        headers = {ACCOUNT_HEADER: self.account_id}
        if signed:
            headers[authority_key.HEADER] = authority_key.sign(self.key, data)
        delay = 0.2
        while True:
            try:
                await publish_bytes(self.js, subject, data, msg_id=msg_id, correlation_id=correlation, headers=headers)
                return
            except Exception as exc:  # journaled already: retried here, or re-published by housekeeping / at start
                log.warning("publish after the journal failed; will re-publish", subject=subject.value, error=repr(exc))
                if not until_stored or self._stopping:
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _republish_recent_denials(self) -> None:
        """At start: the denials journaled within the stream's duplicate window, published again (a crash between
        the journal and the publish would lose them from DECISIONS; the message id drops the ones that got in)."""
        since = self.clock.now() - DENIALS_REPUBLISHED_WITHIN
        kept = list(self.account.denials.values())
        if self.account.denied_total > len(kept) and kept and kept[0].ts >= since:
            # more denials in the window than the account keeps whole: read the window from the journal
            entries = await read_journal(self.js, self.account_id, since=since)
            kept = [e.denied for _, e in entries if e.kind == "denied" and e.denied is not None]
        for denied in [d for d in kept if d.ts >= since]:
            effect = self._effect_of(AccountEvent(kind="denied", ts=denied.ts, denied=denied))
            if effect is not None:
                await self._publish_effect(effect)

    # ------------------------------------------------------------------ executions and marks

    async def _on_executions(self, msgs: list[Msg]) -> None:
        """Reports and fills, journaled in stream order; the batch is acked once every entry is durable. A
        report that a later report of the same order in the same batch supersedes (an `accepted` followed by
        `filled`) is not journaled: the fold keeps only the newest status, so the entry would change nothing. Nor is
        the `filled` report after the fill that completed the order: that fill's entry finished it already."""
        self._check_owner()
        payloads = [_execution(msg) for msg in msgs]
        superseded = superseded_reports(payloads)
        staged: list[_Staged] = []
        for i, payload in enumerate(payloads):  # the lock per message: an order request never waits behind a batch
            if payload is None:
                continue
            async with self._lock:
                self._check_sound()
                events = self._execution_events(payload, superseded=i in superseded)
                if not events and i in superseded:
                    continue
                if not events:  # dropped as known: acked once what made it known is durable
                    staged.extend(self._in_flight_tail())
                for event, msg_id in events:
                    staged.append(await self._stage(event, msg_id))
        await self._durable(staged)

    def _execution_events(
        self, payload: Fill | OrderEvent | SimulatorOwner, superseded: bool = False
    ) -> list[tuple[AccountEvent, str]]:
        """The journal entries one execution message makes: none for another account's, or one from a simulator
        whose lease a newer one took (void: an older fence than an earlier event of the account); an owner entry
        when a newer simulator owner speaks for the first time (its `executions.owner` marker, stored before it
        rebuilds), even in a message that is itself a duplicate or `superseded` (a report a later one in the batch
        replaces): which events are void then depends on EXECUTIONS' order alone, so the simulator's rebuild
        (`execsim.fold`) voids exactly the same ones."""
        if payload.account != self.account_id:
            return []
        now = self.clock.now()
        void, newest = fence_step(payload.fence, self.account.execsim_fence)
        if void:
            metrics.authority_stale_executions_total.inc()
            log.warning(
                "execution from a stale simulator owner voided",
                fence=payload.fence,
                newest=newest,
                client_order_id=getattr(payload, "client_order_id", None),
            )
            return []
        out: list[tuple[AccountEvent, str]] = []
        if newest is not None and newest != self.account.execsim_fence:  # a newer simulator owner speaks first
            owner = Owner(member=self.member or "authority", fence=self.fence or 0, execsim_fence=newest)
            out.append((AccountEvent(kind="owner", ts=now, owner=owner), f"execsim-owner-{newest}"))
        if superseded or isinstance(payload, SimulatorOwner):
            return out
        if isinstance(payload, Fill):
            if self.account.portfolio.knows_fill(payload.fill_id):
                return out
            if not self.account.has_order(payload.client_order_id) and self.account.knows(payload.client_order_id):
                # an order that finished before the newest ones kept whole: a fill of it now can only be a repeat
                # older than the fill ids remembered (a finished order fills no more)
                log.warning("fill of an order finished long ago: a repeat, not journaled", fill_id=payload.fill_id)
                return out
            out.append((AccountEvent(kind="fill", ts=now, fill=payload), f"fill-{payload.fill_id}"))
            return out
        view = self.account.orders.get(payload.client_order_id)
        if view is not None and not view.is_open:
            return out  # final already: terminal is final
        if view is None and self.account.knows(payload.client_order_id):
            return out  # finished long ago (kept only in the ledger)
        # an order this view does not know at all is journaled anyway (the fold ignores it): if the view is
        # behind the journal, the append's sequence check fails and the report comes back after the refold,
        # instead of being acked and lost
        out.append((AccountEvent(kind="report", ts=now, report=payload), f"rep-{payload.event_id}"))
        return out

    async def _on_signals(self, msgs: list[Msg]) -> None:
        """Marks at each bar's own time (never backwards), journaled; acked once durable."""
        self._check_owner()
        staged: list[_Staged] = []
        for msg in msgs:
            signal = NormalizedSignal.model_validate_json(msg.data)
            if self.account_id not in signal.accounts:
                continue  # a signal routed to other accounts: not this account's market
            bar = Bar.from_signal(signal)
            async with self._lock:
                self._check_sound()
                latest = self.account.price_ts.get(bar.symbol)
                if latest is not None and (
                    bar.ts < latest or (bar.ts == latest and self.account.prices.get(bar.symbol) == bar.close)
                ):
                    if bar.ts < latest:
                        metrics.authority_marks_refused_total.inc()
                    staged.extend(self._in_flight_tail())  # known already: acked once what made it known is durable
                    continue
                event = AccountEvent(
                    kind="mark", ts=self.clock.now(), mark=Mark(symbol=bar.symbol, price=bar.close, ts=bar.ts)
                )
                before = self.account.gate.state
                staged.append(await self._stage(event, f"mark-{signal.signal_id}"))
                if self.account.gate.state is not before:
                    log.warning(
                        "trading state changed",
                        state=self.account.gate.state.value,
                        reason=self.account.gate.state_reason,
                    )
        await self._durable(staged)

    # ------------------------------------------------------------------ control and housekeeping

    async def _read_control(self) -> SignedControl | ControlRefused | None:
        """The operator's record from KV (outside the lock), or why it is refused when it is not a record at all."""
        if self._control_kv is None:
            self._control_kv = await bucket(self.js)
        try:
            return await read_signed(self.js, self.account_id, self._control_kv)
        except ControlRefused as refused:
            return refused

    async def _apply_control(
        self, signed: SignedControl | ControlRefused | None, initial: bool = False
    ) -> _Staged | None:
        """Put the configured limits with the operator's newest signed record (`signed`, read from KV by the
        caller before it took the lock) on top in force; returns the staged control entry, if any."""
        state: TradingState | None = None
        reason = ""
        revision = self.account.control_revision
        limits = self.configured
        if signed is not None:
            try:
                if isinstance(signed, ControlRefused):
                    raise signed
                control = verify(signed, self.operator_token)
            except ControlRefused as refused:
                # a forged, foreign or malformed record changes nothing: not even back to the configured limits
                seen = str(refused) if isinstance(signed, ControlRefused) else signed.signature
                if self._refused_logged != seen:
                    log.warning("risk control refused", code=refused.code, error=str(refused))
                    self._refused_logged = seen
                if not initial or self.account.seq:
                    return None
                control = None
            if control is not None:
                try:
                    limits = patched_limits(self.configured, control.limits_patch)
                except ValidationError as exc:
                    log.warning("risk control has an invalid limit patch; ignored", error=str(exc))
                    return None
                if control.revision > self.account.control_revision:
                    state, reason, revision = (
                        control.state,
                        control.reason or f"operator:{control.operator}",
                        control.revision,
                    )
        if not initial and revision == self.account.control_revision and limits == self.account.gate.limits:
            return None
        now = self.clock.now()
        event = self.account.control_event(limits, now, state=state, reason=reason, revision=revision)
        cash_differs = initial and self.starting_cash != self.account.portfolio.starting_cash
        if (event is None and initial and self.account.seq == 0) or cash_differs:  # a new journal states its terms
            event = AccountEvent(
                kind="control",
                ts=now,
                control=Control(
                    limits=limits,
                    state=state,
                    reason=reason,
                    revision=revision,
                    starting_cash=self.starting_cash if cash_differs else None,
                ),
            )
        if event is None:
            return None
        staged = await self._stage(event, f"control-{revision}-{now.timestamp()}")
        log.warning(
            "risk control applied",
            revision=revision,
            state=self.account.gate.state.value,
            reason=self.account.gate.state_reason,
        )
        return staged

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Every half second: fold the journal again if an append failed, apply the operator's record, re-publish
        what the simulator has not acknowledged. Each step fails on its own: a KV outage must not keep a broken
        projection from recovering, nor admitted intents from reaching the simulator."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HOUSEKEEPING_S)
            await self._housekeeping_pass()

    async def _housekeeping_pass(self) -> None:
        try:
            async with self._lock:
                if self._broken:
                    await self._recover()
        except Exception as exc:
            log.warning("authority recovery failed", error=repr(exc))
            return  # nothing below may act on a projection the journal refused
        try:
            signed = await self._read_control()  # outside the lock
            async with self._lock:
                await self._apply_control(signed)
        except Exception as exc:
            log.warning("authority could not apply the operator's record", error=repr(exc))
        try:
            async with self._lock:
                if self._broken:
                    return
                now = self.clock.now()
                orders = self.account.orders  # the working set, not every order ever: housekeeping holds the lock,
                for coid in [  # so its cost must not grow with history
                    c for c in self.account.working if (o := orders.get(c)) is not None and o.status == "submitted"
                ]:
                    await self._republish_if_unacknowledged(coid, now)
                for coid, cancel in list(self.account.cancels.items()):
                    if coid in self._in_flight:
                        continue
                    if now - cancel.created_at >= REPUBLISH_AFTER and self._due(f"c:{coid}", now):
                        effect = self._effect_of(AccountEvent(kind="cancel_requested", ts=now, cancel=cancel))
                        assert effect is not None
                        await self._publish_effect(effect)
        except Exception as exc:
            log.warning("authority could not re-publish unacknowledged orders", error=repr(exc))

    def _due(self, key: str, now: datetime) -> bool:
        last = self._republished.get(key)
        if last is not None and now - last < REPUBLISH_AFTER:
            return False
        self._republished[key] = now
        if len(self._republished) > 10_000:
            self._republished.clear()
        return True

    async def _republish_if_unacknowledged(self, coid: str | None, now: datetime, force: bool = False) -> None:
        if coid is None:
            return
        view = self.account.orders.get(coid)
        intent = self.account.intents.get(coid)
        if view is None or intent is None or view.status != "submitted" or coid in self._in_flight:
            return  # unknown, answered already, or not yet in the journal (its worker publishes it then)
        if not force and now - intent.created_at < REPUBLISH_AFTER:
            return
        if self._due(f"i:{coid}", now) or force:
            metrics.authority_republished_total.inc()
            effect = self._effect_of(AccountEvent(kind="admitted", ts=now, intent=intent))
            assert effect is not None
            await self._publish_effect(effect)


def _execution(msg: Msg) -> Fill | OrderEvent | SimulatorOwner | None:
    if msg.subject == Subject.EXECUTION_FILL.value:
        return Fill.model_validate_json(msg.data)
    if msg.subject == Subject.EXECUTION_REPORT.value:
        return OrderEvent.model_validate_json(msg.data)
    if msg.subject == Subject.EXECUTION_OWNER.value:
        return SimulatorOwner.model_validate_json(msg.data)
    return None


def _order_of(event: AccountEvent) -> str | None:
    if event.kind == "admitted" and event.intent is not None:
        return event.intent.client_order_id
    if event.kind == "cancel_requested" and event.cancel is not None:
        return event.cancel.client_order_id
    return None


def _msg_id(command: OrderCommand, coid: str | None, now: datetime) -> str:
    if command.kind == "cancel":
        return f"cancel-{command.client_order_id}-{now.timestamp()}"
    return f"order-{coid or now.timestamp()}"


# ---------------------------------------------------------------------- the process


async def run_authority(settings: AuthoritySettings, stop: asyncio.Event | None = None) -> None:
    """The authority process: one pool member that runs the authority of every account it holds the lease of."""
    from bus.embedded import ensure_embedded, provision

    stop = stop or asyncio.Event()
    accounts = settings.accounts()
    url = settings.nats_url
    embedded = None
    if url is None:
        embedded = await asyncio.to_thread(ensure_embedded, settings.data_dir)
        url = embedded.url
    with contextlib.suppress(Exception):  # an account added since the bus started gets its journal stream
        await asyncio.wait_for(provision(url, settings.data_dir), 10)  # (needs the admin's credentials)
    nc = await connect(url, "authority", role="authority", data_dir=settings.data_dir)
    freeze_startup_heap()
    js = nc.jetstream()
    await ensure_streams(js)
    token = load_or_create_token(settings.operator_token_file or settings.data_dir / TOKEN_FILE)
    key = authority_key.load_or_create_key(settings.data_dir)
    member = settings.member or default_member("authority")
    authorities: dict[str, Authority] = {}

    async def govern(
        account: str, fence: int, account_stop: asyncio.Event, owner: Ownership
    ) -> list[asyncio.Task[None]]:
        config = accounts.get(account)
        assert config is not None
        authority = Authority(
            nc,
            js,
            key=key,
            limits=settings.limits_for(config),
            account=account,
            starting_cash=config.starting_cash,
            operator_token=token,
            max_signal_age_s=settings.max_signal_age_seconds,
            fence=fence,
            member=member,
            still_owner=lambda a: owner.holds(a, fence),
        )
        await authority.start()
        authorities[account] = authority

        async def until_stopped() -> None:
            await account_stop.wait()
            await authority.stop()

        return [*authority.tasks(account_stop), asyncio.create_task(until_stopped(), name=f"authority-{account}")]

    pool = Ownership(
        js,
        role="authority",
        member=member,
        accounts=accounts.ids,
        start=govern,
        on_released=lambda account: authorities.pop(account, None),
        ttl_s=settings.lease_ttl_seconds,
    )

    async def ready() -> dict[str, bool]:
        return {
            "nats": nc.is_connected,
            "pool": pool.running,
            "journal": all(a.ready.is_set() for a in authorities.values()),
        }

    server = OpsServer(
        uvicorn.Config(
            Starlette(routes=ops_routes(ready)), host=settings.host, port=settings.port, log_config=None, lifespan="off"
        )
    )
    await pool.start()
    log.info("authority pool member ready", member=member, accounts=accounts.ids)
    try:
        await server.serve()
    finally:
        stop.set()
        await pool.stop()
        await nc.close()
        if embedded is not None:
            embedded.stop()


def main(settings: AuthoritySettings) -> None:
    runtime.run(run_authority(settings))  # uvicorn turns SIGINT / SIGTERM into a clean shutdown
