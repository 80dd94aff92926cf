"""The simulator service: the engine between NATS streams.

Inputs, each from a durable pull consumer with explicit acks:
- `decisions.order_intent` and `decisions.order_cancel` (durable `execsim-orders`, stream order), from
  the order authority only: each carries the header `Trading-Authority-Signature` (`bus.authority_key`),
  an HMAC of its exact bytes. A command without it, or with a wrong one, is ignored (no engine call, no
  event), logged, counted in `exec_sim_unsigned_commands_total{subject}` and acked;
- `signals.normalized` (durable `execsim-market`): each signal is a bar for its symbol (a
  price-only signal is a bar with open = high = low = close) that works resting orders. A bar not
  newer than the symbol's last one is refused (`Engine.refusal`), counted in
  `exec_sim_bars_refused_total{reason}`.
A clock tick works orders whose latency has passed and expires DAY orders.

Outputs: lifecycle events on `executions.report`, fills on `executions.fill`, each with
`Nats-Msg-Id` = its event / fill id and the owner's fence (`execution_msg_id`). A batch of messages is acked
only after all its events are stored, and only if the lease still holds then (else it goes to the new owner).
If a publish fails (NATS down), the engine is rebuilt from the streams before going on, exactly as after a
kill -9 and restart.

Taking an account (`simulate`): the new owner first stores a `SimulatorOwner` on `executions.owner` with its fence
(`announce_owner`), then rebuilds. A stale owner's report or fill stored after that marker is void (an older fence
than an earlier event of the account), and one stored before it is in the rebuild: none falls between the rebuild's
read and the new owner's first event, where it would be valid but unknown to the new owner, which would then work
the order again (a second, different partial fill under the same fill id).

Restart (`rebuild`): the engine is restored from what the streams already hold.
- EXECUTIONS: every report and fill the simulator published, but those the authority voids (stamped with an older
  simulator fence than an earlier event of the account: `execsim.fold`) — each order's status, filled
  quantity, fill count and whether its stop triggered.
- DECISIONS: the intents (an intent with no report yet was never acked: it will be redelivered)
  and the cancels of orders not seen yet; unsigned ones are skipped, as they were when consumed.
- SIGNALS, up to the market consumer's ack floor: the last bar per symbol (later ones will be
  redelivered and worked).
Open orders come back open with what is left of them, so nothing is lost and nothing fills twice:
a fill id is `<client order id>.f<n>` and `n` continues from the fills already published. The
engine gets plain values through `Engine.restore` / `restore_market`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
import uvicorn
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from starlette.applications import Starlette

from bus.accounts import load_accounts
from bus.authority_key import HEADER as SIGNATURE_HEADER
from bus.authority_key import load_or_create_key, verify
from bus.embedded import default_data_dir
from bus.jetstream import Follower, ack_floor, connect, consume_batches, ensure_streams, publish, read_range
from bus.ownership import Ownership, default_member
from bus.snapshot import ENCODING, StaleSnapshot, get_parts, open_bucket, put_parts, store_periodically
from execsim.engine import Engine, Event
from execsim.fold import FINISHED_KEPT, StreamFold
from execsim.settings import ExecSimSettings
from observability import metrics, runtime
from observability.consumer_lag import watch_consumer_lag
from observability.heap import freeze_startup_heap
from observability.http import OpsServer, ops_routes
from schemas.common import DEFAULT_ACCOUNT, scoped_id
from schemas.market import Bar
from schemas.orders import TERMINAL_STATUSES, Fill, OrderCancel, OrderIntent, SimulatorOwner, superseded_reports
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.account import order_key
from tools.clock import Clock, LiveClock
from tools.ledger import Ledger

log = structlog.get_logger("execsim")
_stdlog = logging.getLogger(__name__)

DURABLE = "execsim-orders"
MARKET_DURABLE = "execsim-market"
TICK_SECONDS = 0.05
COMMANDS = frozenset({Subject.ORDER_INTENT.value, Subject.ORDER_CANCEL.value})

__all__ = [
    "DURABLE",
    "MARKET_DURABLE",
    "ExecSimService",
    "ExecSimSettings",
    "main",
    "rebuild",
    "run_execsim",
    "start_consumers",
]


def signed(key: bytes | None, msg: Msg) -> bool:
    """Whether an order command carries the authority's signature of its bytes (always, with no key)."""
    if key is None:
        return True
    return verify(key, msg.data, (msg.headers or {}).get(SIGNATURE_HEADER))


