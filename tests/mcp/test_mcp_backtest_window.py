"""run_backtest covers the window it is given (the demo's bars, like for like) and starts from the live paper
account's cash and costs."""

from __future__ import annotations

from decimal import Decimal

from mcp import Client

from authority.settings import AuthoritySettings
from mcp_server.server import build_server
from tests.mcp.helpers import offline_state


async def test_run_backtest_covers_only_the_window_and_defaults_to_the_paper_accounts_cash() -> None:
    async with Client(build_server(offline_state(), toolsets_enabled=["all"])) as client:
        first = await client.call_tool(
            "run_backtest", {"symbol": "bundled:AAPL", "strategy": "hybrid", "start": "2000-03-01", "bars": 500}
        )
        last = await client.call_tool("run_backtest", {"symbol": "bundled:AAPL", "strategy": "hybrid", "bars": 300})
        bad = await client.call_tool(
            "run_backtest", {"symbol": "bundled:AAPL", "strategy": "hybrid", "start": "2001-02-30"}
        )
    body = first.structured_content
    assert not first.is_error and (body["bars"], body["stats"]["bars"]) == (500, 500)
    assert body["first_bar"].startswith("2000-03-01") and body["last_bar"].startswith("2002-02-28")
    assert Decimal(body["cash"]) == AuthoritySettings.model_fields["starting_cash"].default == 100_000
    assert Decimal(body["commission"]) == 0
    tail = last.structured_content
    assert tail["bars"] == 300 and tail["last_bar"].startswith("2013-03-01")
    assert bad.is_error and bad.content[0].text.startswith("invalid_arguments: start must be an ISO date")
