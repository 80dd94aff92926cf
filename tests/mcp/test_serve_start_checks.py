"""How `serve` starts fast and still right: the decision modes are imported only when they have something to check
or run (cli.serve.decides), and a bad strategy configuration is still refused before anything connects; a stdio
server answers tools/list while its account is folded, and holds every tool call and resource read until then."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp import Client

from cli.serve import decides, run_serve
from decisions.settings import ConfigError, DecisionSettings
from mcp_server.server import build_server
from mcp_server.settings import ServeSettings
from schemas.accounts import AccountConfig, AccountsFile
from tests.mcp.helpers import add_fill, offline_state

NO_NATS = "nats://127.0.0.1:1"  # nothing listens: a check that passed would fail later, on connecting


def settings(tmp_path: Path, **decision: object) -> tuple[ServeSettings, DecisionSettings]:
    return (
        ServeSettings(data_dir=tmp_path, NATS_URL=NO_NATS, transport="stdio"),
        DecisionSettings(data_dir=tmp_path, **decision),
    )


def test_a_plain_stdio_server_has_no_decision_mode_to_check(tmp_path: Path) -> None:
    def modes(**given: object) -> DecisionSettings:
        return DecisionSettings(data_dir=tmp_path, **given)

    one = AccountsFile(accounts=[AccountConfig(id="paper")])
    assert not decides(modes(), one)
    assert not decides(modes(bridge_mode="agent"), one)  # the agent is checked only when it runs
    assert decides(modes(bridge=True), one)
    assert decides(modes(bridge_mode="strategy"), one)
    mixed = AccountsFile(accounts=[AccountConfig(id="paper"), AccountConfig(id="momo", mode="strategy")])
    assert decides(modes(), mixed)


async def test_serve_without_a_bridge_still_refuses_a_strategy_mode_that_is_not_json(tmp_path: Path) -> None:
    serve, decision = settings(tmp_path, bridge_mode="strategy", strategies="{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        await run_serve(serve, decision)


async def test_serve_refuses_an_accounts_file_strategy_that_is_not_json_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "accounts.toml").write_text(
        '[[accounts]]\nid = "paper"\n\n[[accounts]]\nid = "momo"\nmode = "strategy"\n'
        'strategies = { "*" = { strategy = "no_such_strategy" } }\n'
    )
    serve, decision = settings(tmp_path)
    with pytest.raises(ConfigError, match="account momo"):
        await run_serve(serve, decision)


async def test_a_server_folding_its_account_lists_tools_but_holds_every_tool_call_and_read_until_caught_up() -> None:
    state = offline_state()
    server = build_server(state)
    caught_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    server.answer_after(caught_up)
    async with Client(server) as client:
        assert "get_positions" in {t.name for t in (await client.list_tools()).tools}  # answered while folding
        call = asyncio.create_task(client.call_tool("get_positions", {}))
        read = asyncio.create_task(client.read_resource("portfolio://positions"))
        done, _ = await asyncio.wait({call, read}, timeout=0.2)  # neither is answered before the fold is done
        assert not done
        add_fill(state, 1, "buy", "3", "100")  # the fold's last entry, applied before it catches up
        caught_up.set_result(None)
        positions = (await asyncio.wait_for(call, 5)).structured_content
        assert positions is not None and positions["positions"][0]["quantity"] == "3"
        assert "AAPL" in str((await asyncio.wait_for(read, 5)).contents[0])