def _client_order_id(data: bytes) -> str | None:
    """The client order id of an untrusted command body, for the log; None when it has none."""
    try:
        coid = json.loads(data).get("client_order_id")
    except (ValueError, AttributeError):
        return None
    return coid if isinstance(coid, str) else None


def execution_msg_id(account: str, event_id: str, fence: int | None) -> str:
    """The `Nats-Msg-Id` of a report or fill: its id, and the fence of the simulator owner that made it. The same
    owner publishing again (after a failed publish) is deduped; a newer owner's event is stored even where an older
    owner published one with the same id after losing the lease (void, so it must not swallow the valid one)."""
    return scoped_id(account, event_id if fence is None else f"{event_id}~{fence}")


async def announce_owner(js: JetStreamContext, account: str, fence: int, member: str, clock: Clock) -> int:
    """Store that `member` took `account` with `fence` (`executions.owner`), before it reads the streams to rebuild:
    from here on a stale owner's events are void, and the ones before are in the rebuild. Returns the marker's
    sequence. Raises if it is not stored (the caller gives the lease back rather than simulate unannounced)."""
    marker = SimulatorOwner(account=account, fence=fence, member=member, ts=clock.now())
    msg_id = execution_msg_id(account, "owner", fence)
    ack = await publish(js, Subject.EXECUTION_OWNER, marker, msg_id=msg_id, correlation_id=f"execsim-owner-{fence}")
    return int(ack.seq)


class FinishedOrders:
    """Keeps the simulator's memory flat: once more than FINISHED_KEPT orders have finished, the oldest leaves the
    engine (`Engine.forget`) and only its id's 64-bit key stays (`tools.account.order_key`), so an intent for it
    that comes again (a redelivery, a re-published intent) is still known as handled and fills nothing."""

    def __init__(self) -> None:
        self._finished: deque[str] = deque()
        self._held: set[str] = set()
        self._forgotten = Ledger()  # 16 bytes an order that left (a set of ints: ~60)

    def handled(self, coid: str) -> bool:
        return bool(self._forgotten) and order_key(coid) in self._forgotten

    def finish(self, coid: str, engine: Engine) -> None:
        """`coid` reported a final status: keep it whole for now, and let the oldest finished one go."""
        if coid in self._held:
            return
        self._held.add(coid)
        self._finished.append(coid)
        while len(self._finished) > FINISHED_KEPT:
            old = self._finished.popleft()
            self._held.discard(old)
            if engine.forget(old):
                self._forgotten[order_key(old)] = 0

    def forget_keys(self, keys: Ledger) -> None:
        """Orders that finished and left before (a rebuild's fold): still handled, never kept whole."""
        if not self._forgotten:
            self._forgotten = keys.copy()
            return
        for key, _ in keys.items():
            self._forgotten[key] = 0

    def __len__(self) -> int:
        return len(self._forgotten)


class NotOwner(RuntimeError):
    """The account moved to another simulator: this one must not act on it any more."""


