"""Sources route signals to accounts: the source's `accounts`, per symbol `symbol_accounts`, default paper. The
gateway stores each accepted signal once, naming every account it feeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bus.embedded import EmbeddedNats
from gateway.settings import GatewaySettings
from gateway.sources import SourceConfig, load_sources_file
from schemas.common import DEFAULT_ACCOUNT
from schemas.signals import NormalizedSignal
from tests.conftest import stream_count
from tests.gateway.kit import SECRET, TV_SECRET, running_gateway, settings_for, stored_signals, tv_alert


def source(**routing: object) -> SourceConfig:
    return SourceConfig.model_validate({"name": "bot", "secrets": [SECRET], **routing})


# ------------------------------------------------------------------ routing, unit


def test_a_source_without_routing_feeds_the_default_account() -> None:
    assert source().accounts_for("AAPL") == [DEFAULT_ACCOUNT] == ["paper"]


def test_a_source_routed_to_two_accounts_feeds_both_in_the_order_written() -> None:
    routed = source(accounts=["momo", "meanrev"])
    assert routed.accounts_for("AAPL") == routed.accounts_for("BTCUSD") == ["momo", "meanrev"]


def test_a_symbol_of_symbol_accounts_goes_to_its_own_accounts_and_the_others_to_the_sources() -> None:
    routed = source(accounts=["momo", "meanrev"], symbol_accounts={"BTCUSD": ["crypto"]})
    assert routed.accounts_for("BTCUSD") == ["crypto"]
    assert routed.accounts_for("AAPL") == ["momo", "meanrev"]


def test_the_star_of_symbol_accounts_takes_every_symbol_not_named() -> None:
    routed = source(symbol_accounts={"BTCUSD": ["crypto"], "*": ["equities", "paper"]})
    assert routed.accounts_for("BTCUSD") == ["crypto"]
    assert routed.accounts_for("AAPL") == ["equities", "paper"]


def test_the_routing_of_a_toml_sources_file(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        f'[[sources]]\nname = "tv"\nmode = "tradingview"\nsecrets = ["{TV_SECRET}"]\n'
        'accounts = ["momo", "meanrev"]\nsymbol_accounts = { BTCUSD = ["crypto"] }\n'
        f'[[sources]]\nname = "scripts"\nsecrets = ["{SECRET}"]\n'
    )
    [tv, scripts], _ = load_sources_file(path)
    assert (tv.accounts_for("AAPL"), tv.accounts_for("BTCUSD")) == (["momo", "meanrev"], ["crypto"])
    assert scripts.accounts_for("AAPL") == ["paper"]


def test_every_routing_the_sources_accept_is_an_accounts_list_a_signal_accepts() -> None:
    routed = source(accounts=[f"a{i}" for i in range(32)])
    NormalizedSignal.model_validate(
        {
            "signal_id": "sig_1",
            "source": "bot",
            "symbol": "AAPL",
            "price": "1",
            "received_at": "2026-01-02T14:30:00Z",
            "correlation_id": "c",
            "accounts": routed.accounts_for("AAPL"),
        }
    )
    with pytest.raises(ValidationError, match="at most 32"):
        source(accounts=[f"a{i}" for i in range(33)])


# ------------------------------------------------------------------ the environment form


def default_source() -> SourceConfig:
    found = GatewaySettings(nats_url="nats://x:1").source_named("default")
    assert found is not None
    return found


def test_the_single_secret_source_takes_its_accounts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_MCP_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TRADING_MCP_SOURCE_ACCOUNTS", "momo, meanrev")
    assert default_source().accounts_for("AAPL") == ["momo", "meanrev"]
    monkeypatch.setenv("TRADING_MCP_SOURCE_ACCOUNTS", '["crypto"]')
    assert default_source().accounts_for("AAPL") == ["crypto"]
    monkeypatch.delenv("TRADING_MCP_SOURCE_ACCOUNTS")
    assert default_source().accounts_for("AAPL") == ["paper"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("momo,momo", "TRADING_MCP_SOURCE_ACCOUNTS: 'momo' is listed twice"),
        ("momo,bad id", "TRADING_MCP_SOURCE_ACCOUNTS: 'bad id' is not an account id"),
        (" , ", "TRADING_MCP_SOURCE_ACCOUNTS: the list is empty"),
    ],
)
def test_a_bad_accounts_variable_is_refused_naming_it_and_the_value(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("TRADING_MCP_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TRADING_MCP_SOURCE_ACCOUNTS", value)
    with pytest.raises(ValidationError, match=expected):
        GatewaySettings(nats_url="nats://x:1")


def test_the_accounts_variable_is_refused_when_no_single_secret_source_would_use_it() -> None:
    with pytest.raises(ValidationError, match="TRADING_MCP_SOURCE_ACCOUNTS routes the single-secret source"):
        GatewaySettings(nats_url="nats://x:1", sources=[source()], source_accounts="momo")


def test_json_sources_in_the_environment_carry_their_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "TRADING_MCP_SOURCES",
        f'[{{"name": "bot", "secrets": ["{SECRET}"], "accounts": ["momo"], "symbol_accounts": {{"ETHUSD": ["x"]}}}}]',
    )
    bot = GatewaySettings(nats_url="nats://x:1").source_named("bot")
    assert bot is not None and (bot.accounts_for("AAPL"), bot.accounts_for("ETHUSD")) == (["momo"], ["x"])


# ------------------------------------------------------------------ through the real gateway


async def test_a_signal_from_a_source_routed_to_two_accounts_is_stored_once_naming_both(
    nats_server: EmbeddedNats, http, js
) -> None:
    routed = SourceConfig(
        name="pair",
        secrets=(SECRET,),
        allowed_symbols=frozenset({"AAPL", "BTCUSD"}),
        accounts=("momo", "meanrev"),
        symbol_accounts={"BTCUSD": ("crypto",)},
    )
    tv = SourceConfig(name="tv", mode="tradingview", secrets=(TV_SECRET,), symbol_accounts={"*": ("tvbot",)})
    plain = SourceConfig(name="default", secrets=(SECRET,))
    async with running_gateway(settings_for(nats_server.url, sources=[routed, tv, plain])) as gw:
        aapl = {"symbol": "AAPL", "price": "190.25", "action": "buy", "quantity": 10}
        first = await gw.send(http, aapl, "pair", msg_id="msg_aapl")
        again = await gw.send(http, aapl, "pair", msg_id="msg_aapl")
        assert first.status_code == again.status_code == 202
        assert again.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
        btc = await gw.send(http, {"symbol": "BTCUSD", "price": "64000"}, "pair")
        refused = await gw.send(http, {"symbol": "ETHUSD", "price": "3000"}, "pair")
        assert btc.status_code == 202 and refused.status_code == 403
        assert refused.json()["code"] == "symbol_not_allowed"
        assert (await gw.tradingview(http, tv_alert(), source="tv")).status_code == 202
        assert (await gw.send(http, aapl)).status_code == 202

    stored = [body for _, body in await stored_signals(js)]
    assert await stream_count(js, "SIGNALS") == len(stored) == 4
    assert [(s["source"], s["symbol"], s["accounts"]) for s in stored] == [
        ("pair", "AAPL", ["momo", "meanrev"]),
        ("pair", "BTCUSD", ["crypto"]),
        ("tv", "BTCUSD", ["tvbot"]),
        ("default", "AAPL", ["paper"]),
    ]
    assert stored[0]["signal_id"] == first.json()["signal_id"]
    assert NormalizedSignal.model_validate(stored[0]).accounts == ["momo", "meanrev"]
