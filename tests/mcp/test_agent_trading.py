"""The agent trades only through the MCP order tools: preview -> token -> place -> a real simulated fill; an order
over the risk limit is a tool error with nothing published; dry run has no order tools; and the bridge's
`agent` decision mode runs this agent inside `trading-mcp serve --bridge`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from anthropic import AsyncAnthropic
from mcp import Client

from bus.account_view import AppState
from bus.embedded import EmbeddedNats, free_port
from bus.jetstream import connect, ensure_streams, publish
from decisions.agent.loop import AgentLoop, Budget, agent_tools
from mcp_server.server import build_server
from mcp_server.tooling import ToolOptions
from prompts.loader import load
from schemas.agent import AgentDecision
from schemas.orders import OrderIntent, RiskDenied
from schemas.subjects import Subject
from scripts.messages_stub import MessagesStub, Turn, _message, answer, tool_use
from tests.conftest import serve_uvicorn, stream_count, wait_for
from tests.execsim.process_helpers import Service
from tests.mcp.helpers import ORDER_TOOLS, add_signal, live_account, offline_state, publish_signal
from tools.risk import RiskLimits

EXE = str(Path(sys.executable).parent / "trading-mcp")
API_KEY = "sk-test-not-a-real-key"
TOKEN = re.compile(r"confirmation_token=(ct2:\d+:[0-9]+-[A-Z]+:[0-9.-]+:[0-9a-f]{64})")
ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "3"}
DECISION = json.dumps({"action": "buy", "quantity": "3", "confidence": 0.6, "rationale": "Placed after preview."})


def place_with_previewed_token(order: dict[str, Any]) -> Turn:
    """A model turn that reads the token from the preview_order result it was just sent, then places the order."""

    def turn(n: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        results = [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]
        text = "".join(c["text"] for c in results[0]["content"]) if results else ""
        match = TOKEN.search(text)
        arguments = {**order, "confirmation_token": match.group(1) if match else "none-seen"}
        block = {"type": "tool_use", "id": f"toolu_{n}", "name": "place_order", "input": arguments}
        return 200, _message(n, [block], "tool_use", (100, 20))

    return turn


@contextlib.asynccontextmanager
async def agent(
    state: AppState, script: list[Turn], *, options: ToolOptions | None = None, dry_run: bool = False
) -> AsyncIterator[tuple[AgentLoop, MessagesStub]]:
    stub = MessagesStub(script)
    port = free_port()
    server = build_server(state, read_only=dry_run, options=options or ToolOptions(origin="agent"))
    async with (
        serve_uvicorn(stub.app(), port) as base,
        Client(server) as mcp,
        AsyncAnthropic(api_key=API_KEY, base_url=base, max_retries=0) as client,
    ):
        loop = AgentLoop(
            client=client,
            session=mcp.session,
            tools=agent_tools(list((await mcp.list_tools()).tools), dry_run=dry_run),
            model="stub-model",
            budget=Budget(6, 50_000, 512),
            system_prompt=load("agent_system").render(),
            signal_prompt=load("agent_signal"),
            dry_run=dry_run,
        )
        yield loop, stub


async def test_a_model_that_previews_then_places_with_the_token_gets_a_simulated_fill(
    nats_server: EmbeddedNats,
) -> None:
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="150", action="buy", quantity=Decimal(3))
        (signal,) = acct.state.signals.recent(1, "AAPL")
        script = [tool_use("preview_order", ORDER), place_with_previewed_token(ORDER), answer(DECISION)]
        async with agent(acct.state, script) as (loop, stub):
            decision = await loop.decide(signal)
        await wait_for(lambda: acct.state.portfolio.quantity("AAPL") == 3, 10, "the simulated fill")
        msg = await acct.state.js.get_last_msg("DECISIONS", Subject.ORDER_INTENT.value)
        assert await stream_count(acct.state.js, "DECISIONS", Subject.ORDER_INTENT.value) == 1
    assert decision.tools_used == ["preview_order", "place_order"] and decision.action == "buy"
    placed = stub.tool_results(2)[0]
    assert placed.startswith("Placed (simulated): agent-") and "buy 3 AAPL market" in placed
    intent = OrderIntent.model_validate_json(msg.data)
    assert (intent.origin, intent.symbol, intent.quantity, intent.reference_price) == (
        "agent",
        "AAPL",
        Decimal(3),
        Decimal(150),
    )
    fill = acct.state.portfolio.fills[-1]
    assert (fill.client_order_id, fill.price) == (intent.client_order_id, Decimal(150))


async def test_a_model_that_orders_over_the_risk_limit_gets_a_tool_error_and_no_intent_is_published(
    nats_server: EmbeddedNats,
) -> None:
    limits = RiskLimits(max_position=Decimal(10))
    big = {**ORDER, "quantity": "50"}
    async with live_account(nats_server.url, limits) as acct:
        await publish_signal(acct.state, 1, price="150", action="buy", quantity=Decimal(50))
        (signal,) = acct.state.signals.recent(1, "AAPL")
        # confirmation on: the preview denies and issues no token, so the place attempt cannot even be confirmed
        script = [tool_use("preview_order", big), place_with_previewed_token(big), answer(DECISION)]
        async with agent(acct.state, script) as (loop, stub):
            await loop.decide(signal)
        preview, refused = stub.tool_results(1)[0], stub.tool_results(2)[0]
        # confirmation off: the gate itself refuses the order
        direct = [tool_use("place_order", big), answer(DECISION)]
        async with agent(acct.state, direct, options=ToolOptions(confirmation="auto", origin="agent")) as (
            loop,
            denied_stub,
        ):
            await loop.decide(signal)
        await wait_for(
            lambda: stream_count(acct.state.js, "DECISIONS", Subject.RISK_DENIED.value), 10, "the denial record"
        )
        denial = RiskDenied.model_validate_json(
            (await acct.state.js.get_last_msg("DECISIONS", Subject.RISK_DENIED.value)).data
        )
        assert await stream_count(acct.state.js, "DECISIONS", Subject.ORDER_INTENT.value) == 0
    assert "would DENY (max_position:" in preview
    assert refused.startswith("confirmation_invalid:")
    (result,) = [b for b in denied_stub.requests[1]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert result["is_error"] is True, denied_stub.tool_results(1)
    assert denied_stub.tool_results(1)[0].startswith("risk_denied: max_position: buy 50 AAPL could make the position")
    assert (denial.reason_code, denial.origin, denial.quantity) == ("max_position", "agent", Decimal(50))
    assert acct.state.orders == {} and not acct.state.portfolio.fills and acct.state.portfolio.fill_count == 0


async def test_a_dry_run_agent_is_never_offered_an_order_tool() -> None:
    state = offline_state()
    signal = add_signal(state, 1, action="buy", quantity=Decimal(1))
    async with agent(state, [answer(DECISION)], dry_run=True) as (loop, stub):
        decision = await loop.decide(signal)
        listed = {t.name for t in (await loop.session.list_tools()).tools}
        attempt = await loop.session.call_tool("place_order", ORDER)
    offered = {t["name"] for t in stub.requests[0]["tools"]}
    assert offered and not offered & ORDER_TOOLS and "check_order" in offered
    assert not listed & ORDER_TOOLS, "the server itself is read-only, not just the list handed to the model"
    assert attempt.is_error and attempt.content[0].text.startswith("unknown_tool: there is no tool 'place_order'")
    assert decision.dry_run is True


def _serve_env(nats: EmbeddedNats, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    return {**env, "NATS_URL": nats.url, "TRADING_MCP_BRIDGE_MODE": "agent", **extra}


def test_serve_in_agent_bridge_mode_refuses_to_start_without_an_api_key(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    done = subprocess.run(
        [EXE, "serve", "--data-dir", str(tmp_path), "--bridge", "--transport", "streamable-http"],
        env={**_serve_env(nats_server), "TRADING_MCP_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "the agent needs an Anthropic API key: set ANTHROPIC_API_KEY" in done.stderr


async def test_serve_in_agent_bridge_mode_decides_each_signal_with_the_agent_through_the_shared_gate(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    stub = MessagesStub([tool_use("preview_order", ORDER), place_with_previewed_token(ORDER), answer(DECISION)])
    nc = await connect(nats_server.url, "agent-mode-test")
    js = nc.jetstream()
    await ensure_streams(js)
    port = free_port()
    env = _serve_env(
        nats_server,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}",
        TRADING_MCP_PORT=str(free_port()),
    )
    args = ["serve", "--data-dir", str(tmp_path), "--bridge", "--transport", "streamable-http"]
    authority = Service(["authority", "--data-dir", str(tmp_path)], nats_server.url, tmp_path / "authority.log")
    try:
        await authority.start()  # the agent's orders are decided by the account authority
        async with serve_uvicorn(stub.app(), port):
            proc = subprocess.Popen([EXE, *args], env=env)
            try:

                async def consuming() -> bool:
                    assert proc.poll() is None, "serve exited"
                    try:
                        await js.consumer_info("SIGNALS", "agent")
                    except Exception:
                        return False
                    return True

                await wait_for(consuming, 30, "the agent's consumer (it trades new signals only)")
                s = add_signal(offline_state(), 9, price="120", action="buy", quantity=Decimal(3)).model_copy(
                    update={"fired_at": datetime.now(UTC)}
                )
                await publish(js, Subject.SIGNALS_NORMALIZED, s, msg_id=s.signal_id, correlation_id=s.correlation_id)

                async def decided() -> bool:
                    assert proc.poll() is None, "serve exited"
                    return await stream_count(js, "DECISIONS", Subject.AGENT_DECISION.value) == 1

                await wait_for(decided, 30, "the agent's decision from serve --bridge")
            finally:
                proc.terminate()
                proc.wait(15)
        decision = AgentDecision.model_validate_json((await js.get_last_msg("DECISIONS", "decisions.agent")).data)
        intent = OrderIntent.model_validate_json((await js.get_last_msg("DECISIONS", "decisions.order_intent")).data)
        intents = await stream_count(js, "DECISIONS", Subject.ORDER_INTENT.value)
    finally:
        authority.stop()
        await nc.close()
    assert (decision.signal_id, decision.tools_used) == ("sig_9", ["preview_order", "place_order"])
    assert (intent.origin, intent.quantity, intents) == ("agent", Decimal(3), 1), "the agent, not the follow rule"