class ExecSimService:
    """Feeds messages to the engine and publishes what it answers. One batch at a time.

    `authority_key`: order intents and cancels must be signed with it (`bus.authority_key`); None accepts
    every command, only for tests that build the service in-process. `run_execsim` always passes a key."""

    def __init__(
        self,
        js: JetStreamContext,
        engine: Engine,
        market_durable: str | None = None,
        *,
        authority_key: bytes | None = None,
        account: str | None = None,
        still_owner: Callable[[str], bool] | None = None,
    ) -> None:
        self.still_owner = still_owner
        self.js = js
        self.engine = engine
        self.market_durable = market_durable
        self.authority_key = authority_key
        self.account = account  # None: every account's orders (one simulator for all, tests and the backtest)
        self._lock = asyncio.Lock()
        self._broken = False
        self.working = asyncio.Event()  # set when a batch leaves orders open: the tick loop wakes for them
        self._refused_symbols: set[str] = set()
        self.finished = FinishedOrders()

    async def handle(self, msg: Msg) -> None:
        """One message (the per-message handler `bus.jetstream.consume` expects)."""
        await self.handle_batch([msg])

    async def handle_batch(self, msgs: list[Msg]) -> None:
        """Apply the messages to the engine in order and store every resulting event. Raises if
        any publish failed; the caller must not ack then (they will be redelivered)."""
        async with self._lock:
            self._check_owner()
            if self._broken:
                await self._rebuild()
            started = time.perf_counter()
            events: list[Event] = []
            for msg in msgs:
                events.extend(self._apply(msg))
            try:
                await self._publish(events)
            except Exception:
                self._broken = True  # the engine moved on but the streams did not: rebuild before more
                raise
            finally:
                open_orders = self.engine.open_count()
                metrics.exec_sim_open_orders.set(open_orders)
                if open_orders:
                    self.working.set()
            if events and not self._owner_now():
                # the lease lapsed while the events were stored (a slow publish, a cluster electing a leader): they
                # may be void (stamped with an older fence than the new owner's), so the batch must not be acked,
                # or the new owner would never get these intents and bars. Not acked, they go to it.
                self._broken = True
                raise NotOwner(f"this simulator lost account {self.account} while publishing; the batch goes back")
            if msgs:
                metrics.exec_sim_simulation_duration_seconds.observe((time.perf_counter() - started) / len(msgs))

    def _owner_now(self) -> bool:
        return self.still_owner is None or self.account is None or self.still_owner(self.account)

    def _check_owner(self) -> None:
        """Refuse a batch once the account's lease is gone: not acked, it goes to the new owner."""
        if not self._owner_now():
            raise NotOwner(f"this simulator no longer holds account {self.account}")

    async def tick(self) -> None:
        async with self._lock:
            self._check_owner()
            if self._broken:
                await self._rebuild()
            events = self.engine.tick()
            metrics.exec_sim_open_orders.set(self.engine.open_count())
            if events:
                try:
                    await self._publish(events)
                except Exception:
                    self._broken = True
                    raise

    def _apply(self, msg: Msg) -> list[Event]:
        subject = msg.subject
        if subject in COMMANDS and not signed(self.authority_key, msg):
            metrics.exec_sim_unsigned_commands_total.labels(subject).inc()
            log.warning(
                "command without a valid authority signature ignored",
                subject=subject,
                client_order_id=_client_order_id(msg.data),
                had_signature=bool((msg.headers or {}).get(SIGNATURE_HEADER)),
            )
            return []
        if subject == Subject.ORDER_INTENT.value:
            intent = OrderIntent.model_validate_json(msg.data)
            if self.account is not None and intent.account != self.account:
                return []  # another account's: its own simulator owner takes it
            if self.finished.handled(intent.client_order_id):
                log.info("order already handled (finished long ago)", client_order_id=intent.client_order_id)
                return []
            events = self.engine.submit(intent)
            if events:
                metrics.exec_sim_orders_received_total.labels(intent.order_type).inc()
            else:
                log.info("order already handled", client_order_id=intent.client_order_id)
            return events
        if subject == Subject.ORDER_CANCEL.value:
            cancel = OrderCancel.model_validate_json(msg.data)
            if self.account is not None and cancel.account != self.account:
                return []
            return self.engine.cancel(cancel.client_order_id, cancel.reason or f"canceled_by_{cancel.origin}")
        if subject == Subject.SIGNALS_NORMALIZED.value:
            signal = NormalizedSignal.model_validate_json(msg.data)
            if self.account is not None and self.account not in signal.accounts:
                return []  # market data of accounts this one is not fed by
            bar = Bar.from_signal(signal)
            refused = self.engine.refusal(bar)
            events = self.engine.on_bar(bar)  # a refused bar: no events, nothing changes
            if refused is not None:
                metrics.exec_sim_bars_refused_total.labels(refused).inc()
                if refused == "older_than_latest" and bar.symbol not in self._refused_symbols:
                    self._refused_symbols.add(bar.symbol)
                    log.info(
                        "bar older than the symbol's latest refused (logged once per symbol)",
                        symbol=bar.symbol,
                        bar_ts=bar.ts.isoformat(),
                        signal_id=signal.signal_id,
                        correlation_id=signal.correlation_id,
                    )
            return events
        return []

    async def _publish(self, events: list[Event]) -> None:
        """Publish the events in order, but not a report that a later one of the same order replaces in full, nor the
        `filled` report after the fill that completed the order (`schemas.orders.superseded_reports`: a market order
        filled at once gets its fill alone)."""
        pending = []
        superseded = superseded_reports(events)
        for i, event in enumerate(events):
            if i in superseded:
                continue
            if isinstance(event, Fill):
                pending.append(
                    publish(
                        self.js,
                        Subject.EXECUTION_FILL,
                        event,
                        msg_id=execution_msg_id(event.account, event.fill_id, event.fence),
                        correlation_id=event.correlation_id,
                    )
                )
            else:
                pending.append(
                    publish(
                        self.js,
                        Subject.EXECUTION_REPORT,
                        event,
                        msg_id=execution_msg_id(event.account, event.event_id, event.fence),
                        correlation_id=event.correlation_id,
                    )
                )
        if not pending:
            return
        results = await asyncio.gather(*pending, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} of {len(results)} publishes failed: {failures[0]!r}")
        for i, event in enumerate(events):
            if not isinstance(event, Fill) and event.status in TERMINAL_STATUSES:
                order = self.engine.order(event.client_order_id)
                if order is not None and not order.is_open:  # (a refused second intent leaves the first open)
                    self.finished.finish(event.client_order_id, self.engine)
            if isinstance(event, Fill):
                metrics.exec_sim_fills_generated_total.labels(event.side).inc()
                log.info(
                    "fill",
                    correlation_id=event.correlation_id,
                    client_order_id=event.client_order_id,
                    symbol=event.symbol,
                    side=event.side,
                    quantity=str(event.quantity),
                    price=str(event.price),
                )
            elif i not in superseded:
                metrics.exec_sim_reports_total.labels(event.status).inc()

    async def _rebuild(self) -> None:
        started = time.perf_counter()
        fresh = Engine(self.engine.clock, self.engine.config, fence=self.engine.fence)
        finished = FinishedOrders()
        known = await rebuild(
            self.js,
            fresh,
            self.market_durable,
            authority_key=self.authority_key,
            account=self.account,
            finished=finished,
        )
        self.engine, self.finished = fresh, finished
        self._broken = False
        metrics.exec_sim_rebuilds_total.inc()
        metrics.exec_sim_rebuild_seconds.observe(time.perf_counter() - started)
        log.warning("engine rebuilt from the streams after a failed publish", orders=known)


