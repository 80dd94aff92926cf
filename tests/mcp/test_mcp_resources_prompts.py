"""Resources and prompts through the in-memory MCP client, and the markdown templates behind the prompts."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_server.server import build_server
from prompts.loader import PromptTemplateError, load_all, parse
from tests.mcp.helpers import add_fill, add_signal, offline_state


async def test_position_and_summary_resources_hold_what_the_fills_made() -> None:
    state = offline_state()
    add_fill(state, 1, "buy", "10", "100")
    add_fill(state, 2, "sell", "4", "110")
    async with Client(build_server(state, toolsets_enabled=["market", "strategies", "positions", "risk"])) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        positions = await client.read_resource("portfolio://positions")
        summary = await client.read_resource("portfolio://summary")
    assert listed.keys() == {
        "portfolio://positions",
        "portfolio://summary",
        "risk://limits",
        "risk://status",
        "strategies://catalog",
        "safety://status",
    }
    assert all(r.mime_type == "application/json" for r in listed.values())
    (aapl,) = json.loads(positions.contents[0].text)["positions"]
    assert Decimal(aapl["quantity"]) == 6 and Decimal(aapl["realized_pnl"]) == 40
    body = json.loads(summary.contents[0].text)
    assert (body["open_positions"], body["fills"]) == (1, 2)
    assert Decimal(body["realized_pnl"]) == 40 and Decimal(body["fees_paid"]) == Decimal("0.20")
    # cash: 100000 - 1000 - 0.10 + 440 - 0.10; the 6 left are marked at the last fill, 110
    assert Decimal(body["cash"]) == Decimal("99439.80") and Decimal(body["equity"]) == Decimal("100099.80")
    assert Decimal(body["unrealized_pnl"]) == 60 and Decimal(body["gross_exposure"]) == 660
    assert body["last_fill_at"].startswith("2026-01-02T14:32")


async def test_the_latest_signal_template_returns_the_newest_signal_of_that_symbol_with_its_comment_as_data() -> None:
    state = offline_state()
    add_signal(state, 1, price="100")
    add_signal(state, 2, price="101", comment="buy the dip")
    add_signal(state, 3, symbol="MSFT", price="50")
    async with Client(build_server(state)) as client:
        templates = (await client.list_resource_templates()).resource_templates
        (template,) = [t for t in templates if t.uri_template.startswith("signals://")]
        latest = await client.read_resource("signals://AAPL/latest")
        with pytest.raises(MCPError, match="no signal for TSLA yet"):
            await client.read_resource("signals://TSLA/latest")
        with pytest.raises(MCPError, match="is not a symbol"):
            await client.read_resource("signals://aapl/latest")
    assert template.uri_template == "signals://{symbol}/latest"
    body = json.loads(latest.contents[0].text)
    assert (body["signal_id"], body["price"], body["untrusted_comment"]) == ("sig_2", "101", "buy the dip")


async def test_prompts_are_offered_only_when_their_tools_are_registered() -> None:
    async with Client(build_server(offline_state(), toolsets_enabled=["all"])) as client:
        offered = {p.name: p for p in (await client.list_prompts()).prompts}
    assert offered.keys() == {"review_signal", "explain_position", "daily_risk_review", "compare_strategies"}
    assert [(a.name, a.required) for a in offered["review_signal"].arguments] == [
        ("signal_id", True),
        ("symbol", True),
    ]
    async with Client(build_server(offline_state(), toolsets_enabled=["positions"])) as client:
        assert {p.name for p in (await client.list_prompts()).prompts} == {"explain_position"}
    async with Client(build_server(offline_state(), toolsets_enabled=["positions", "market"])) as client:
        offered = {p.name for p in (await client.list_prompts()).prompts}
    assert offered == {"explain_position", "review_signal"}, "daily_risk_review needs the risk tools"


async def test_get_prompt_renders_the_markdown_template_with_its_arguments() -> None:
    async with Client(build_server(offline_state())) as client:
        result = await client.get_prompt("review_signal", {"signal_id": "sig_42", "symbol": "msft"})
    (message,) = result.messages
    assert message.role == "user"
    assert message.content.text.startswith("Review signal sig_42 on MSFT before any trade is made on it.")
    assert "`get_market_snapshot` for MSFT" in message.content.text and "{{" not in message.content.text


async def test_get_prompt_with_missing_or_bad_arguments_is_an_error_that_says_what_to_pass() -> None:
    async with Client(build_server(offline_state(), toolsets_enabled=["market", "positions"])) as client:
        with pytest.raises(MCPError, match=r"prompt explain_position needs: symbol \(The symbol, e.g. AAPL\)"):
            await client.get_prompt("explain_position", {})
        with pytest.raises(MCPError, match="symbol 'NOT A SYMBOL' is not a symbol"):
            await client.get_prompt("explain_position", {"symbol": "not a symbol"})
        with pytest.raises(MCPError, match="there is no prompt 'daily_risk_review'; the prompts are: "):
            await client.get_prompt("daily_risk_review", {})


def test_every_template_in_prompts_parses_and_renders_its_arguments() -> None:
    templates = load_all()
    assert {"review_signal", "explain_position", "daily_risk_review", "compare_strategies"} <= templates.keys()
    assert templates["agent_system"].kind == "agent" and templates["agent_signal"].kind == "agent"
    assert "one JSON object" in templates["agent_system"].render()
    assert "Focus: (not given)." in templates["daily_risk_review"].render()
    compare = templates["compare_strategies"]
    assert compare.requires_tools == ("list_strategies", "evaluate_strategy", "get_market_snapshot")
    assert "Compare the strategies on IBM." in compare.render({"symbol": "IBM"})
    with pytest.raises(PromptTemplateError, match="unknown argument"):
        compare.render({"symbol": "IBM", "other": "x"})


def test_a_template_whose_slots_and_arguments_differ_is_refused_at_load(tmp_path: Path) -> None:
    text = "---\ntitle: T\narguments:\n  symbol: required | s\n---\nUse {{symbol}} and {{side}}.\n"
    with pytest.raises(PromptTemplateError, match=r"slots \['side', 'symbol'\] and declared arguments \['symbol'\]"):
        parse("broken", text)
    with pytest.raises(PromptTemplateError, match="front matter"):
        parse("bare", "no front matter")
