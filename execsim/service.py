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
`Nats-Msg-Id` = its event / fill id. A batch of messages is acked only after all its events are
stored. If a publish fails (NATS down), the engine is rebuilt from the streams before going on,
exactly as after a kill -9 and restart.

Restart (`rebuild`): the engine is restored from what the streams already hold.
- EXECUTIONS: every report and fill the simulator published — each order's status, filled
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
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import structlog
import uvicorn
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from starlette.applications import Starlette

from bus.accounts import load_accounts
from bus.authority_key import HEADER as SIGNATURE_HEADER
from bus.authority_key import load_or_create_key, verify
from bus.embedded import default_data_dir
from bus.jetstream import Follower, connect, consume_batches, ensure_streams, publish
from bus.ownership import Ownership, default_member
from execsim.engine import Engine, Event
from execsim.settings import ExecSimSettings
from observability import metrics
from observability.consumer_lag import watch_consumer_lag
from observability.heap import freeze_startup_heap
from observability.http import OpsServer, ops_routes
from schemas.common import DEFAULT_ACCOUNT, scoped_id
from schemas.market import Bar
from schemas.orders import TERMINAL_STATUSES, Fill, OrderCancel, OrderEvent, OrderIntent, superseded_reports
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.account import order_key
from tools.clock import Clock, LiveClock

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


FINISHED_KEPT = 1_000  # finished orders the engine keeps whole; older ones are only remembered as used ids