# ---------------------------------------------------------------------- restart: rebuild from the streams

SNAPSHOT_BUCKET = "EXECSIM_SNAPSHOT"
SNAPSHOT_EVERY_S = 30.0  # the owner stores its fold this often
ABSORB_EVERY_S = 5.0  # and folds the streams' tails into it this often
LIVE_BATCH = 16  # messages folded at a time beside the live engine (~1-2 ms: a fill waits at most that long for it)
SNAPSHOT_STREAMS = ("EXECUTIONS", "DECISIONS", "SIGNALS")


async def _read_after(js: JetStreamContext, stream: str, subject: str, after: int, handler, batch: int) -> None:  # type: ignore[no-untyped-def]
    """Every message of `subject` after sequence `after`, to the stream's end as it is now."""
    follower = Follower(js, stream=stream, subject=subject, handler=handler, after=after, batch=batch)
    await follower.start()
    await follower.caught_up.wait()
    await follower.stop()


def _key_id(key: bytes | None) -> str:
    """Which authority key a fold checked signatures with (a digest prefix; the key itself is never stored)."""
    return "" if key is None else hashlib.sha256(b"execsim-fold:" + key).hexdigest()[:16]


async def _stream_identity(js: JetStreamContext) -> dict[str, list[Any]]:
    """Each stream the fold reads: its creation time and last sequence (a reset re-creates them)."""
    out: dict[str, list[Any]] = {}
    for name in SNAPSHOT_STREAMS:
        info = await js.stream_info(name)
        out[name] = [None if info.created is None else info.created.isoformat(), info.state.last_seq]
    return out


