"""The thinnest complete path: signed webhook -> JetStream -> bridge -> execsim -> fill -> MCP get_positions."""

from __future__ import annotations

from decimal import Decimal

import httpx
from mcp import Client

from mcp_server.server import build_server
from tests.conftest import Pipeline, Webhook, stream_count, wait_for


async def _positions(client: Client) -> dict[str, dict[str, str]]:
    result = await client.call_tool("get_positions", {})
    assert not result.is_error
    return {p["symbol"]: p for p in result.structured_content["positions"]}


async def test_signed_webhook_becomes_a_fill_and_a_position_an_mcp_client_reads(
    gateway: Webhook, pipeline: Pipeline
) -> None:
    async with httpx.AsyncClient() as http, Client(build_server(pipeline.state)) as mcp:
        response = await gateway.send(http, {"symbol": "AAPL", "price": "190.25", "action": "buy", "quantity": 10})
        assert response.status_code == 202
        assert response.json()["duplicate"] is False
        signal_id = response.json()["signal_id"]

        async def has_position() -> bool:
            return "AAPL" in await _positions(mcp)

        await wait_for(has_position, 5, "AAPL position")
        aapl = (await _positions(mcp))["AAPL"]
        assert Decimal(aapl["quantity"]) == 10
        assert Decimal(aapl["avg_price"]) == Decimal("190.25")
        assert Decimal(aapl["realized_pnl"]) == 0

        signals = (await mcp.call_tool("list_signals", {})).structured_content["signals"]
        assert signals[0]["signal_id"] == signal_id and signals[0]["symbol"] == "AAPL"

        fills = (await mcp.call_tool("list_fills", {})).structured_content["fills"]
        assert len(fills) == 1
        fill = fills[0]
        assert (fill["symbol"], fill["side"], Decimal(fill["quantity"]), Decimal(fill["price"])) == (
            "AAPL",
            "buy",
            Decimal(10),
            Decimal("190.25"),
        )
        assert {"fee", "time"} <= fill.keys()


async def test_list_signals_is_newest_first_and_filters_by_symbol(gateway: Webhook, pipeline: Pipeline) -> None:
    async with httpx.AsyncClient() as http, Client(build_server(pipeline.state)) as mcp:
        for symbol, price in [("AAPL", "1"), ("MSFT", "2"), ("AAPL", "3")]:
            assert (await gateway.send(http, {"symbol": symbol, "price": price})).status_code == 202
        await wait_for(lambda: len(pipeline.state.signals.recent(10)) == 3, 5, "three signals")
        result = (await mcp.call_tool("list_signals", {"symbol": "AAPL"})).structured_content["signals"]
        assert [Decimal(s["price"]) for s in result] == [3, 1]
        limited = (await mcp.call_tool("list_signals", {"limit": 1})).structured_content["signals"]
        assert [Decimal(s["price"]) for s in limited] == [3]


async def test_the_same_webhook_id_is_a_duplicate_and_makes_no_second_fill(
    gateway: Webhook, pipeline: Pipeline, js
) -> None:
    payload = {"symbol": "AAPL", "price": "190.25", "action": "buy", "quantity": 10}
    async with httpx.AsyncClient() as http:
        first = await gateway.send(http, payload, msg_id="msg_dup_1")
        second = await gateway.send(http, payload, msg_id="msg_dup_1")
        assert first.status_code == second.status_code == 202
        assert second.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
        # a later, distinct signal is the barrier: once it is filled, the duplicate has had its chance
        barrier = await gateway.send(http, {"symbol": "MSFT", "price": "50", "action": "buy", "quantity": 1})
        assert barrier.status_code == 202
    await wait_for(lambda: pipeline.state.portfolio.quantity("MSFT") == 1, 5, "the barrier fill")
    assert pipeline.state.portfolio.quantity("AAPL") == 10
    assert await stream_count(js, "SIGNALS") == 2
    assert await stream_count(js, "EXECUTIONS", "executions.fill") == 2


async def test_a_bad_signature_is_401_with_a_stable_code_and_publishes_nothing(gateway: Webhook, js) -> None:
    async with httpx.AsyncClient() as http:
        response = await gateway.send(http, {"symbol": "AAPL", "price": "1"}, secret="whsec_" + "A" * 44)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_signature"
    assert await stream_count(js, "SIGNALS") == 0


async def test_a_sell_beyond_the_max_position_is_denied_by_the_risk_gate(
    gateway: Webhook, pipeline: Pipeline, js
) -> None:
    async with httpx.AsyncClient() as http:
        denied = await gateway.send(http, {"symbol": "AAPL", "price": "10", "action": "sell", "quantity": 101})
        assert denied.status_code == 202
        ok = await gateway.send(http, {"symbol": "AAPL", "price": "10", "action": "sell", "quantity": 100})
        assert ok.status_code == 202
    await wait_for(lambda: pipeline.state.portfolio.quantity("AAPL") == -100, 5, "the allowed short")
    assert await stream_count(js, "DECISIONS", "decisions.risk_denied") == 1
    assert await stream_count(js, "EXECUTIONS", "executions.fill") == 1


async def test_close_flattens_the_position(gateway: Webhook, pipeline: Pipeline) -> None:
    async with httpx.AsyncClient() as http:
        await gateway.send(http, {"symbol": "IBM", "price": "100", "action": "buy", "quantity": 7})
        await wait_for(lambda: pipeline.state.portfolio.quantity("IBM") == 7, 5, "IBM long")
        await gateway.send(http, {"symbol": "IBM", "price": "110", "action": "close"})
    await wait_for(lambda: pipeline.state.portfolio.quantity("IBM") == 0, 5, "IBM flat")
    ibm = pipeline.state.portfolio.positions["IBM"]
    assert ibm.realized_pnl == Decimal(70)


async def test_healthz_answers_200(gateway: Webhook) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(gateway.url.replace("/webhook", "/healthz"))
    assert response.status_code == 200
