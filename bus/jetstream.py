"""Connect, provision the three streams, publish with `Nats-Msg-Id`, and consume.

Two ways to read a stream:
- `consume` — a durable pull consumer with explicit acks: the handler's effect is published
  before the message is acked, so a crash means redelivery, and handlers are idempotent by id.
- `Follower` — an ephemeral consumer from the start of a stream, used to rebuild in-memory state
  (portfolio, signal log) after a restart and to keep it current. `caught_up` is set once the
  history present at start has been applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
from pydantic import BaseModel

from bus.cluster import add_stream, stream_config
from bus.credentials import connect_with_credentials
from observability import metrics
from schemas.subjects import STREAMS, Subject

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
CORRELATION_ID = "X-Correlation-ID"
DUPLICATE_WINDOW_S = 600.0  # twice the webhook timestamp tolerance


async def connect(
    url: str | Sequence[str], name: str, *, role: str | None = None, data_dir: Path | None = None
) -> NATS:
    """Connect as `role` (bus.credentials.ROLES) with its credentials (`nats_auth(role, data_dir)`).

    `url`: one server, or a cluster's seed list (comma-separated, as in NATS_URL, or a list); a bad entry
    raises `bus.cluster.InvalidNatsUrl`.

    `role=None` sends no credentials: only an unlocked server accepts that. A server that refuses the
    credentials raises `bus.credentials.CredentialsRefused` (instead of retrying forever).
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    return await connect_with_credentials(
        url,
        role=role,
        data_dir=data_dir,
        name=name,
        error_cb=on_error,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
    )


async def ensure_streams(js: JetStreamContext) -> None:
    """Create the SIGNALS, DECISIONS and EXECUTIONS streams (file storage) if they are missing, with the
    replicas and placement of `bus.cluster.cluster_settings` (TRADING_MCP_NATS_REPLICAS, ...).

    Only looks (`$JS.API.STREAM.INFO`) when they exist, so it works for a role that may not create
    streams on a locked bus once an admin provisioned them (`bus.embedded.provision`).
    """
    for stream in STREAMS:
        try:
            await js.stream_info(stream.name)
        except NotFoundError:
            config = api.StreamConfig(
                name=stream.name,
                subjects=list(stream.subjects),
                storage=api.StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
            )
            await add_stream(js, stream_config(config))


async def publish(
    js: JetStreamContext,
    subject: Subject,
    message: BaseModel,
    *,
    msg_id: str,
    correlation_id: str,
    timeout: float = 2.0,
) -> api.PubAck:
    """Publish a contract model; a second publish with the same `msg_id` is a no-op (`ack.duplicate`)."""
    data = message.model_dump_json().encode()
    return await publish_bytes(js, subject, data, msg_id=msg_id, correlation_id=correlation_id, timeout=timeout)


async def publish_bytes(
    js: JetStreamContext,
    subject: Subject,
    data: bytes,
    *,
    msg_id: str,
    correlation_id: str,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
) -> api.PubAck:
    """`publish` for a body already serialized (one that is signed over its exact bytes), with extra headers.

    Raises as nats-py's `js.publish` does: `nats.errors.TimeoutError` with no acknowledgement within `timeout`,
    the JetStream `APIError` the stream answered, `NoStreamResponseError` when no stream takes the subject."""
    started = time.perf_counter()
    hdrs = {MSG_ID: msg_id, CORRELATION_ID: correlation_id}
    if headers:
        hdrs.update(headers)
    try:
        ack = await (await acks_of(js).send(subject.value, data, hdrs, timeout))
    except Exception:
        metrics.jetstream_publish_errors_total.labels(subject.value).inc()
        raise
    _publish_duration(subject).observe(time.perf_counter() - started)
    return ack


@functools.cache  # one child per subject (a closed set): labels() takes a lock and checks its values per call
def _publish_duration(subject: Subject) -> Any:
    return metrics.jetstream_publish_duration_seconds.labels(subject.value)


SWEEP_S = 0.1  # Acks: a publish times out within this much after its deadline (one timer for all of them)