async def absorb_tails(
    js: JetStreamContext,
    fold: StreamFold,
    market_durable: str | None,
    authority_key: bytes | None,
    batch: int = 512,
) -> None:
    """Fold what the streams hold after `fold`'s sequences: EXECUTIONS, then DECISIONS (so every execution read has
    its intent read), then SIGNALS up to the market consumer's ack floor (later bars will be delivered again).
    `batch`: messages folded between two turns of the event loop (small while the simulator is live)."""

    def on_execution(msg: Msg) -> None:
        fold.absorb_execution(msg.metadata.sequence.stream, msg.subject, msg.data)

    def on_decision(msg: Msg) -> None:
        signed_command = msg.subject in COMMANDS and signed(authority_key, msg)
        fold.absorb_decision(msg.metadata.sequence.stream, msg.subject if signed_command else None, msg.data)

    await _read_after(js, "EXECUTIONS", "executions.>", fold.exec_seq, on_execution, batch)
    await _read_after(js, "DECISIONS", "decisions.>", fold.decision_seq, on_decision, batch)
    fold.settle()
    if market_durable is not None:
        floor = await ack_floor(js, "SIGNALS", market_durable)

        def on_signal(msg: Msg) -> None:
            signal = NormalizedSignal.model_validate_json(msg.data)
            mine = fold.account is None or fold.account in signal.accounts
            fold.absorb_bar(msg.metadata.sequence.stream, Bar.from_signal(signal) if mine else None)

        await read_range(
            js,
            stream="SIGNALS",
            subject=Subject.SIGNALS_NORMALIZED.value,
            first=fold.signal_seq + 1,
            last=floor,
            handler=on_signal,
            batch=batch,
        )


async def read_fold(
    js: JetStreamContext, account: str, market_durable: str | None, authority_key: bytes | None
) -> StreamFold | None:
    """The account's stored fold, if it is still one of these streams (not reset since, not ahead of them), made with
    this authority key, and not past the market consumer's ack floor; else None (logged): fold from the start."""
    try:
        kv = await open_bucket(js, bucket=SNAPSHOT_BUCKET)
        stored = None if kv is None else await get_parts(kv, account)
        if stored is None:
            log.info("no simulator snapshot: the streams are folded from the start", account=account)
            return None
        head, blob = stored
        if head.get("encoding") != ENCODING or head.get("key") != _key_id(authority_key):
            raise StaleSnapshot("another encoding or another authority key")
        fold = await asyncio.to_thread(lambda: StreamFold.from_snapshot(json.loads(zlib.decompress(blob))))
        now = await _stream_identity(js)
        seqs = {"EXECUTIONS": fold.exec_seq, "DECISIONS": fold.decision_seq, "SIGNALS": fold.signal_seq}
        for name, (created, last) in now.items():
            if head["streams"].get(name, [None])[0] != created or seqs[name] > last:
                raise StaleSnapshot(f"stream {name} is not the one the snapshot folded (reset or re-created)")
        if market_durable is not None and fold.signal_seq > await ack_floor(js, "SIGNALS", market_durable):
            raise StaleSnapshot("the market consumer's ack floor is behind the snapshot")
        if fold.account != account:
            raise StaleSnapshot(f"the snapshot is of account {fold.account}")
        log.info(
            "simulator restored from its snapshot; folding the streams after it",
            account=account,
            executions=fold.exec_seq,
            decisions=fold.decision_seq,
            signals=fold.signal_seq,
            orders=len(fold.intents),
            forgotten=len(fold.forgotten),
            size=len(blob),
        )
        return fold
    except Exception as exc:  # stale, unreadable, another format: all alike
        log.warning("simulator snapshot not used; folding the streams from the start", account=account, error=repr(exc))
        return None


