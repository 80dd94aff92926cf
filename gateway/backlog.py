"""Load shedding: the gateway stores no signal that would only wait to be denied as stale.

Every durable reader of the signal stream (each account's bridge or agent, the simulator's and the authority's
market readers) takes every signal, in order. In a flood the slowest one falls behind, and each signal accepted
then waits behind all the earlier ones: long enough, soon, to be older than the authority's signal-age limit when
its turn comes, so it is stored, recorded and denied `stale_signal` — and so is every signal sent for as long as
the backlog takes to drain after the flood (bench/pipeline_vs_gateway.py measured 25 s of it behind a 30 s
flood). While the slowest live reader is over a limit, the gateway answers 503 `pipeline_behind` with Retry-After
instead: nothing is stored or claimed, and the same request may be resent. Two limits, either one sheds:
- `max_signal_wait_s` (2 s): the oldest signal a live reader has not acknowledged was stored that long before the
  newest one. A signal accepted now waits about as long as that one has, so this bounds the wait in time, on
  any machine, whatever the reader's speed; it is kept well under the authority's signal-age limit (5 s);
- `max_signal_backlog` (1,000 signals): a bound on the count, whatever the rate.

The backlog is read from the server (one CONSUMER.LIST of SIGNALS: per durable consumer, the messages not yet
delivered plus those delivered and not acknowledged, and its ack floor; then the stored times of the oldest
unacknowledged signal and of the newest) in the background, at most every REFRESH_S and only while
webhooks arrive: an idle gateway asks nothing, and no request waits for a reading. A reading older than STALE_S
counts as unknown, and unknown accepts. A reader counts while it is alive: a pull request open on the server, or
its delivered position moved within LIVE_S (loop time, no wall clocks compared). A reader that is gone (a bridge
stopped by its operator, an agent's durable left behind) does not close the gateway: what piles up behind it is
its outage, dealt with when it returns.

An agent's reader (durable `agent`, `agent-<account>`: decisions.agent) is not waited for either: it holds a signal
for a whole conversation with the model (seconds to minutes) by design, and skips what went stale meanwhile itself;
counting it would close the gateway for every account during each conversation.

The limit is one for all accounts, on purpose: the readers share one stream, so a signal routed to any account
lands in every reader's queue (a reader skips what is not routed to it, in turn), and a signal for account B
accepted while account A's bridge is behind still lengthens A's wait for its own signals.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from gateway.errors import Problem
from observability import metrics

log = structlog.get_logger("gateway")

REFRESH_S = 0.25  # at most one reading this often while webhooks arrive
STALE_S = 2.0  # a reading older than this says nothing (accept)
LIVE_S = 15.0  # a reader without an open pull whose position has not moved for this long is not waited for
READ_TIMEOUT_S = 1.0
# decisions.agent.service.DURABLE (applications do not import each other; tests/gateway ties the two)
UNWAITED_READERS = ("agent",)


def waited_for(durable: str) -> bool:
    """Whether the gateway sheds load for this reader's backlog (not for an agent's: see above)."""
    return not any(durable == base or durable.startswith(base + "-") for base in UNWAITED_READERS)


@dataclass
class Reader:
    """What the last readings said of one durable consumer."""

    delivered: int  # its delivered stream sequence
    moved_at: float  # loop time its delivered sequence last changed (or it was first seen with a pull open)


@dataclass
class Backlog:
    js: JetStreamContext
    limit: int  # signals; 0: no count limit
    retry_after_s: int
    max_wait_s: float = 0.0  # seconds the oldest waiting signal may have waited; 0: no wait limit
    stream: str = "SIGNALS"
    time: Callable[[], float] | None = None  # the event loop's clock unless given (tests)

    behind: int = 0  # the slowest live reader's backlog at the last reading
    slowest: str | None = None
    waited_s: float = 0.0  # how long the oldest signal a live reader has not acknowledged had waited (server time)
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
        elif self.max_wait_s > 0 and self.waited_s > self.max_wait_s:
            over = (
                f"a signal has waited {self.waited_s:.1f} s for the signal stream's slowest reader "
                f"({self.waited_on}), over this gateway's limit of {self.max_wait_s:g} s "
                "(TRADING_MCP_MAX_SIGNAL_WAIT_S)"
            )
        else:
            return
        raise Problem(
            "pipeline_behind",
            f"{over}: a signal stored now would be stale before it is decided. Nothing was stored; resend after "
            "Retry-After",
            headers={"Retry-After": str(self.retry_after_s)},
        )

    async def read(self) -> None:
        """One reading of every durable reader's backlog (errors keep the old reading, which goes stale)."""
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                infos = await self.js.consumers_info(self.stream)
                now = self._now()
                live = self._live(infos, now)
                behind, slowest = max(((p, name) for name, p, _, _ in live), default=(0, None))
                waited_s, waited_on = 0.0, None
                if self.max_wait_s > 0:
                    waited_s, waited_on = await self._waited(live)
        except Exception as exc:  # NATS down or slow: the publish will say so; shedding just goes blind
            log.warning("signal backlog not read", error=type(exc).__name__)
            return
        finally:
            self._reading = None
        self.behind, self.slowest, self.waited_s, self.waited_on = behind, slowest, waited_s, waited_on
        self.read_at = now
        metrics.gateway_signal_backlog.set(behind)
        metrics.gateway_signal_wait_seconds.set(waited_s)

    def _live(self, infos: list[api.ConsumerInfo], now: float) -> list[tuple[str, int, int, int]]:
        """The live durable readers: (name, backlog, first sequence not acknowledged, newest sequence it knows of).
        Remembers when each one's position last moved."""
        current: dict[str, Reader] = {}
        live = []
        for info in infos:
            name = info.config.durable_name
            if not name or not waited_for(name):
                continue  # an ordered reader (an MCP server's signal log) only shows signals; an agent's, see above
            delivered = info.delivered.stream_seq if info.delivered else 0
            waiting = (info.num_waiting or 0) > 0
            known = self.readers.get(name)
            if known is not None and known.delivered == delivered and not waiting:
                reader = known
            else:
                reader = Reader(delivered, now if known is not None or waiting else -math.inf)
            current[name] = reader
            if not waiting and now - reader.moved_at > LIVE_S:
                continue  # gone: no pull open and not moving
            pending = info.num_pending or 0
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            live.append((name, pending + (info.num_ack_pending or 0), floor + 1, delivered + pending))
        self.readers = current
        return live

    async def _waited(self, live: list[tuple[str, int, int, int]]) -> tuple[float, str | None]:
        """How long before the newest signal the oldest one a live reader has not acknowledged was stored (both
        times the server's, so no two clocks are compared), and that reader."""
        waiting = [(first, name) for name, backlog, first, _ in live if backlog > 0]
        if not waiting:
            return 0.0, None
        first, name = min(waiting)
        newest = max(last for _, _, _, last in live)
        try:
            oldest_msg = await self.js.get_msg(self.stream, first)
            newest_msg = await self.js.get_msg(self.stream, newest)
        except NotFoundError:  # gone from the stream meanwhile (its limits): no wait to tell
            return 0.0, None
        if oldest_msg.time is None or newest_msg.time is None:
            return 0.0, None
        return max(0.0, (newest_msg.time - oldest_msg.time).total_seconds()), name

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
