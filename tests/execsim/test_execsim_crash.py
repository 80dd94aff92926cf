"""Crash tests with a real nats-server and real processes: nothing lost, nothing filled twice."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from mcp import Client

from bus.embedded import EmbeddedNats, start_nats_server
from bus.jetstream import connect, ensure_streams
from schemas.orders import OrderIntent
from schemas.subjects import Subject
from tests.conftest import stream_count, wait_for
from tests.execsim.process_helpers import (
    Service,
    assert_every_intent_has_exactly_one_outcome,
    outcomes,
    publish_all,
    services,
    signal,
)

D = Decimal


def _intents(prefix: str, n: int, limits_every: int = 0) -> list[OrderIntent]:
    out = []
    for i in range(n):
        limit = limits_every and i % limits_every == 0
        out.append(
            OrderIntent(
                client_order_id=f"{prefix}{i}",
                symbol="AAPL",
                side="buy" if limit or i % 3 else "sell",
                quantity=D(1 + i % 3),
                order_type="limit" if limit else "market",
                limit_price=D(95) if limit else None,
                time_in_force="GTC",
                reference_price=D(100),
                origin="mcp",
                created_at=datetime.now(UTC),
                correlation_id=f"corr-{prefix}{i}",
            )
        )
    return out


async def _answered(js, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await stream_count(js, "EXECUTIONS", Subject.EXECUTION_REPORT.value) >= n


async def test_kill_9_of_the_simulator_mid_stream_loses_no_order_and_fills_none_twice(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    execsim = Service(["execsim"], nats_server.url, tmp_path / "execsim.log")
    with services(execsim):
        await execsim.start()
        await publish_all(js, Subject.SIGNALS_NORMALIZED, [bar := signal("AAPL", "100")], [bar.signal_id])
        intents = _intents("k", 1500, limits_every=50)
        await publish_all(js, Subject.ORDER_INTENT, intents, [i.client_order_id for i in intents])

        async def some_fills() -> bool:
            return await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value) >= 100

        await wait_for(some_fills, 30, "the first fills")
        execsim.kill9()
        fills_at_kill = await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value)
        resting = {i.client_order_id for i in intents if i.order_type == "limit"}
        assert fills_at_kill < len(intents) - len(resting), "the kill came after the stream was done"

        await execsim.start()
        markets = len(intents) - len(resting)

        async def markets_done() -> bool:
            o = await outcomes(js)
            return len(o.terminal()) >= markets

        await wait_for(markets_done, 60, "every market order to be answered after the restart")
        o = await outcomes(js)
        assert_every_intent_has_exactly_one_outcome(o, expect_open=resting)

        # the resting limits survived the crash: a bar through 95 fills each of them exactly once
        low = signal("AAPL", "96", open="99", high="99", low="94", close="96")
        await publish_all(js, Subject.SIGNALS_NORMALIZED, [low], [low.signal_id])

        async def all_done() -> bool:
            return len((await outcomes(js)).terminal()) == len(intents)

        await wait_for(all_done, 30, "the resting limits to fill")
        o = await outcomes(js)
        assert_every_intent_has_exactly_one_outcome(o)
        assert {f.price for f in o.fills if f.client_order_id in resting} == {D(95)}
        expected = sum((i.quantity if i.side == "buy" else -i.quantity for i in intents), D(0))
        assert o.portfolio().quantity("AAPL") == expected


async def test_kill_9_of_the_bridge_gives_every_signal_one_decision_and_the_portfolio_matches_the_fills(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    execsim = Service(["execsim"], nats_server.url, tmp_path / "execsim.log")
    # the bridge asks the order authority, which alone publishes (signed) intents
    data = ["--data-dir", str(tmp_path / "data")]
    authority = Service(["authority", *data], nats_server.url, tmp_path / "authority.log")
    bridge = Service(
        ["serve", "--transport", "streamable-http", "--bridge", *data],
        nats_server.url,
        tmp_path / "bridge.log",
    )
    with services(bridge, authority, execsim):
        await execsim.start()
        await authority.start()
        await bridge.start()
        signals = [signal("MSFT", str(100 + i % 7), "buy" if i % 2 else "sell", 1 + i % 4) for i in range(600)]
        await publish_all(js, Subject.SIGNALS_NORMALIZED, signals, [s.signal_id for s in signals])

        async def some_intents() -> bool:
            return await stream_count(js, "DECISIONS", Subject.ORDER_INTENT.value) >= 50

        await wait_for(some_intents, 30, "the first intents")
        bridge.kill9()
        assert await stream_count(js, "DECISIONS") < len(signals), "the kill came after the stream was done"
        await bridge.start()

        async def decided() -> bool:
            o = await outcomes(js)
            return len(o.intents) + len(o.denials) >= len(signals) and len(o.terminal()) >= len(o.intents)

        await wait_for(decided, 90, "every signal decided and every order answered")
        o = await outcomes(js)
        per_signal: dict[str, int] = {}
        for i in o.intents.values():
            per_signal[i.signal_id or ""] = per_signal.get(i.signal_id or "", 0) + 1
        for d in o.denials:
            per_signal[d.signal_id or ""] = per_signal.get(d.signal_id or "", 0) + 1
        assert per_signal == {s.signal_id: 1 for s in signals}
        assert_every_intent_has_exactly_one_outcome(o)

        expected = o.portfolio()
        url = f"http://127.0.0.1:{bridge.port}/mcp"

        async def positions_match() -> bool:
            async with Client(url) as client:
                result = await client.call_tool("get_positions", {})
            got = {p["symbol"]: D(p["quantity"]) for p in result.structured_content["positions"]}
            return got.get("MSFT", D(0)) == expected.quantity("MSFT")

        await wait_for(positions_match, 30, "the MCP server's positions to equal the fills")


async def test_restarting_nats_server_mid_stream_loses_no_order_and_fills_none_twice(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    execsim = Service(["execsim"], nats_server.url, tmp_path / "execsim.log")
    restarted: EmbeddedNats | None = None
    nc = await connect(nats_server.url, "crash-test")
    js = nc.jetstream()
    await ensure_streams(js)
    try:
        with services(execsim):
            await execsim.start()
            first = _intents("a", 600)
            await publish_all(js, Subject.ORDER_INTENT, first, [i.client_order_id for i in first])

            async def some_fills() -> bool:
                return await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value) >= 50

            await wait_for(some_fills, 30, "the first fills")
            nats_server.kill()
            restarted = start_nats_server(nats_server.data_dir, nats_server.port)
            second = _intents("b", 300)
            await publish_all(js, Subject.ORDER_INTENT, second, [i.client_order_id for i in second])
            total = len(first) + len(second)

            async def done() -> bool:
                try:
                    return len((await outcomes(js)).terminal()) >= total
                except Exception:
                    return False

            await wait_for(done, 90, "every order answered after the NATS restart")
            o = await outcomes(js)
            assert len(o.intents) == total
            assert_every_intent_has_exactly_one_outcome(o)
            expected = sum((i.quantity if i.side == "buy" else -i.quantity for i in first + second), D(0))
            assert o.portfolio().quantity("AAPL") == expected
    finally:
        await nc.close()
        if restarted is not None:
            restarted.stop()