class FinishedOrders:
    """Keeps the simulator's memory flat: once more than FINISHED_KEPT orders have finished, the oldest leaves the
    engine (`Engine.forget`) and only its id's 64-bit key stays (`tools.account.order_key`), so an intent for it
    that comes again (a redelivery, a re-published intent) is still known as handled and fills nothing."""

    def __init__(self) -> None:
        self._finished: deque[str] = deque()
        self._held: set[str] = set()
        self._forgotten: set[int] = set()

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
                self._forgotten.add(order_key(old))

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
                metrics.exec_sim_open_orders.set(self.engine.open_count())
            if msgs:
                metrics.exec_sim_simulation_duration_seconds.observe((time.perf_counter() - started) / len(msgs))

    def _check_owner(self) -> None:
        """Refuse a batch once the account's lease is gone: not acked, it goes to the new owner."""
        if self.still_owner is not None and self.account is not None and not self.still_owner(self.account):
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
        """Publish the events in order, but not a report that a later one of the same order replaces in full
        (`schemas.orders.superseded_reports`: a market order filled at once gets no `accepted` report)."""
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
                        msg_id=scoped_id(event.account, event.fill_id),
                        correlation_id=event.correlation_id,
                    )
                )
            else:
                pending.append(
                    publish(
                        self.js,
                        Subject.EXECUTION_REPORT,
                        event,
                        msg_id=scoped_id(event.account, event.event_id),
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
        log.warning("engine rebuilt from the streams after a failed publish", orders=known)


# ---------------------------------------------------------------------- restart: rebuild from the streams

ZERO = Decimal(0)


@dataclass
class _Record:
    status: str = "accepted"
    filled: Decimal = ZERO
    fills: int = 0
    notional: Decimal = ZERO
    triggered: bool = False
    terminal: bool = False
    fill_ids: set[str] = field(default_factory=set)


async def _read(js: JetStreamContext, stream: str, subject: str, handler) -> None:  # type: ignore[no-untyped-def]
    follower = Follower(js, stream=stream, subject=subject, handler=handler)
    await follower.start()
    await follower.caught_up.wait()
    await follower.stop()


async def rebuild(
    js: JetStreamContext,
    engine: Engine,
    market_durable: str | None = None,
    *,
    authority_key: bytes | None = None,
    account: str | None = None,
    finished: FinishedOrders | None = None,
) -> int:
    """Restore `engine` from the streams; returns the number of orders it knows again. With `authority_key`,
    intents and cancels not signed with it are skipped (the service ignored them too). With `account`, only
    that account's orders and market data."""
    records: dict[str, _Record] = {}

    def mine(payload: Fill | OrderEvent | OrderIntent | OrderCancel) -> bool:
        return account is None or payload.account == account

    def on_execution(msg: Msg) -> None:
        if msg.subject == Subject.EXECUTION_FILL.value:
            fill = Fill.model_validate_json(msg.data)
            if not mine(fill):
                return
            rec = records.setdefault(fill.client_order_id, _Record())
            if fill.fill_id in rec.fill_ids:
                return
            rec.fill_ids.add(fill.fill_id)
            rec.fills += 1
            rec.filled += fill.quantity
            rec.notional += fill.quantity * fill.price
        elif msg.subject == Subject.EXECUTION_REPORT.value:
            event = OrderEvent.model_validate_json(msg.data)
            if not mine(event):
                return
            rec = records.setdefault(event.client_order_id, _Record())
            if event.reason == "duplicate_client_order_id" and event.event_id.count(".") > 1:
                return  # a refused second intent with this id: says nothing about the first
            if event.status == "triggered":
                rec.triggered = True
            if not rec.terminal:
                rec.status = event.status
                rec.terminal = event.status in TERMINAL_STATUSES

    await _read(js, "EXECUTIONS", "executions.>", on_execution)

    intents: dict[str, OrderIntent] = {}
    cancels: list[str] = []

    def on_decision(msg: Msg) -> None:
        if msg.subject in COMMANDS and not signed(authority_key, msg):
            return
        if msg.subject == Subject.ORDER_INTENT.value:
            intent = OrderIntent.model_validate_json(msg.data)
            if mine(intent):
                intents.setdefault(intent.client_order_id, intent)
        elif msg.subject == Subject.ORDER_CANCEL.value:
            cancel = OrderCancel.model_validate_json(msg.data)
            if mine(cancel):
                cancels.append(cancel.client_order_id)

    await _read(js, "DECISIONS", "decisions.>", on_decision)
    restored = 0
    for coid, intent in intents.items():
        rec = records.get(coid)
        if rec is None:
            continue
        status = rec.status
        if not rec.terminal and rec.filled >= intent.quantity:
            status = "filled"
        elif not rec.terminal and rec.fills:
            status = "partially_filled"
        engine.restore(
            intent,
            status=status,
            filled=rec.filled,
            fills=rec.fills,
            notional=rec.notional,
            triggered=rec.triggered,
        )
        restored += 1
        if finished is not None and rec.terminal:
            finished.finish(coid, engine)  # in the order the intents came: the oldest finished leave first
    for coid in cancels:
        if coid not in intents:
            engine.cancel(coid)

    if market_durable is not None:
        floor = await _ack_floor(js, "SIGNALS", market_durable)

        def on_signal(msg: Msg) -> None:
            if msg.metadata.sequence.stream <= floor:
                signal = NormalizedSignal.model_validate_json(msg.data)
                if account is None or account in signal.accounts:
                    engine.restore_market(Bar.from_signal(signal))

        if floor > 0:
            await _read(js, "SIGNALS", Subject.SIGNALS_NORMALIZED.value, on_signal)
    return restored


async def _ack_floor(js: JetStreamContext, stream: str, durable: str) -> int:
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


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
    while not stop.is_set():
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
        known = await rebuild(js, engine, market_durable, authority_key=key, account=account, finished=finished)
        service = ExecSimService(
            js, engine, market_durable, authority_key=key, account=account, still_owner=owner.holds
        )
        service.finished = finished
        services[account] = service
        watch_consumer_lag(js, [("DECISIONS", orders_durable), ("SIGNALS", market_durable)])
        log.info("execsim owns the account", account=account, fence=fence, orders_rebuilt=known)
        return [
            *start_consumers(js, service, stop, batch=settings.batch, account=account),
            asyncio.create_task(_tick_loop(service, stop), name=f"tick-{account}"),
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
    asyncio.run(run_execsim(settings))  # uvicorn turns SIGINT / SIGTERM into a clean shutdown
