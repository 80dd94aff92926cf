"""The simulator's snapshot (KV EXECSIM_SNAPSHOT), against a real nats-server: an engine rebuilt from a snapshot and
the streams' tails is the engine a rebuild from the whole streams gives, the snapshot is not used once it no longer
describes the streams, and a real simulator process killed with SIGKILL comes back from its snapshot with nothing
lost and nothing filled twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import nats.js
from nats.js import api

from bus.embedded import EmbeddedNats
from bus.jetstream import publish
from execsim.engine import Engine, EngineConfig
from execsim.fold import StreamFold
from execsim.service import (
    ExecSimService,
    FinishedOrders,
    absorb_tails,
    read_fold,
    rebuild,
    start_consumers,
    write_fold,
)
from schemas.market import Bar
from schemas.orders import OrderCancel, OrderIntent
from schemas.subjects import Subject
from tests.conftest import wait_for
from tests.execsim.process_helpers import (
    AUTHORITY_KEY,
    Service,
    assert_every_intent_has_exactly_one_outcome,
    outcomes,
    publish_all,
    services,
    signal,
)
from tools.clock import LiveClock

D = Decimal
MARKET = "execsim-market"
KEPT = 20  # finished orders a fold keeps whole here (1,000 in the service): 17 finish before the snapshot, 28 in all


def intent(coid: str, *, limit: str | None = None, symbol: str = "AAPL", side: str = "buy") -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        quantity=D(2),
        order_type="limit" if limit else "market",
        limit_price=D(limit) if limit else None,
        time_in_force="GTC",
        reference_price=D(100),
        origin="mcp",
        created_at=datetime.now(UTC),
        correlation_id=f"corr-{coid}",
    )


async def send(js: nats.js.JetStreamContext, *items: object) -> None:
    for item in items:
        if isinstance(item, OrderIntent):
            await publish(
                js, Subject.ORDER_INTENT, item, msg_id=f"{item.client_order_id}-{id(item)}", correlation_id="t"
            )
        elif isinstance(item, OrderCancel):
            await publish(js, Subject.ORDER_CANCEL, item, msg_id=f"x-{item.client_order_id}", correlation_id="t")
        else:
            await publish(js, Subject.SIGNALS_NORMALIZED, item, msg_id=item.signal_id, correlation_id="t")  # type: ignore[attr-defined,arg-type]


def cancel(coid: str) -> OrderCancel:
    return OrderCancel(
        client_order_id=coid, origin="mcp", reason="test", created_at=datetime.now(UTC), correlation_id=f"c-{coid}"
    )


async def answered(js: nats.js.JetStreamContext, coids: set[str]) -> None:
    """Wait until each of `coids` has its final report."""

    async def done() -> bool:
        return coids <= set((await outcomes(js)).terminal())

    await wait_for(done, 15, f"{len(coids)} orders to finish")


def engine_state(engine: Engine, coids: list[str]) -> dict[str, object]:
    """What a rebuilt engine holds: every order's state, each symbol's price, and the fills a resubmission makes."""
    orders = {}
    for coid in coids:
        o = engine.order(coid)
        orders[coid] = None if o is None else (o.status, o.filled, o.fills, o.notional, o.triggered, o.is_open)
    return {"orders": orders, "prices": {s: engine.last_price(s) for s in ("AAPL", "MSFT")}}


async def test_a_rebuild_from_the_snapshot_and_the_tails_is_the_rebuild_from_the_whole_streams(
    js: nats.js.JetStreamContext,
) -> None:
    engine = Engine(LiveClock(), EngineConfig())
    service = ExecSimService(js, engine, MARKET, account="paper")
    stop = asyncio.Event()
    tasks = start_consumers(js, service, stop, batch=16, account="paper")
    try:
        # before the snapshot: 20 market orders, 4 resting limits (one cancelled), a cancel of an unknown order
        first = [intent(f"a{i}", limit="95") if i % 5 == 0 else intent(f"a{i}", side="sell") for i in range(20)]
        bars = [signal("AAPL", "100", open=o, high="101", low="97") for o in ("98", "99", "100")]
        await send(js, *bars, *first, cancel("a5"), cancel("never-sent"))
        await answered(js, {i.client_order_id for i in first if i.order_type == "market"} | {"a5"})
        taken = StreamFold("paper", kept=KEPT)
        await rebuild(js, Engine(LiveClock(), EngineConfig()), MARKET, account="paper", fold=taken)
        await write_fold(js, taken, None)
        assert taken.exec_seq > 0 and taken.decision_seq > 0 and len(taken.finished) == 17

        # after it: more orders, a new symbol, a cancel of a limit from before, the same intent sent again
        second = [intent(f"b{i}", symbol="MSFT" if i % 2 else "AAPL") for i in range(10)]
        await send(js, signal("MSFT", "50"), *second, cancel("a10"), first[1])
        await answered(js, {i.client_order_id for i in second} | {"a10"})
        coids = [i.client_order_id for i in first + second] + ["never-sent"]

        whole, whole_finished = Engine(LiveClock(), EngineConfig()), FinishedOrders()
        full = StreamFold("paper", kept=KEPT)
        await rebuild(js, whole, MARKET, account="paper", finished=whole_finished, fold=full)
        stored = await read_fold(js, "paper", MARKET, None)
        assert stored is not None and stored.exec_seq == taken.exec_seq
        stored.kept = KEPT
        tail, tail_finished = Engine(LiveClock(), EngineConfig()), FinishedOrders()
        await rebuild(js, tail, MARKET, account="paper", finished=tail_finished, fold=stored)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    assert (stored.exec_seq, stored.decision_seq, stored.signal_seq) == (
        full.exec_seq,
        full.decision_seq,
        full.signal_seq,
    )
    assert engine_state(tail, coids) == engine_state(whole, coids)
    assert {o.intent.client_order_id for o in tail.open_orders()} == {"a0", "a15"}
    assert tail.last_price("MSFT") == D(50)
    # the opens an order `at_open_of` an earlier bar fills at, and the last bar's range
    opens = [Bar.from_signal(b).ts for b in bars]
    assert [tail._open_at("AAPL", ts) for ts in opens] == [whole._open_at("AAPL", ts) for ts in opens]
    assert [tail._open_at("AAPL", ts) for ts in opens] == [D(98), D(99), D(100)]
    assert tail._market["AAPL"].bar_range == whole._market["AAPL"].bar_range > 0
    # every order answered before is handled in both: kept whole or remembered by key; none fills again
    for coid in coids[:-1]:
        assert (tail.knows(coid) or tail_finished.handled(coid)) and (whole.knows(coid) or whole_finished.handled(coid))
    for engine_, finished in ((tail, tail_finished), (whole, whole_finished)):
        again = [e for i in first + second if not finished.handled(i.client_order_id) for e in engine_.submit(i)]
        assert again == [], "an order answered before was answered again"
    assert len(stored.forgotten) == len(full.forgotten) > 0


async def test_a_snapshot_of_other_streams_or_another_key_is_not_used(js: nats.js.JetStreamContext) -> None:
    engine = Engine(LiveClock(), EngineConfig())
    service = ExecSimService(js, engine, MARKET, account="paper")
    stop = asyncio.Event()
    tasks = start_consumers(js, service, stop, account="paper")
    try:
        await send(js, signal("AAPL", "100"), intent("o1"))
        await answered(js, {"o1"})
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    fold = StreamFold("paper")
    await absorb_tails(js, fold, MARKET, None)
    await write_fold(js, fold, None)
    assert await read_fold(js, "paper", MARKET, None) is not None
    assert await read_fold(js, "paper", MARKET, b"another authority key") is None
    assert await read_fold(js, "other", MARKET, None) is None  # no snapshot of that account

    # `trading-mcp reset` deletes the streams: the new EXECUTIONS is not the one the snapshot folded
    info = await js.stream_info("EXECUTIONS")
    await js.delete_stream("EXECUTIONS")
    await js.add_stream(api.StreamConfig(name="EXECUTIONS", subjects=info.config.subjects))
    await js.publish("executions.report", b"{}")  # even one that has as many messages again
    await js.publish("executions.report", b"{}")
    assert await read_fold(js, "paper", MARKET, None) is None


async def test_a_simulator_killed_after_its_snapshot_restarts_from_it_and_fills_nothing_twice(
    nats_server: EmbeddedNats, js: nats.js.JetStreamContext, tmp_path: Path
) -> None:
    log = tmp_path / "execsim.log"
    execsim = Service(["execsim"], nats_server.url, log)
    execsim.env = {"TRADING_MCP_EXECSIM_SNAPSHOT_EVERY_SECONDS": "0.2", "TRADING_MCP_LOG_LEVEL": "INFO"}
    with services(execsim):
        await execsim.start()
        bar = signal("AAPL", "100")
        first = [intent(f"k{i}", limit="95" if i % 50 == 0 else None, side="buy") for i in range(300)]
        await publish_all(js, Subject.SIGNALS_NORMALIZED, [bar], [bar.signal_id])
        await publish_all(js, Subject.ORDER_INTENT, first, [i.client_order_id for i in first])
        await answered(js, {i.client_order_id for i in first if i.order_type == "market"})
        kv = await js.key_value("EXECSIM_SNAPSHOT")
        last = (await js.stream_info("EXECUTIONS")).state.last_seq

        async def snapshot_has_all() -> bool:
            fold = await read_fold(js, "paper", MARKET, AUTHORITY_KEY.encode())
            return fold is not None and fold.exec_seq >= last

        await wait_for(snapshot_has_all, 10, "a snapshot with every answer")
        assert (await kv.get("paper")).value
        execsim.kill9()

        # while it is down: more orders, and intents it answered already sent again (a re-publish)
        second = [intent(f"m{i}", side="sell") for i in range(50)]
        await publish_all(js, Subject.ORDER_INTENT, second, [i.client_order_id for i in second])
        await publish_all(js, Subject.ORDER_INTENT, first[:20], [f"again-{i.client_order_id}" for i in first[:20]])
        await execsim.start()
        await answered(js, {i.client_order_id for i in second})
        o = await outcomes(js)
        resting = {i.client_order_id for i in first if i.order_type == "limit"}
        assert_every_intent_has_exactly_one_outcome(o, expect_open=resting)

        low = signal("AAPL", "96", open="99", high="99", low="94", close="96")
        await publish_all(js, Subject.SIGNALS_NORMALIZED, [low], [low.signal_id])

        async def all_done() -> bool:
            return len((await outcomes(js)).terminal()) == len(first) + len(second)

        await wait_for(all_done, 20, "the resting limits to fill")
        o = await outcomes(js)
        assert_every_intent_has_exactly_one_outcome(o)
        assert sum(1 for f in o.fills if f.client_order_id in resting) == len(resting)
        assert "simulator restored from its snapshot" in log.read_text()
