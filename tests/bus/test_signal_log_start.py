"""A fresh server's signal log, against a real nats-server: it reads only the stream's newest messages at start,
holds what a reader of the whole stream would hold, and follows on from there without a gap or a double."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import nats.js
import pytest
from nats.aio.msg import Msg

from bus.account_view import AppState, load_recent_signals
from bus.jetstream import read_range
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tests.conftest import wait_for
from tools.market import SignalLog

T0 = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
SUBJECT = Subject.SIGNALS_NORMALIZED.value


def signal(n: int, account: str = "paper") -> NormalizedSignal:
    return NormalizedSignal(
        signal_id=f"sig_{n}",
        source="generic",
        symbol=("AAPL", "MSFT", "IBM")[n % 3],
        price=Decimal(100 + n),
        received_at=T0 + timedelta(seconds=n),
        correlation_id=f"corr_{n}",
        accounts=[account],
    )


async def publish(js: nats.js.JetStreamContext, signals: list[NormalizedSignal]) -> None:
    acks = [await js.publish_async(SUBJECT, s.model_dump_json().encode()) for s in signals]
    await asyncio.gather(*acks)


def whole_stream_log(signals: list[NormalizedSignal], account: str, capacity: int) -> list[str]:
    """What a log fed every signal of the stream holds, newest first."""
    log = SignalLog(capacity=capacity)
    for s in signals:
        if account in s.accounts:
            log.add(s)
    return [s.signal_id for s in log.recent(capacity)]


async def test_a_start_reads_the_newest_window_only_and_follows_on_without_gap_or_double(
    js: nats.js.JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = [signal(n) for n in range(600)]
    await publish(js, history)
    log = SignalLog(capacity=50)

    read: list[int] = []
    real = read_range

    async def counting_read_range(*args: object, **kw: object) -> None:
        handler = kw["handler"]

        def counted(msg: Msg) -> object:
            read.append(msg.metadata.sequence.stream)
            return handler(msg)  # type: ignore[operator]

        await real(*args, **{**kw, "handler": counted})  # type: ignore[arg-type]

    monkeypatch.setattr("bus.account_view.read_range", counting_read_range)
    seq = await load_recent_signals(js, "paper", log)
    monkeypatch.undo()
    assert seq == 600
    assert [s.signal_id for s in log.recent(50)] == whole_stream_log(history, "paper", 50)
    assert min(read) == 551, "nothing older than the newest window is read"

    # a whole AppState: the same log, then every later signal once, in order
    state = AppState(js._nc, js, account_id="paper", signals=SignalLog(capacity=50))  # type: ignore[attr-defined]
    await state.start(timeout=10)
    try:
        assert [s.signal_id for s in await state.recent_signals(50)] == whole_stream_log(history, "paper", 50)
        later = [signal(n) for n in range(600, 620)]
        await publish(js, later)
        await wait_for(lambda: state.signals.recent(1)[0].signal_id == "sig_619", what="the later signals")
        assert [s.signal_id for s in state.signals.recent(50)] == whole_stream_log(history + later, "paper", 50)
        assert len({s.signal_id for s in state.signals.recent(50)}) == 50
    finally:
        await state.stop()


async def test_an_account_among_others_reads_back_window_by_window_until_its_log_is_full(
    js: nats.js.JetStreamContext,
) -> None:
    # one signal in eight is this account's: a window of 40 messages holds 5 of them
    history = [signal(n, "paper" if n % 8 == 0 else "other") for n in range(800)]
    await publish(js, history)
    log = SignalLog(capacity=40)
    assert await load_recent_signals(js, "paper", log) == 800
    assert [s.signal_id for s in log.recent(40)] == whole_stream_log(history, "paper", 40)
    assert len(log.recent(40)) == 40

    # the other account's log from the same stream: its own newest 40, none of paper's
    other = SignalLog(capacity=40)
    await load_recent_signals(js, "other", other)
    assert [s.signal_id for s in other.recent(40)] == whole_stream_log(history, "other", 40)


async def test_a_rare_account_reads_back_no_further_than_the_scan_limit(js: nats.js.JetStreamContext) -> None:
    # this account's signals are the first 5 of the stream, followed by 300 of another account's
    history = [signal(n, "paper") for n in range(5)] + [signal(n, "other") for n in range(5, 305)]
    await publish(js, history)
    capped = SignalLog(capacity=20)
    assert await load_recent_signals(js, "paper", capped, scan_max=200) == 305
    assert capped.recent(20) == [], "older than the newest 200 messages: not read"
    whole = SignalLog(capacity=20)
    await load_recent_signals(js, "paper", whole, scan_max=1_000)
    assert [s.signal_id for s in whole.recent(20)] == ["sig_4", "sig_3", "sig_2", "sig_1", "sig_0"]


async def test_an_empty_stream_starts_empty_and_follows_from_the_first_signal(js: nats.js.JetStreamContext) -> None:
    log = SignalLog(capacity=10)
    assert await load_recent_signals(js, "paper", log) == 0
    assert log.recent(10) == []
    state = AppState(js._nc, js, account_id="paper", signals=SignalLog(capacity=10))  # type: ignore[attr-defined]
    await state.start(timeout=10)
    try:
        await publish(js, [signal(1)])
        await wait_for(lambda: [s.signal_id for s in state.signals.recent(10)] == ["sig_1"], what="the first signal")
    finally:
        await state.stop()


async def test_the_journal_fold_does_not_wait_for_the_signal_log_but_its_readers_do(
    js: nats.js.JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh server's first `get_positions` needs the journal only: `start` returns once the journal is caught up,
    while reading the newest signals goes on beside it; whoever reads signals waits for them."""
    await publish(js, [signal(n) for n in range(30)])
    release = asyncio.Event()
    real = load_recent_signals

    async def slow_load(*args: object, **kw: object) -> int:
        await release.wait()
        return await real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("bus.account_view.load_recent_signals", slow_load)
    state = AppState(js._nc, js, account_id="paper", signals=SignalLog(capacity=10))  # type: ignore[attr-defined]
    await state.start(timeout=10)
    try:
        assert state.signals_loading is not None and not state.signals_loading.done()
        reader = asyncio.create_task(state.recent_signals(3))
        await asyncio.sleep(0.2)
        assert not reader.done(), "a reader of signals waits for the log"
        release.set()
        assert [s.signal_id for s in await asyncio.wait_for(reader, 10)] == ["sig_29", "sig_28", "sig_27"]
    finally:
        await state.stop()