class Acks:
    """JetStream publishes and their acknowledgements on one connection, many in flight at once.

    One reply subscription (a wildcard under a fresh inbox), reply tokens from a counter, and one timer for
    every deadline (a heap, re-armed when it fires). nats-py's `js.publish` gives each publish a NUID token,
    a done callback and an `asyncio.wait_for` (a waiter future and a timer of its own): 100k of the 1,630k
    instructions a webhook cost the gateway (bench/gateway_instructions.py). Not nats-py's `publish_async`
    either: in nats-py 2.16 a JetStream error reply to it raises inside the reply callback
    (`APIError.from_error` raises instead of returning), so its future never completes. Here every reply
    completes its future: with the PubAck, the stream's `APIError`, or `NoStreamResponseError` (no stream, or
    no leader, answered); with `nats.errors.TimeoutError` when nothing did by the deadline (at most SWEEP_S
    after it: a sweep takes the deadlines close behind the first too). Entries sent one after another are
    stored in that order."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox() + "."
        self.futures: dict[str, asyncio.Future[api.PubAck]] = {}
        self.deadlines: list[tuple[float, int]] = []  # (loop time, token): a heap
        self.tokens = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.sub: Any = None

    async def send(
        self, subject: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> asyncio.Future[api.PubAck]:
        """Publish now; the future of its acknowledgement, which completes within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        if self.sub is None:
            self.sub = await self.nc.subscribe(self.prefix + "*", cb=self._reply)
        number = next(self.tokens)
        token = str(number)
        future: asyncio.Future[api.PubAck] = loop.create_future()
        self.futures[token] = future
        deadline = loop.time() + timeout
        heapq.heappush(self.deadlines, (deadline, number))
        if self.timer is None or deadline < self.timer_at:
            self._arm(loop, deadline)
        try:
            await self._publish(subject, self.prefix + token, headers, data)
        except Exception as exc:
            del self.futures[token]
            future.set_exception(exc)
        return future

    async def _publish(self, subject: str, reply: str, headers: dict[str, str], data: bytes) -> None:
        """`nc.publish(subject, data, reply=reply, headers=headers)`. On a connected client with plain headers, the
        frame is written here (`hpub_frame`): nats-py checks each subject and header against a pattern and builds
        the header block piece by piece, 50-70k instructions a webhook. Anything else takes nats-py's path (a
        client reconnecting, draining or closed; a header it would clean up; a payload over the server's limit)."""
        nc = self.nc
        if nc.is_connected and not nc.is_draining and len(data) <= nc.max_payload:
            frame = hpub_frame(subject, reply, headers, data)
            if frame is not None:
                nc.stats["out_msgs"] += 1
                nc.stats["out_bytes"] += len(data)
                await nc._send_command(frame)
                if nc._flush_queue is not None and nc._flush_queue.empty():
                    await nc._flush_pending()
                return
        await nc.publish(subject, data, reply=reply, headers=headers)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = loop.call_at(at, self._expire, loop), at

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        now = loop.time() + 1e-3  # a timer may fire up to the clock's resolution early
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            future = self.futures.pop(str(heapq.heappop(deadlines)[1]), None)
            if future is not None and not future.done():
                future.set_exception(nats.errors.TimeoutError())
        if deadlines:  # the next sweep takes every deadline of the coming SWEEP_S at once
            self._arm(loop, max(deadlines[0][0], now + SWEEP_S))

    async def _reply(self, msg: Msg) -> None:
        future = self.futures.pop(msg.subject[len(self.prefix) :], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(NoStreamResponseError())
            return
        try:
            reply = json.loads(msg.data)
        except ValueError as exc:
            future.set_exception(exc)
            return
        if not isinstance(reply, dict):
            future.set_exception(ValueError(f"not a JetStream acknowledgement: {msg.data[:64]!r}"))
        elif (error := reply.get("error")) is not None:
            future.set_exception(refusal(error))
        else:
            future.set_result(
                api.PubAck(
                    stream=reply["stream"],
                    seq=reply["seq"],
                    domain=reply.get("domain"),
                    duplicate=reply.get("duplicate"),
                )
            )


def hpub_frame(subject: str, reply: str, headers: dict[str, str], data: bytes) -> bytes | None:
    """The HPUB frame nats-py's `publish` writes for these arguments, or None where it would clean up or refuse
    something (a subject or reply with whitespace, a header name outside the token characters, a value that is
    empty, has surrounding spaces or a character that is not printable): then nats-py's own path does.
    tests/bus/test_acks.py holds the two equal."""
    if not (_plain_subject(subject) and _plain_subject(reply)):
        return None
    head = "NATS/1.0\r\n"
    for name, value in headers.items():
        if not (_plain_name(name) and value.isprintable() and value and value[0] != " " and value[-1] != " "):
            return None
        head += f"{name}: {value}\r\n"
    encoded = (head + "\r\n").encode()
    size = len(encoded)
    return f"HPUB {subject} {reply} {size} {size + len(data)}\r\n".encode() + encoded + data + b"\r\n"


def _plain_subject(subject: str) -> bool:
    """Not empty, no whitespace, nothing unprintable (nats-py refuses a space, a tab, CR or LF)."""
    return bool(subject) and subject.isprintable() and " " not in subject


@functools.lru_cache(maxsize=256)  # header names: a small set (the code's own), checked once each
def _plain_name(name: str) -> bool:
    return _HEADER_NAME.fullmatch(name) is not None


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def refusal(error: Any) -> APIError:
    """The `APIError` subclass nats-py maps a JetStream error reply to (`APIError.from_error` raises it); an
    error it cannot map (not the documented shape) as a plain `APIError` that quotes it."""
    try:
        APIError.from_error(error)
    except APIError as exc:
        return exc
    except Exception:  # noqa: BLE001 - a malformed error reply still ends the publish, as a refusal
        pass
    return APIError(description=f"unreadable JetStream error reply: {str(error)[:200]}")


_ACKS_ATTRIBUTE = "_trading_mcp_acks"


def acks_of(js: JetStreamContext) -> Acks:
    """The connection's `Acks` (one per connection, made at first use, kept on the connection: it lives as
    long as the connection does)."""
    nc: NATS = js._nc  # the context's connection
    acks: Acks | None = getattr(nc, _ACKS_ATTRIBUTE, None)
    if acks is None:
        acks = Acks(nc)
        setattr(nc, _ACKS_ATTRIBUTE, acks)
    return acks


def correlation_of(msg: Msg) -> str:
    return (msg.headers or {}).get(CORRELATION_ID, "")


Handler = Callable[[Msg], Awaitable[None]]


async def consume(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    subject: str,
    handler: Handler,
    stop: asyncio.Event,
    batch: int = 64,
    ack_wait: float = 30.0,
    deliver_policy: api.DeliverPolicy = api.DeliverPolicy.ALL,
    key: Callable[[Msg], str] | None = None,
    acks_in_order: bool = False,
) -> None:
    """Run a durable pull consumer until `stop` is set. Ack after the handler returns; nak on error.
    `deliver_policy` applies when the durable is first created (DeliverPolicy.NEW: skip the backlog).
    `key`: messages of one key are handled one after another in stream order, different keys at the same
    time (the bridge: one lane per symbol); None handles every message in turn. Lanes run continuously: a
    slow lane does not hold the others back, and the next batch is fetched while lanes still work, with at
    most `4 * batch` messages delivered and not yet acked. `acks_in_order` (with `key`): a message is acked only
    once it and every message delivered before it were handled, so the consumer's ack floor is exactly what was
    handled, with nothing acked above it: a restart that rebuilds state from the signals up to the ack floor gets
    every later one again (the strategy-mode bridge), where per-key acks leave a fast key's messages acked above a
    slow key's, neither redelivered nor below the floor. With `key`, a message redelivered while a lane still holds
    it (a handler slower than `ack_wait`) is not handled twice."""
    config = api.ConsumerConfig(
        durable_name=durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=deliver_policy,
        filter_subject=subject,
        ack_wait=ack_wait,
        max_ack_pending=1024,
    )
    sub = await _subscribe_with_retry(js, subject, durable, stream, config, stop)
    if sub is None:
        return

    async def in_turn(msgs: list[Msg]) -> None:
        await _handle_in_turn(msgs, handler)

    lanes = None if key is None else _Lanes(key, handler, limit=4 * batch, acks=_LaneAcks(acks_in_order))
    try:
        await fetch_loop(sub, batch, stop.is_set, in_turn if lanes is None else lanes.put, durable)
    finally:
        if lanes is not None:
            await lanes.drain()  # what was fetched is handled (and acked) before the consumer goes
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


class _LaneAcks:
    """What the lanes have in hand, by stream sequence. A redelivery of a message queued, being handled or handled
    and not yet acked (its ack_wait ran out while it waited) is not handled again, only remembered as the delivery to
    ack; one of a message whose handler failed (nak'd) is handled again. `in_order`: a handled message is acked only
    once every message delivered before it was handled too; else at once."""

    PENDING, FAILED, DONE = 0, 1, 2

    def __init__(self, in_order: bool = False) -> None:
        self.in_order = in_order
        self.entries: dict[int, list[Any]] = {}  # stream sequence -> [status, newest delivery], in delivery order

    def admit(self, msg: Msg) -> bool:
        """Whether to handle this delivery."""
        seq = msg.metadata.sequence.stream
        entry = self.entries.get(seq)
        if entry is None:
            self.entries[seq] = [self.PENDING, msg]
            return True
        entry[1] = msg
        if entry[0] == self.FAILED:
            entry[0] = self.PENDING
            return True
        return False

    async def handle(self, msg: Msg, handler: Handler) -> None:
        entry = self.entries[msg.metadata.sequence.stream]
        try:
            await handler(msg)
        except Exception:
            log.exception("handler failed on %s; redelivering", msg.subject)
            entry[0] = self.FAILED
            with contextlib.suppress(Exception):
                await entry[1].nak(delay=1.0)
            return
        entry[0] = self.DONE
        if not self.in_order:
            await self._ack(msg.metadata.sequence.stream)
            return
        while self.entries:
            seq, (status, _) = next(iter(self.entries.items()))
            if status != self.DONE:
                return
            await self._ack(seq)

    async def _ack(self, seq: int) -> None:
        delivery = self.entries.pop(seq)[1]  # before the await: a lane finishing meanwhile acks only what follows
        try:
            await delivery.ack()
        except Exception as exc:  # redelivered after ack_wait and handled again, as an ack lost anywhere
            log.warning("ack of stream message %d failed (%r)", seq, exc)


class _Lanes:
    """One task per key with work queued, each handling its key's messages in stream order; `put` returns once
    fewer than `limit` messages are queued or in a handler, so the fetch loop never runs far ahead."""

    def __init__(self, key: Callable[[Msg], str], handler: Handler, limit: int, acks: _LaneAcks) -> None:
        self.key, self.handler, self.limit, self.acks = key, handler, limit, acks
        self.queues: dict[str, list[Msg]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()

    async def put(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            if not self.acks.admit(msg):
                continue  # a redelivery of one in hand: acked in its turn
            k = self.key(msg)
            queue = self.queues.get(k)
            self.held += 1
            if queue is not None:
                queue.append(msg)  # its lane's task takes it after the ones before it
                continue
            self.queues[k] = [msg]
            task = asyncio.create_task(self._lane(k), name=f"lane-{k}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.held >= self.limit:
            self.room.clear()
            await self.room.wait()

    async def _lane(self, k: str) -> None:
        queue = self.queues[k]
        while queue:
            msg = queue.pop(0)
            await self.acks.handle(msg, self.handler)
            self.held -= 1
            if self.held < self.limit:
                self.room.set()
        del self.queues[k]  # no await since the queue emptied: a message of this key now starts a new lane

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


PULL_EXPIRES_S = 10.0  # a pull request lives this long on the server
PULL_HEARTBEAT_S = 1.0  # the server's idle heartbeat on an open pull
PULL_SILENCE_S = 2.5  # nothing heard for this long (a reconnect, a leader change): the pulls are gone, pull again
_PENDING = "Nats-Pending-Messages"


async def fetch_loop(
    sub: JetStreamContext.PullSubscription,
    batch: int,
    stopped: Callable[[], bool],
    on_batch: Callable[[list[Msg]], Awaitable[None]],
    name: str,
) -> None:
    """The one pull loop every consumer here runs, until `stopped()`: hand `on_batch` whatever has arrived (at
    least one message, at most `batch`), as soon as it has arrived.

    A persistent pull, as nats.go's `Consume`: pull requests for up to `batch` messages stay open on the
    server (expiring after PULL_EXPIRES_S, with idle heartbeats) and are topped up once half is delivered, so a
    message is pushed the moment it is stored. nats-py's `fetch` instead sends two pull requests per call (a
    no-wait probe, then a waiting one), gets a status message back for the probe and runs a task and a timer
    per message: at 100 signals/s that was a quarter of the whole stack's NATS messages (55 -> 41 per signal).
    The messages land in the subscription's own queue (`sub._sub`), read here without a task per message; what
    nats-py's accounting of that queue needs (`_pending_size`, the slow-consumer limit) is kept.

    Status messages: 408 (a request expired) and 409 (e.g. a leader change) end requests, counted back with
    their Nats-Pending-Messages header; heartbeats only prove the pull is alive. When nothing was heard for
    PULL_SILENCE_S and nothing waits in the queue (a reconnect or a leader change dropped the open pulls), the
    loop pulls afresh. A failing pull (NATS restarting) backs off from 0.2 s to 5 s and resets after the next
    message, so a consumer outlives any hiccup and never spins."""
    inbox = sub._sub  # nats-py's subscription to the consumer's deliver subject (no callback: a queue)
    queue: asyncio.Queue[Msg] = inbox._pending_queue
    nc = sub._nc
    outstanding = 0  # messages asked for and not yet delivered, over the open requests
    heard = time.monotonic()
    backoff = 0.0

    def take(msg: Msg, msgs: list[Msg]) -> None:
        nonlocal outstanding, heard
        inbox._pending_size -= len(msg.data)
        heard = time.monotonic()
        headers = msg.headers
        status = headers.get(api.Header.STATUS) if headers else None
        if headers is None or status is None:
            outstanding = max(0, outstanding - 1)
            msgs.append(msg)
        elif status == "100":  # an idle heartbeat (the pull is alive)
            return
        elif status in ("408", "409", "404"):  # a request ended: what it still owed will not come
            owed = headers.get(_PENDING)
            outstanding = max(0, outstanding - int(owed)) if owed and owed.isdigit() else 0

    while not stopped():
        try:
            now = time.monotonic()
            if outstanding and queue.empty() and now - heard > PULL_SILENCE_S:
                # nothing heard and nothing waiting to be read (a slow handler leaves heartbeats queued, and those
                # pulls are alive): the open pulls are gone, pull again
                outstanding = 0
            if outstanding <= batch // 2:
                want = batch - outstanding
                request = b'{"batch":%d,"expires":%d,"idle_heartbeat":%d}' % (
                    want,
                    int(PULL_EXPIRES_S * 1e9),
                    int(PULL_HEARTBEAT_S * 1e9),
                )
                await nc.publish(sub._nms, request, reply=sub._deliver)
                outstanding += want
                heard = max(heard, now)
            msgs: list[Msg] = []
            if queue.empty():
                try:
                    async with asyncio.timeout(0.5):  # not wait_for: that wraps queue.get() in a task per wait
                        msg = await queue.get()
                    take(msg, msgs)
                except TimeoutError:
                    if nc.is_closed:
                        raise ConnectionError("the NATS connection is closed") from None
                    continue
            while len(msgs) < batch and not queue.empty():
                take(queue.get_nowait(), msgs)
        except Exception as exc:  # a consumer loop must outlive NATS hiccups: retry, never die
            backoff = min(max(backoff * 2, 0.2), 5.0)
            log.warning("pull for %s failed (%r); retrying in %.1f s", name, exc, backoff)
            outstanding = 0
            await asyncio.sleep(backoff)
            continue
        if msgs:
            backoff = 0.0
            await on_batch(msgs)


async def _handle_in_turn(msgs: list[Msg], handler: Handler) -> None:
    for msg in msgs:
        try:
            await handler(msg)
        except Exception:
            log.exception("handler failed on %s; redelivering", msg.subject)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            continue
        await msg.ack()


async def _subscribe_with_retry(
    js: JetStreamContext,
    subject: str,
    durable: str | None,
    stream: str,
    config: api.ConsumerConfig,
    stop: asyncio.Event,
) -> JetStreamContext.PullSubscription | None:
    delay = 0.2
    while not stop.is_set():
        try:
            return await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
        except Exception as exc:
            log.warning("cannot create consumer %s on %s (%r); retrying", durable, stream, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return None


def log_if_failed(task: asyncio.Task[Any]) -> None:
    """Done-callback for background tasks: a task that dies must say so in the log."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s died: %r", task.get_name(), task.exception())


class Follower:
    """Apply every message of a stream (after sequence `after`), in order, to `handler`; then keep following.
    `caught_up` is set once what the stream held at start is applied; `applied_seq` is the last sequence
    applied, and `wait_for(seq)` waits (bounded) until it reaches `seq`."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        subject: str,
        handler: Callable[[Msg], Any],
        after: int = 0,
        since: datetime | None = None,
        batch: int = 512,
    ):
        self._js = js
        self._batch = batch  # messages applied at most between two turns of the event loop
        self._since = since  # start at the first message stored at or after this time (instead of `after`)
        self._stream = stream
        self._subject = subject
        self._handler = handler
        self._after = after
        self.applied_seq = after
        self.caught_up = asyncio.Event()
        self.progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE if self._after else api.DeliverPolicy.ALL,
            opt_start_seq=self._after + 1 if self._after else None,
            filter_subject=self._subject,
            inactive_threshold=60.0,
        )
        if self._since is not None:
            config.deliver_policy, config.opt_start_seq = api.DeliverPolicy.BY_START_TIME, None
            config.opt_start_time = self._since.astimezone(UTC)
        self._sub = await self._js.pull_subscribe(self._subject, stream=self._stream, config=config)
        info = await self._sub.consumer_info()
        if info.num_pending == 0:
            self.caught_up.set()
        self._task = asyncio.create_task(self._run(), name=f"follow-{self._stream}")
        self._task.add_done_callback(log_if_failed)

    async def _run(self) -> None:
        # a small `batch` pulls little at a time too: the client parses what arrives in one go, so a big pull would
        # stall the loop anyway
        pull = 512 if self._batch >= 256 else 2 * self._batch
        await fetch_loop(self._sub, pull, self._stop.is_set, self._apply, f"follower of {self._stream}")

    async def _apply(self, msgs: list[Msg]) -> None:
        for i, msg in enumerate(msgs):
            if i and i % self._batch == 0:
                await asyncio.sleep(0)  # let the loop's other work in (a long read must not stall it)
            seq = msg.metadata.sequence.stream
            if seq <= self.applied_seq:
                continue  # a redelivery after a reconnect
            try:
                result = self._handler(msg)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("follower of %s could not apply message %s", self._stream, seq)
            self.applied_seq = seq
            if msg.metadata.num_pending == 0:
                self.caught_up.set()
        async with self.progress:
            self.progress.notify_all()
        await asyncio.sleep(0)

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until the message at stream sequence `seq` is applied; False on timeout."""
        if self.applied_seq >= seq:
            return True
        with contextlib.suppress(TimeoutError):
            async with self.progress:
                await asyncio.wait_for(self.progress.wait_for(lambda: self.applied_seq >= seq), timeout)
        return self.applied_seq >= seq

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()  # a follower has nothing to finish: no wait for its pull loop to notice the stop
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2)
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


async def ack_floor(js: JetStreamContext, stream: str, durable: str) -> int:
    """The durable consumer's ack floor on `stream`: every message up to it was acked (0: none, or no consumer)."""
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


async def read_range(
    js: JetStreamContext,
    *,
    stream: str,
    subject: str,
    first: int,
    last: int,
    handler: Callable[[Msg], Any],
    timeout: float = 60.0,
    batch: int = 512,
) -> None:
    """Hand `handler` every message of `subject` stored at sequences `first`..`last` of `stream`, in order (an
    ordered read of that window only, not of what came before it; a message past `last` is not handed over)."""
    if last < first:
        return

    def within(msg: Msg) -> Any:
        return handler(msg) if msg.metadata.sequence.stream <= last else None

    follower = Follower(js, stream=stream, subject=subject, handler=within, after=first - 1, batch=batch)
    await follower.start()
    try:
        async with asyncio.timeout(timeout), follower.progress:  # done at `last`, or at the subject's end
            await follower.progress.wait_for(lambda: follower.applied_seq >= last or follower.caught_up.is_set())
    finally:
        await follower.stop()


async def consume_batches(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    subjects: list[str],
    handler,  # type: ignore[no-untyped-def]
    stop: asyncio.Event,
    batch: int = 128,
    ack_wait: float = 30.0,
) -> None:
    """A durable pull consumer that hands whole fetched batches to `handler`; ack after, nak on error.
    `ack_wait`: how long a batch delivered to a process that died waits before it is delivered again."""
    config = api.ConsumerConfig(
        durable_name=durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        filter_subjects=subjects if len(subjects) > 1 else None,
        filter_subject=subjects[0] if len(subjects) == 1 else None,
        ack_wait=ack_wait,
        max_ack_pending=4096,
    )
    sub = await _subscribe_with_retry(js, subjects[0], durable, stream, config, stop)
    if sub is None:
        return

    async def handle(msgs: list[Msg]) -> None:
        try:
            await handler(msgs)
        except Exception:
            log.exception("a batch from %s failed; redelivering", durable)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)
            await asyncio.sleep(0.2)
            return
        for msg in msgs:  # each ack only queues bytes on the connection: one flush sends them all, no task per ack
            with contextlib.suppress(Exception):
                await msg.ack()

    try:
        await fetch_loop(sub, batch, stop.is_set, handle, durable)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
