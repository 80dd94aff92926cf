"""Pure pieces of the gateway: signatures, client addresses, token buckets, JSON parsing, models, settings."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway import signing
from gateway.client_ip import allowed, client_ip
from gateway.errors import Problem
from gateway.ingest import parse_object, tradingview_content, tradingview_signal_id
from gateway.models import TradingViewAlert
from gateway.ratelimit import RateLimiter
from gateway.settings import GatewaySettings
from gateway.sources import TRADINGVIEW_IPS, SourceConfig, parse_networks
from tests.gateway.kit import SECRET, TV_SECRET, tv_alert
from tools.clock import TestClock

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])


def test_a_signature_verifies_only_for_the_same_id_timestamp_body_and_an_active_secret() -> None:
    sig = signing.sign(SECRET, "m1", 1700000000, b"{}")
    assert signing.verify([SECRET], "m1", 1700000000, b"{}", sig)
    assert signing.verify(["whsec_" + "B" * 44, SECRET], "m1", 1700000000, b"{}", f"v1,AAAA {sig}")
    for args in (("m2", 1700000000, b"{}"), ("m1", 1700000001, b"{}"), ("m1", 1700000000, b"{ }")):
        assert not signing.verify([SECRET], *args, sig)
    assert not signing.verify([SECRET], "m1", 1700000000, b"{}", sig.replace("v1,", "v2,"))
    assert not signing.verify([SECRET], "m1", 1700000000, b"{}", "")


def test_forwarded_for_counts_only_when_the_peer_is_a_trusted_proxy() -> None:
    ip = ipaddress.ip_address
    assert client_ip("203.0.113.9", ["52.89.214.238"], PROXIES) == ip("203.0.113.9")
    assert client_ip("10.1.2.3", ["52.89.214.238"], PROXIES) == ip("52.89.214.238")
    assert client_ip("10.1.2.3", ["1.1.1.1, 52.89.214.238, 10.9.9.9"], PROXIES) == ip("52.89.214.238")
    assert client_ip("10.1.2.3", ["1.1.1.1", "10.9.9.9"], PROXIES) == ip("1.1.1.1")
    assert client_ip("10.1.2.3", ["junk, 10.9.9.9"], PROXIES) is None
    assert client_ip("10.1.2.3", [], PROXIES) == ip("10.1.2.3")
    assert client_ip("fd00::1", ["2001:db8::7"], PROXIES) == ip("2001:db8::7")
    assert client_ip(None, ["1.1.1.1"], PROXIES) is None


def test_the_tradingview_preset_allows_exactly_its_four_addresses() -> None:
    preset = parse_networks(["tradingview"])
    assert len(TRADINGVIEW_IPS) == 4
    for address in ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7"):
        assert allowed(ipaddress.ip_address(address), preset)
    assert not allowed(ipaddress.ip_address("52.89.214.239"), preset)
    assert not allowed(ipaddress.ip_address("::1"), preset)
    assert not allowed(None, preset)
    assert allowed(None, ())  # no allowlist: anyone


def test_a_token_bucket_allows_its_burst_then_waits_for_refill_on_the_injected_clock() -> None:
    clock = TestClock()
    limiter = RateLimiter(clock, [SourceConfig(name="s", secrets=(SECRET,), rate_per_s=2, burst=3)])
    assert [limiter.wait_s("s") for _ in range(3)] == [0, 0, 0]
    assert limiter.wait_s("s") == pytest.approx(0.5)
    clock.advance(0.5)
    assert limiter.wait_s("s") == 0
    clock.advance(100)
    assert [limiter.wait_s("s") for _ in range(4)][-1] > 0  # refill is capped at the burst
    assert limiter.wait_s("unlimited") == 0


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'"s"', b"\xff\xfe{}", b'{"p": NaN}', b'{"p": -Infinity}', b"[" * 100_000, b"1" * 5000],
)
def test_bodies_that_are_not_one_json_object_are_malformed(body: bytes) -> None:
    with pytest.raises(Problem) as refused:
        parse_object(body)
    assert refused.value.code == "malformed_json"


def test_json_numbers_are_parsed_as_exact_decimals() -> None:
    assert parse_object(b'{"p": 0.1, "q": 3}') == {"p": Decimal("0.1"), "q": 3}


def test_a_tradingview_alert_maps_every_placeholder_to_the_normalized_signal() -> None:
    payload = parse_object(json.dumps(tv_alert(secret=None, volume=0)).encode())
    alert = TradingViewAlert.model_validate(payload)
    now = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
    signal = alert.normalize(signal_id="sig_1", source="tv", received_at=now, correlation_id="c")
    assert (signal.symbol, signal.price, signal.quantity, signal.volume) == (
        "BTCUSD",
        Decimal("64100.75"),
        Decimal("0.5"),
        None,
    )
    assert (signal.order_id, signal.position_size, signal.market_position) == ("Long entry", Decimal("0.5"), "long")
    assert signal.signal_time == datetime(2026, 1, 2, 14, 15, tzinfo=UTC)
    assert signal.alert_time == datetime(2026, 1, 2, 14, 30, 1, tzinfo=UTC)


def test_tradingview_actions_and_positions_are_case_insensitive_and_price_overrides_close() -> None:
    alert = TradingViewAlert.model_validate(tv_alert(secret=None, action="SELL", market_position="Flat", price=5))
    assert (alert.action, alert.market_position) == ("sell", "flat")
    signal = alert.normalize(signal_id="s", source="tv", received_at=datetime.now(UTC), correlation_id="c")
    assert signal.price == 5


def test_a_tradingview_alert_needs_a_price_and_rejects_naive_times() -> None:
    with pytest.raises(ValidationError, match="price or close"):
        TradingViewAlert.model_validate(tv_alert(secret=None, close=None))
    with pytest.raises(ValidationError, match="timezone"):
        TradingViewAlert.model_validate(tv_alert(secret=None, time="2026-01-02T14:15:00"))


def test_the_tradingview_content_id_ignores_member_order_and_changes_with_any_value() -> None:
    a = tradingview_content({"ticker": "A", "close": Decimal("1.5")})
    b = tradingview_content({"close": Decimal("1.5"), "ticker": "A"})
    c = tradingview_content({"close": Decimal("1.5"), "ticker": "A", "timenow": "2026-01-02T14:30:00Z"})
    assert a == b and tradingview_signal_id("tv", a) == tradingview_signal_id("tv", b)
    assert tradingview_signal_id("tv", a) != tradingview_signal_id("tv", c)
    assert tradingview_signal_id("tv", a) != tradingview_signal_id("other", a)


def test_sources_come_from_a_toml_file_and_the_single_secret_shortcut(tmp_path: Path) -> None:
    (tmp_path / "sources.toml").write_text(
        f"""
