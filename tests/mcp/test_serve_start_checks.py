"""`serve` imports the decision modes only when they have something to check or run (cli.serve.decides); a bad
strategy configuration is still refused before anything connects, with or without a bridge."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.serve import decides, run_serve
from decisions.settings import ConfigError, DecisionSettings
from mcp_server.settings import ServeSettings
from schemas.accounts import AccountConfig, AccountsFile

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
