"""An application's view of the account: the long-lived state of an MCP server, a decision mode, or both in one
process (`open_account_view` connects, provisions the streams and folds).

- ACCOUNT (the authority's journal) → the account: positions, cash, orders, risk state. One
  ordered fold (`tools.account.Account`), so this process shows exactly what the authority holds
  at that journal sequence — never its own guess.
- SIGNALS → the signal log (list_signals, market snapshots, the bridge's prices): at start only the stream's
  newest messages are read (`load_recent_signals`), so a fresh server starts as fast with a million signals
  behind it as with none; then every new one.

Orders are never decided here: `ask` sends them to the account authority and waits until this
process's fold holds the authority's answer, so a tool that reads right after placing sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bus.authority_client import AuthorityUnavailable, ask
from bus.embedded import EmbeddedNats, ensure_embedded
from bus.jetstream import Follower, connect, ensure_streams, read_range
from bus.journal import JournalFollower
from bus.snapshot import read_snapshot
from observability.account_gauges import AccountGauges, observe_risk
from observability.heap import freeze_startup_heap
from schemas.account import AccountEvent, OrderCommand, OrderReply
from schemas.common import DEFAULT_ACCOUNT
from schemas.orders import OrderView
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tools.account import Account
from tools.clock import Clock, LiveClock
from tools.market import SignalLog
from tools.portfolio import Portfolio
from tools.risk import RiskGate

__all__ = ["AppState", "AuthorityUnavailable", "open_account_view"]

log = structlog.get_logger("account_view")

FOLD_WAIT_S = 5.0
SIGNAL_SCAN_MAX = 100_000  # at start, the signal log reads at most this many of the stream's newest messages
GAUGES_EVERY_S = 0.2  # the account gauges are set at most this often while entries stream in (then once more)


@dataclass
class AppState:
    nc: NATS
    js: JetStreamContext
    account_id: str = DEFAULT_ACCOUNT
    account: Account = field(default_factory=Account)
    signals: SignalLog = field(default_factory=SignalLog)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    clock: Clock = field(default_factory=LiveClock)  # order tools: confirmation token expiry
    journal: JournalFollower | None = None
    _signal_follower: Follower | None = None
    _gauges: AccountGauges = field(default_factory=AccountGauges)
    _gauges_at: float = 0.0  # loop time the gauges were last set
    _gauges_due: asyncio.TimerHandle | None = None
    folding: asyncio.Task[None] | None = None  # open_account_view's fold (done once the view is caught up)
    signals_loading: asyncio.Task[None] | None = None  # the signal log's start (`start`), beside the journal's fold

    @property
    def portfolio(self) -> Portfolio:
        return self.account.portfolio

    @property
    def orders(self) -> dict[str, OrderView]:
        """Every order of the account by client_order_id, as the authority admitted and the simulator reported."""
        return self.account.orders

    @property
    def gate(self) -> RiskGate:
        return self.account.gate

    async def start(self, timeout: float = 60.0) -> None:
        """Fold the journal (from the authority's newest snapshot) until caught up. The signal log loads beside it
        (`signals_loading`): what reads signals awaits `recent_signals`, so a first `get_positions` does not wait
        for the newest 10,000 signals to be read and parsed."""
        self.signals_loading = asyncio.create_task(self._load_signals(timeout), name=f"signals-{self.account_id}")
        self.signals_loading.add_done_callback(_log_failure)
        if self.account.seq == 0:  # the authority's newest snapshot, then only the journal after it
            restored = await read_snapshot(self.js, self.account_id)
            if restored is not None:
                self.account = restored[1]
        self.journal = JournalFollower(self.js, self._on_entry, self.account_id, after=self.account.seq)
        await self.journal.start()
        await asyncio.wait_for(self.journal.caught_up.wait(), timeout)
        self.observe_gauges()

    async def _load_signals(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            seq = await load_recent_signals(self.js, self.account_id, self.signals)
            self._signal_follower = Follower(
                self.js, stream="SIGNALS", subject=Subject.SIGNALS_NORMALIZED.value, handler=self._on_signal, after=seq
            )
            await self._signal_follower.start()
            await self._signal_follower.caught_up.wait()

    async def signals_loaded(self) -> None:
        """Wait until the signal log holds the stream's newest signals (raises what stopped it loading)."""
        if self.signals_loading is not None:
            await asyncio.shield(self.signals_loading)

    async def recent_signals(self, limit: int = 50, symbol: str | None = None) -> list[NormalizedSignal]:
        """The newest `limit` signals routed to the account (of `symbol`), newest first, once the log has loaded."""
        await self.signals_loaded()
        return self.signals.recent(limit, symbol)

    async def stop(self) -> None:
        if self.signals_loading is not None:
            self.signals_loading.cancel()
            await asyncio.gather(self.signals_loading, return_exceptions=True)
        if self._gauges_due is not None:
            self._gauges_due.cancel()
        if self._signal_follower is not None:
            await self._signal_follower.stop()
        if self.journal is not None:
            await self.journal.stop()

    async def ask(self, command: OrderCommand, *, fold: bool = True) -> OrderReply:
        """The authority's answer to `command` — once this process's fold holds it, unless `fold` is False
        (a caller that reads nothing right after, like the bridge's buys and sells)."""
        if self.nc is None:
            raise AuthorityUnavailable(
                "this server has no connection to the bus, so no order authority: nothing was placed"
            )
        reply = await ask(self.nc, command.model_copy(update={"account": self.account_id}))
        if fold:
            await self.folded(reply.journal_seq)
        return reply

    async def folded(self, seq: int) -> None:
        """Wait (bounded) until this process's fold holds journal entry `seq`."""
        if self.journal is not None and seq:
            await self.journal.wait_for(seq, FOLD_WAIT_S)

    def observe_gauges(self) -> None:
        """Set the account and risk gauges (/metrics) from the folded account."""
        self._gauges_due = None
        self._gauges_at = asyncio.get_running_loop().time()
        self._gauges.account = self.account_id
        self._gauges.observe_account(self.account)
        observe_risk(self.gate)

    def _gauges_soon(self) -> None:
        """`observe_gauges` now, or once GAUGES_EVERY_S after the last time: equity and PnL are sums over the
        positions, and a burst of entries must not recompute them for each one (the last entry is always shown)."""
        if self._gauges_due is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._gauges_at + GAUGES_EVERY_S - loop.time()
        if wait <= 0:
            self.observe_gauges()
        else:
            self._gauges_due = loop.call_later(wait, self.observe_gauges)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _on_entry(self, seq: int, event: AccountEvent) -> None:
        self.account.apply(event, seq)
        if event.kind in ("fill", "mark", "control", "admitted", "denied"):
            self._gauges_soon()
        await self._notify()

    async def _on_signal(self, msg: Msg) -> None:
        signal = NormalizedSignal.model_validate_json(msg.data)
        if self.account_id not in signal.accounts:
            return  # another account's feed: invisible here
        self.signals.add(signal)
        await self._notify()

    @contextlib.asynccontextmanager
    async def sibling(self, account: str) -> AsyncIterator[AppState]:
        """Another account's view over the same connection (a process that runs several accounts' decisions)."""
        if account == self.account_id:
            yield self
            return
        other = AppState(self.nc, self.js, account_id=account, clock=self.clock)
        await other.start()
        try:
            yield other
        finally:
            await other.stop()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("the signal log did not load; tools that read signals will fail", error=repr(task.exception()))


async def load_recent_signals(
    js: JetStreamContext, account: str, signals: SignalLog, scan_max: int = SIGNAL_SCAN_MAX
) -> int:
    """Fill `signals` with the newest signals routed to `account` (at most its capacity) and return the stream
    sequence it holds them up to: follow SIGNALS after that.

    The stream is read backwards in windows of `capacity` messages, newest first, until the log is full, the
    stream's start is reached, or `scan_max` messages were read; whatever is older is never read. With one
    account that is the one newest window, exactly what a reader of the whole stream would keep; an account
    that gets fewer than one signal in ten of the stream's newest `scan_max` shows only those."""
    try:
        info = await js.stream_info("SIGNALS")
    except NotFoundError:
        return 0
    first, last = info.state.first_seq, info.state.last_seq
    windows: list[list[NormalizedSignal]] = []
    found, end = 0, last
    while info.state.messages and end >= max(first, 1) and found < signals.capacity and last - end < scan_max:
        start = max(first, end - signals.capacity + 1, last - scan_max + 1)
        routed: list[NormalizedSignal] = []

        def keep(msg: Msg, routed: list[NormalizedSignal] = routed) -> None:
            signal = NormalizedSignal.model_validate_json(msg.data)
            if account in signal.accounts:
                routed.append(signal)

        await read_range(
            js, stream="SIGNALS", subject=Subject.SIGNALS_NORMALIZED.value, first=start, last=end, handler=keep
        )
        windows.append(routed)
        found, end = found + len(routed), start - 1
    for routed in reversed(windows):
        for signal in routed:
            signals.add(signal)
    return last


@contextlib.asynccontextmanager
async def open_account_view(
    nats_url: str | None,
    data_dir: Path,
    name: str = "mcp_server",
    account: str = DEFAULT_ACCOUNT,
    *,
    wait: bool = True,
) -> AsyncIterator[AppState]:
    """NATS (the data dir's embedded server unless `nats_url` is set), the streams, and the account folded from the
    authority's journal; everything closes on exit. With `wait=False` the view is handed over once connected and
    the streams are there, while `state.folding` (a task) still folds: whoever reads it must await that task."""
    embedded: EmbeddedNats | None = None
    url = nats_url
    if url is None:
        embedded = await asyncio.to_thread(ensure_embedded, data_dir)
        url = embedded.url
    nc = await connect(url, name, role="mcp", data_dir=data_dir)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        state = AppState(nc, js, account_id=account)
        state.folding = asyncio.create_task(_fold(state), name=f"fold-{account}")
        try:
            if wait:
                await state.folding
            yield state
        finally:
            state.folding.cancel()
            await asyncio.gather(state.folding, return_exceptions=True)
            await state.stop()
    finally:
        await nc.close()
        if embedded is not None:
            embedded.stop()


async def _fold(state: AppState) -> None:
    await state.start()
    freeze_startup_heap()
    log.info(
        "account folded from the journal",
        account=state.account_id,
        journal_seq=state.account.seq,
        positions=len(state.portfolio.positions),
        open_orders=state.account.open_order_count(),
        trading_state=state.gate.state.value,
    )