trusted_proxies = ["10.0.0.0/8"]
[[sources]]
name = "tradingview"
mode = "tradingview"
secrets = ["{TV_SECRET}"]
allowed_ips = ["tradingview", "192.0.2.0/24"]
rate_per_s = 2
"""
    )
    (tmp_path / "webhook_secret").write_text(SECRET + "\n")
    settings = GatewaySettings(nats_url="nats://x:1", data_dir=tmp_path)
    assert [s.name for s in settings.sources] == ["tradingview", "default"]
    tv = settings.source_named("tradingview")
    assert tv is not None and len(tv.networks) == 5 and tv.rate_per_s == 2
    assert settings.source_named("default").secrets == (SECRET,)  # type: ignore[union-attr]
    assert settings.trusted_proxies == ["10.0.0.0/8"]
    assert TV_SECRET not in repr(tv) and SECRET not in repr(settings.sources)
    assert SECRET not in repr(settings) and SECRET not in str(settings)


def test_sources_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_MCP_SOURCES", json.dumps([{"name": "bot", "secrets": [SECRET]}]))
    settings = GatewaySettings(nats_url="nats://x:1")
    assert [s.name for s in settings.sources] == ["bot"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no webhook source"),
        ({"webhook_secret": "changeme"}, "placeholder"),
        ({"sources": [{"name": "a", "secrets": ["short"]}]}, "placeholder or shorter"),
        ({"sources": [{"name": "a", "secrets": [SECRET], "allowed_ips": ["10.0.0.300/8"]}]}, "CIDR"),
        ({"sources": [{"name": "a", "secrets": [SECRET]}, {"name": "a", "secrets": [SECRET]}]}, "unique"),
        ({"sources": [{"name": "Bad Name", "secrets": [SECRET]}]}, "pattern"),
        ({"sources": [{"name": "a", "secrets": [SECRET], "allowed_symbols": ["btc usd"]}]}, "never match"),
        ({"webhook_secret": SECRET, "publish_timeout_s": 3}, "1.5"),
    ],
)
def test_bad_configuration_is_refused_at_start_up_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GatewaySettings(nats_url="nats://x:1", **kwargs)