async def write_fold(js: JetStreamContext, fold: StreamFold, authority_key: bytes | None) -> int:
    """Store `fold` as its account's snapshot; returns its compressed size. Raises on failure (the caller logs)."""
    assert fold.account is not None
    kv = await open_bucket(js, create=True, bucket=SNAPSHOT_BUCKET)
    assert kv is not None
    streams = await _stream_identity(js)
    blob = await asyncio.to_thread(
        lambda: zlib.compress(json.dumps(fold.to_snapshot(), separators=(",", ":")).encode(), 1)
    )
    head = {"encoding": ENCODING, "key": _key_id(authority_key), "streams": streams}
    await put_parts(kv, fold.account, blob, head)
    return len(blob)


async def rebuild(
    js: JetStreamContext,
    engine: Engine,
    market_durable: str | None = None,
    *,
    authority_key: bytes | None = None,
    account: str | None = None,
    finished: FinishedOrders | None = None,
    fold: StreamFold | None = None,
) -> int:
    """Restore `engine` from the streams; returns the number of orders it knows again. With `authority_key`,
    intents and cancels not signed with it are skipped (the service ignored them too). With `account`, only
    that account's orders and market data, starting from its stored fold (`read_fold`) when there is one, so only
    the streams' tails are read; `fold` (a fresh one by default) is the state folded, left absorbed to the streams'
    ends for the caller to store."""
    if fold is None:
        fold = (account and await read_fold(js, account, market_durable, authority_key)) or StreamFold(account)
    await absorb_tails(js, fold, market_durable, authority_key)
    restored, done, forgotten = fold.restore(engine)
    if finished is not None:
        for coid in done:
            finished.finish(coid, engine)
        finished.forget_keys(forgotten)
    return restored


async def take_over(
    js: JetStreamContext,
    engine: Engine,
    account: str,
    member: str,
    market_durable: str | None,
    authority_key: bytes | None,
    finished: FinishedOrders,
) -> tuple[StreamFold, int]:
    """What a simulator does when it takes `account` with `engine.fence`: announce it (`announce_owner`), then restore
    `engine` from the stored fold and the streams' tails (`rebuild`), which hold the marker. Returns the fold (left
    absorbed to the streams' ends, for the snapshot loop) and how many orders came back."""
    assert engine.fence is not None
    await announce_owner(js, account, engine.fence, member, engine.clock)
    fold = await read_fold(js, account, market_durable, authority_key) or StreamFold(account)
    known = await rebuild(
        js, engine, market_durable, authority_key=authority_key, account=account, finished=finished, fold=fold
    )
    return fold, known


async def _snapshot_loop(
    js: JetStreamContext,
    fold: StreamFold,
    market_durable: str,
    authority_key: bytes | None,
    stop: asyncio.Event,
    every: float = SNAPSHOT_EVERY_S,
) -> None:
    """While this simulator owns the account: fold the streams' tails into `fold` every ABSORB_EVERY_S (so each read
    is short and holds little at once) and store it every `every` s, so the next owner (a restart, a takeover) reads
    only what came after. The first store is right away: the rebuild just folded everything, maybe a long history."""

    async def step(due: bool) -> bool:
        started = time.perf_counter()
        await absorb_tails(js, fold, market_durable, authority_key, batch=LIVE_BATCH)
        if not due:
            return False
        size = await write_fold(js, fold, authority_key)
        metrics.exec_sim_snapshot_seconds.observe(time.perf_counter() - started)
        _stdlog.debug("simulator snapshot of %s stored (%d bytes)", fold.account, size)
        return True

    await store_periodically(stop, step, every, ABSORB_EVERY_S, f"simulator snapshot of account {fold.account}")


def durables(account: str | None) -> tuple[str, str]:
    """The simulator's two durable consumer names for `account` (the default account keeps the names it had)."""
    if account is None or account == DEFAULT_ACCOUNT:
        return DURABLE, MARKET_DURABLE
    return f"{DURABLE}-{account}", f"{MARKET_DURABLE}-{account}"


