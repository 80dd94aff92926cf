"""Real processes around one account authority: racing order sources never pass a limit, a kill -9 of the
authority under load loses and doubles nothing, and a fresh server shows what the running one shows."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from decimal import Decimal
from pathlib import Path

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from bus.embedded import EmbeddedNats
from bus.journal import JournalFollower
from schemas.subjects import Subject
from tests.conftest import stream_count, wait_for
from tests.execsim.process_helpers import (
    EXE,
    Service,
    assert_every_intent_has_exactly_one_outcome,
    outcomes,
    publish_all,
    read_stream,
    services,
    signal,
)
from tests.mcp.helpers import preview_and_place
from tools.account import Account

D = Decimal
NO_OTHER_LIMITS = {
    "max_order_notional": None,
    "max_gross_exposure": None,
    "max_open_orders": None,
    "max_orders_per_window": None,
    "daily_loss_limit": None,
    "max_drawdown": None,
}


def limits_file(tmp_path: Path, **limits: object) -> str:
    path = tmp_path / "limits.json"
    path.write_text(json.dumps({**NO_OTHER_LIMITS, **limits}))
    return str(path)


async def fold(js, account: str = "paper") -> Account:  # type: ignore[no-untyped-def]
    """The account as any reader folds the journal now."""
    acct = Account()
    follower = JournalFollower(js, lambda seq, ev: acct.apply(ev, seq), account)
    await follower.start()
    await asyncio.wait_for(follower.caught_up.wait(), 30)
    await follower.stop()
    return acct


async def test_two_serve_processes_and_the_bridge_racing_orders_never_pass_the_position_limit(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    env = {"TRADING_MCP_CONFIRMATION": "token", "TRADING_MCP_MAX_SIGNAL_AGE_SECONDS": "3600"}
    env["TRADING_MCP_LOG_LEVEL"] = "INFO"
    execsim = Service(["execsim"], nats_server.url, tmp_path / "execsim.log")
    authority = Service(
        ["authority", *data, "--risk-limits-file", limits_file(tmp_path, max_position=1000)],
        nats_server.url,
        tmp_path / "authority.log",
        env=env,
    )
    first = Service(
        ["serve", "--transport", "streamable-http", "--bridge", *data], nats_server.url, tmp_path / "a.log", env=env
    )
    second = Service(["serve", "--transport", "streamable-http", *data], nats_server.url, tmp_path / "b.log", env=env)
    with services(first, second, authority, execsim):
        for s in (execsim, authority, first, second):
            await s.start()
        price = signal("CNF", "10")
        await publish_all(js, Subject.SIGNALS_NORMALIZED, [price], [price.signal_id])
        await wait_for(lambda: _marked(js), 15, "the authority's first mark")

        async def place_many(port: int, tag: str) -> list[bool]:
            async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp")) as client:
                orders = [
                    {"symbol": "CNF", "side": "buy", "quantity": "900", "client_order_id": f"{tag}{i}"}
                    for i in range(6)
                ]
                # every preview sees position 0 and gets a token; the places then race each other and the bridge
                previews = [await client.call_tool("preview_order", order) for order in orders]
                tokens = [p.structured_content["confirmation_token"] for p in previews]
                previewed.append(tag)
                if len(previewed) == 2:
                    ready.set()
                await ready.wait()
                calls = [
                    client.call_tool("place_order", {**order, "confirmation_token": token})
                    for order, token in zip(orders, tokens, strict=True)
                ]
                return [not r.is_error for r in await asyncio.gather(*calls)]

        ready, previewed = asyncio.Event(), []

        bridge_buys = [signal("CNF", "10", "buy", 900) for _ in range(6)]

        async def bridge_signals() -> None:
            await ready.wait()
            await publish_all(js, Subject.SIGNALS_NORMALIZED, bridge_buys, [s.signal_id for s in bridge_buys])

        placed_a, placed_b, _ = await asyncio.gather(
            place_many(first.port, "a"), place_many(second.port, "b"), bridge_signals()
        )

        async def all_decided() -> bool:
            o = await outcomes(js)
            return len(o.intents) + len(o.denials) >= 18 and len(o.terminal()) >= len(o.intents)

        await wait_for(all_decided, 60, "every request decided and every admitted order done")
        o = await outcomes(js)
        account = await fold(js)
    assert sum(placed_a) + sum(placed_b) + sum(1 for i in o.intents.values() if i.origin == "bridge") == 1
    assert len(o.intents) == 1 and len(o.denials) == 17, "exactly one 900 fits under 1000, from whichever came first"
    assert {d.reason_code for d in o.denials} == {"max_position"}
    assert o.portfolio().quantity("CNF") == account.position("CNF") == D(900)


async def _marked(js) -> bool:  # type: ignore[no-untyped-def]
    return await stream_count(js, "ACCOUNT") >= 2  # the configured limits, then the mark


async def test_kill_9_of_the_authority_under_load_loses_no_admitted_order_and_doubles_none(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    env = {"TRADING_MCP_MAX_SIGNAL_AGE_SECONDS": "3600"}
    execsim = Service(["execsim"], nats_server.url, tmp_path / "execsim.log")
    authority = Service(
        ["authority", *data, "--risk-limits-file", limits_file(tmp_path, max_position=40)],
        nats_server.url,
        tmp_path / "authority.log",
        env=env,
    )
    bridge = Service(
        ["serve", "--transport", "streamable-http", "--bridge", *data], nats_server.url, tmp_path / "b.log"
    )
    with services(bridge, authority, execsim):
        for s in (execsim, authority, bridge):
            await s.start()
        signals = [signal("MSFT", str(100 + i % 7), "buy" if i % 3 else "sell", 1 + i % 5) for i in range(500)]
        await publish_all(js, Subject.SIGNALS_NORMALIZED, signals, [s.signal_id for s in signals])

        async def some_intents() -> bool:
            return await stream_count(js, "DECISIONS", Subject.ORDER_INTENT.value) >= 40

        await wait_for(some_intents, 30, "the first intents")
        authority.kill9()
        assert await stream_count(js, "DECISIONS") < len(signals), "the kill came after every decision"
        await authority.start()

        async def decided() -> bool:
            o = await outcomes(js)
            return len(o.intents) + len(o.denials) >= len(signals) and len(o.terminal()) >= len(o.intents)

        await wait_for(decided, 120, "every signal decided and every order answered")
        o = await outcomes(js)

        async def journaled() -> bool:  # fills delivered to the killed process come again after the ack wait
            return (await fold(js)).position("MSFT") == o.portfolio().quantity("MSFT")

        await wait_for(journaled, 30, "the authority to journal every fill")
        raw_intents = await read_stream(js, "DECISIONS", Subject.ORDER_INTENT.value)
        account = await fold(js)
    per_signal = Counter([i.signal_id for i in o.intents.values()] + [d.signal_id for d in o.denials])
    assert per_signal == Counter({s.signal_id: 1 for s in signals}), "one outcome per signal, none lost or doubled"
    assert len(raw_intents) == len(o.intents), "no intent was published twice"
    assert set(account.intents) == set(o.intents), "the journal and the simulator's inbox hold the same orders"
    assert set(account.denials) == {d.client_order_id for d in o.denials}
    assert_every_intent_has_exactly_one_outcome(o)
    assert account.position("MSFT") == o.portfolio().quantity("MSFT")
    assert abs(account.position("MSFT")) <= 40 and not account.working


async def test_a_fresh_stdio_server_shows_exactly_what_the_running_server_shows(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    env = {"TRADING_MCP_CONFIRMATION": "token", "TRADING_MCP_MAX_SIGNAL_AGE_SECONDS": "3600"}
    execsim = Service(["execsim"], nats_server.url, tmp_path / "execsim.log")
    authority = Service(
        ["authority", *data, "--risk-limits-file", limits_file(tmp_path, max_position=1000, daily_loss_limit=100)],
        nats_server.url,
        tmp_path / "authority.log",
        env=env,
    )
    running = Service(
        ["serve", "--transport", "streamable-http", "--bridge", *data], nats_server.url, tmp_path / "s.log", env=env
    )
    stdio = StdioServerParameters(
        command=EXE,
        args=["serve", "--transport", "stdio", *data],
        env={**os.environ, "NATS_URL": nats_server.url, "TRADING_MCP_LOG_LEVEL": "WARNING"},
    )
    with services(running, authority, execsim):
        for s in (execsim, authority, running):
            await s.start()
        async with Client(streamable_http_client(f"http://127.0.0.1:{running.port}/mcp")) as http:
            for round_ in range(10):
                # traffic: a signal fill, a resting limit (cancelled every other round), a market order, a mark
                burst = [signal("AAPL", str(200 - round_ * 3), "buy", 1), signal("IBM", "120")]
                await publish_all(js, Subject.SIGNALS_NORMALIZED, burst, [s.signal_id for s in burst])
                rest = {"symbol": "IBM", "side": "buy", "quantity": "2", "order_type": "limit", "limit_price": "50"}
                await preview_and_place(http, {**rest, "time_in_force": "GTC", "client_order_id": f"r{round_}"})
                if round_ % 2:
                    await http.call_tool("cancel_order", {"client_order_id": f"r{round_ - 1}"})
                await preview_and_place(http, {"symbol": "IBM", "side": "sell", "quantity": "1"})
                async with Client(stdio) as fresh:
                    seen_fresh = await _views(fresh)
                    # both fold the same journal: once the running server has folded as far, they agree
                    await wait_for(lambda v=seen_fresh: _same(http, v), 15, f"round {round_}: the same account")
    last = seen_fresh
    assert last["status"]["trading_state"] == "REDUCING", "the AAPL marks fell 27 × 1..10: past the daily loss"
    assert last["status"]["state_reason"] == "daily_loss_limit"
    shown = {o["client_order_id"] for o in last["orders"]}  # type: ignore[index]
    assert {"r1", "r3", "r5", "r7"} <= shown <= {"r1", "r3", "r5", "r7", "r8", "r9"}, "cancelled ones are gone"
    assert not any(o["status"] == "submitted" for o in last["orders"]), "no phantom: every open order was accepted"


async def _views(client: Client) -> dict[str, object]:
    positions = (await client.call_tool("get_positions", {})).structured_content
    orders = (await client.call_tool("list_orders", {"status": "open"})).structured_content
    status = (await client.call_tool("get_risk_status", {})).structured_content
    return {"positions": positions["positions"], "orders": orders["orders"], "status": status}


async def _same(http: Client, fresh: dict[str, object]) -> bool:
    now = await _views(http)
    keys = ("trading_state", "state_reason", "peak_equity", "day_start_equity", "open_orders", "orders_in_window")
    return (
        now["positions"] == fresh["positions"]
        and now["orders"] == fresh["orders"]
        and all(now["status"][k] == fresh["status"][k] for k in keys)  # type: ignore[index]
    )
