"""Load shedding: the gateway stores no signal that would only wait to be denied as stale.

Every durable reader of the signal stream (each account's bridge, the simulator's and the authority's market
readers) takes every signal, in order. In a flood the slowest one falls behind, and each signal accepted then
waits behind all the earlier ones: long enough, soon, to be older than the authority's signal-age limit when its
turn comes, so it is stored, recorded and denied `stale_signal` — and so is every signal sent for as long as the
backlog takes to drain after the flood (bench/pipeline_vs_gateway.py measured 25 s of it behind a 30 s flood).
While the slowest live reader is over a limit, the gateway answers 503 `pipeline_behind` with Retry-After
instead: nothing is stored or claimed, and the same request may be resent. Two limits, either one sheds:
- `max_signal_wait_s` (2 s): the wait a signal accepted now would have before a reader takes it, projected as the
  reader's backlog ÷ the rate it has been acknowledging at (over at least RATE_WINDOW_S). This bounds the wait in
  time, on any machine, whatever the reader's speed, and is kept well under the authority's signal-age limit
  (5 s). A reader that is back from a restart drains fast, so its backlog projects a short wait and nothing is
  refused for having waited while it was away; a reader not moving at all projects nothing (the count limit
  still holds);
- `max_signal_backlog` (1,000 signals): a bound on the count, whatever the rate.

The backlog is read from the server (one CONSUMER.LIST of SIGNALS: per durable consumer, the messages not yet
delivered plus those delivered and not acknowledged, and its ack floor) in the background, at most every
REFRESH_S and only while webhooks arrive: an idle gateway asks nothing, and no request waits for a reading. A
reading older than STALE_S counts as unknown, and unknown accepts. A reader counts while it is alive: a pull
request open on the server, or its delivered position moved within LIVE_S (loop time, no wall clocks compared).
A reader that is gone (a bridge stopped by its operator, a durable left behind) does not close the gateway: what
piles up behind it is its outage, dealt with when it returns.

An agent's reader (durable `agent`, `agent-<account>`: decisions.agent) is not waited for either: it holds a signal
for a whole conversation with the model (seconds to minutes) by design, and skips what went stale meanwhile itself;
counting it would close the gateway for every account during each conversation.

The limits are the same for all accounts, on purpose: the readers share one stream, so a signal routed to any
account lands in every reader's queue (a reader skips what is not routed to it, in turn), and a signal for
account B accepted while account A's bridge is behind still lengthens A's wait for its own signals.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from nats.js import JetStreamContext, api

from gateway.errors import Problem
from observability import metrics

log = structlog.get_logger("gateway")

REFRESH_S = 0.25  # at most one reading this often while webhooks arrive
STALE_S = 2.0  # a reading older than this says nothing (accept)
LIVE_S = 15.0  # a reader without an open pull whose position has not moved for this long is not waited for
READ_TIMEOUT_S = 1.0
RATE_WINDOW_S = 1.0  # a reader's rate is measured over at least this long
# decisions.agent.service.DURABLE (applications do not import each other; tests/gateway ties the two)
UNWAITED_READERS = ("agent",)


def waited_for(durable: str) -> bool:
    """Whether the gateway sheds load for this reader's backlog (not for an agent's: see above)."""
    return not any(durable == base or durable.startswith(base + "-") for base in UNWAITED_READERS)


@dataclass
class Reader:
    """What the readings said of one durable consumer."""

    delivered: int  # its delivered stream sequence
    moved_at: float  # loop time its delivered sequence last changed (or it was first seen with a pull open)
    floor: int  # its ack floor at `floor_at`, the start of the window its rate is measured over
    floor_at: float
    rate: float = 0.0  # signals acknowledged per second over the last full window (0: not known, or not moving)


@dataclass
class Backlog:
    js: JetStreamContext
    limit: int  # signals; 0: no count limit
    retry_after_s: int
    max_wait_s: float = 0.0  # the projected wait of a signal accepted now; 0: no wait limit
    stream: str = "SIGNALS"
    time: Callable[[], float] | None = None  # the event loop's clock unless given (tests)

    behind: int = 0  # the largest live reader's backlog at the last reading
    slowest: str | None = None
    wait_s: float = 0.0  # the longest projected wait at the last reading
    waited_on: str | None = None  # that reader
    read_at: float = -math.inf
    readers: dict[str, Reader] = field(default_factory=dict)
    _asked_at: float = -math.inf
    _reading: asyncio.Task[None] | None = None

    @property
    def on(self) -> bool:
        return self.limit > 0 or self.max_wait_s > 0

    def _now(self) -> float:
        return self.time() if self.time is not None else asyncio.get_running_loop().time()

    def check(self) -> None:
        """Problem `pipeline_behind` when the last fresh reading is over a limit; start a new reading when due.
        Cheap and synchronous: a webhook never waits for the server here."""
        if not self.on:
            return
        now = self._now()
        if self._reading is None and now - self._asked_at >= REFRESH_S:
            self._asked_at = now
            self._reading = asyncio.create_task(self.read(), name="gateway-backlog-reading")
        if now - self.read_at > STALE_S:
            return
        if self.limit > 0 and self.behind > self.limit:
            over = (
                f"the signal stream's slowest reader ({self.slowest}) is {self.behind} signals behind, over this "
                f"gateway's limit of {self.limit} (TRADING_MCP_MAX_SIGNAL_BACKLOG)"
            )
        elif self.max_wait_s > 0 and self.wait_s > self.max_wait_s:
            over = (
                f"a signal stored now would wait {self.wait_s:.1f} s for the signal stream's slowest reader "
                f"({self.waited_on}), over this gateway's limit of {self.max_wait_s:g} s "
                "(TRADING_MCP_MAX_SIGNAL_WAIT_S)"
            )
        else:
            return
        raise Problem(
            "pipeline_behind",
            f"{over}, and could be stale before it is decided. Nothing was stored; resend after Retry-After",
            headers={"Retry-After": str(self.retry_after_s)},
        )

    async def read(self) -> None:
        """One reading of every durable reader's backlog (errors keep the old reading, which goes stale)."""
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                infos = await self.js.consumers_info(self.stream)
        except Exception as exc:  # NATS down or slow: the publish will say so; shedding just goes blind
            log.warning("signal backlog not read", error=type(exc).__name__)
            return
        finally:
            self._reading = None
        now = self._now()
        behind, slowest, wait_s, waited_on = 0, None, 0.0, None
        current: dict[str, Reader] = {}
        for info in infos:
            name = info.config.durable_name
            if not name or not waited_for(name):
                continue  # an ordered reader (an MCP server's signal log) only shows signals; an agent's, see above
            waiting = (info.num_waiting or 0) > 0  # a pull request open on the server
            reader = current[name] = self._reader(name, info, waiting, now)
            if not waiting and now - reader.moved_at > LIVE_S:
                continue  # gone: no pull open and not moving
            backlog = (info.num_pending or 0) + (info.num_ack_pending or 0)
            if backlog > behind:
                behind, slowest = backlog, name
            if backlog and reader.rate > 0 and backlog / reader.rate > wait_s:
                wait_s, waited_on = backlog / reader.rate, name
        self.readers = current
        self.behind, self.slowest, self.wait_s, self.waited_on, self.read_at = behind, slowest, wait_s, waited_on, now
        metrics.gateway_signal_backlog.set(behind)
        metrics.gateway_signal_wait_seconds.set(wait_s)

    def _reader(self, name: str, info: api.ConsumerInfo, waiting: bool, now: float) -> Reader:
        """This reading of one reader, from the last: whether its position moved, and its rate once a window is
        full (a window starts again after a gap of more than STALE_S between readings: an idle gateway read
        nothing, and a rate over the gap would mean nothing)."""
        delivered = info.delivered.stream_seq if info.delivered else 0
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        known = self.readers.get(name)
        if known is None:
            return Reader(delivered, now if waiting else -math.inf, floor, now)
        moved_at = now if delivered != known.delivered or waiting else known.moved_at
        if floor < known.floor or now - self.read_at > STALE_S:  # recreated, or a gap: start a new window
            return Reader(delivered, moved_at, floor, now)
        if now - known.floor_at < RATE_WINDOW_S:
            return Reader(delivered, moved_at, known.floor, known.floor_at, known.rate)
        return Reader(delivered, moved_at, floor, now, (floor - known.floor) / (now - known.floor_at))

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