def start_consumers(
    js: JetStreamContext,
    service: ExecSimService,
    stop: asyncio.Event,
    batch: int = 128,
    account: str | None = None,
) -> list[asyncio.Task[None]]:
    """The simulator's two durable consumers, feeding `service`: order intents and cancels (DECISIONS), and
    the market data it fills against (SIGNALS). They run until `stop` is set."""
    orders, market = durables(account)
    consumers = [
        ("orders", "DECISIONS", orders, [Subject.ORDER_INTENT.value, Subject.ORDER_CANCEL.value]),
        ("market", "SIGNALS", market, [Subject.SIGNALS_NORMALIZED.value]),
    ]
    return [
        asyncio.create_task(
            consume_batches(
                js,
                stream=stream,
                durable=durable,
                subjects=subjects,
                handler=service.handle_batch,
                stop=stop,
                batch=batch,
            ),
            name=f"{name}-{account or 'all'}",
        )
        for name, stream, durable, subjects in consumers
    ]


async def _tick_loop(service: ExecSimService, stop: asyncio.Event) -> None:
    """Tick the engine every TICK_SECONDS while it has open orders. With none, the loop sleeps until a batch leaves
    one open (`service.working`) instead of waking 20 times a second for nothing: an idle simulator's CPU."""
    while not stop.is_set():
        if not service.engine.open_count():
            service.working.clear()  # no await since the count: a batch that opens an order sets it after this
            await runtime.wait_any(stop, service.working)
            continue
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_SECONDS)
        if service.engine.open_count():
            try:
                await service.tick()
            except Exception as exc:
                _stdlog.warning("tick failed (%r); the engine will be rebuilt", exc)


async def run_execsim(settings: ExecSimSettings, clock: Clock | None = None) -> None:
    """The simulator process: one pool member that simulates every account it holds the lease of."""
    data_dir = settings.data_dir or default_data_dir()
    accounts = load_accounts(data_dir, settings.accounts_file).ids
    nc = await connect(settings.nats_url, "execsim", role="execsim", data_dir=data_dir)
    js = nc.jetstream()
    await ensure_streams(js)
    freeze_startup_heap()
    key = load_or_create_key(data_dir)
    services: dict[str, ExecSimService] = {}

    async def simulate(account: str, fence: int, stop: asyncio.Event, owner: Ownership) -> list[asyncio.Task[None]]:
        engine = Engine(clock or LiveClock(), settings.engine_config(), fence=fence)
        orders_durable, market_durable = durables(account)
        finished = FinishedOrders()
        started = time.perf_counter()
        fold, known = await take_over(js, engine, account, owner.member, market_durable, key, finished)
        metrics.exec_sim_rebuild_seconds.observe(time.perf_counter() - started)
        every = settings.snapshot_every_seconds
        snapshots: list[asyncio.Task[None]] = []
        if every > 0:
            loop = _snapshot_loop(js, fold, market_durable, key, stop, every)
            snapshots.append(asyncio.create_task(loop, name=f"snapshot-{account}"))
        service = ExecSimService(
            js, engine, market_durable, authority_key=key, account=account, still_owner=lambda a: owner.holds(a, fence)
        )
        service.finished = finished
        services[account] = service
        watch_consumer_lag(js, [("DECISIONS", orders_durable), ("SIGNALS", market_durable)])
        log.info("execsim owns the account", account=account, fence=fence, orders_rebuilt=known)
        return [
            *start_consumers(js, service, stop, batch=settings.batch, account=account),
            asyncio.create_task(_tick_loop(service, stop), name=f"tick-{account}"),
            *snapshots,
        ]

    def released(account: str) -> None:
        services.pop(account, None)

    pool = Ownership(
        js,
        role="execsim",
        member=settings.member or default_member("execsim"),
        accounts=accounts,
        start=simulate,
        on_released=released,
        ttl_s=settings.lease_ttl_seconds,
    )

    async def ready() -> dict[str, bool]:
        return {"nats": nc.is_connected, "pool": pool.running}

    app = Starlette(routes=ops_routes(ready))
    server = OpsServer(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, lifespan="off"))
    await pool.start()
    log.info("execsim ready", accounts=accounts, member=pool.member, nats=settings.nats_url)
    try:
        await server.serve()
    finally:
        await pool.stop()
        await nc.close()


def main(settings: ExecSimSettings) -> None:
    runtime.run(run_execsim(settings))  # uvicorn turns SIGINT / SIGTERM into a clean shutdown
