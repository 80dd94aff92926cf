"""POST /webhook/tradingview: secret in the body, raw-byte parsing, content ids, IP allowlists, normalization."""

from __future__ import annotations

import contextlib
import json
import re
from decimal import Decimal
from pathlib import Path

from nats.js.errors import KeyNotFoundError

from tests.conftest import stream_count
from tests.gateway.kit import TV_SECRET, Gateway, running_gateway, settings_for, stored_signals, tv_alert
from tests.gateway.test_gateway_standard import problem

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_a_tradingview_alert_sent_as_text_plain_is_normalized_and_its_secret_never_stored(
    gw: Gateway, http, js
) -> None:
    response = await gw.tradingview(http, tv_alert())
    assert response.status_code == 202, response.text
    [(headers, signal)] = await stored_signals(js)
    assert headers["Nats-Msg-Id"] == signal["signal_id"] == response.json()["signal_id"]
    assert signal["source"] == "tradingview"
    assert (signal["symbol"], signal["exchange"], signal["interval"], signal["action"]) == (
        "BTCUSD",
        "BITSTAMP",
        "15",
        "buy",
    )
    assert Decimal(signal["price"]) == Decimal(signal["close"]) == Decimal("64100.75")
    assert Decimal(signal["quantity"]) == Decimal("0.5")
    assert (signal["order_id"], Decimal(signal["position_size"]), signal["market_position"]) == (
        "Long entry",
        Decimal("0.5"),
        "long",
    )
    assert signal["signal_time"] == "2026-01-02T14:15:00Z"
    assert signal["alert_time"] == "2026-01-02T14:30:01Z"
    raw = await js.get_msg("SIGNALS", 1)
    assert TV_SECRET.encode() not in raw.data and b"secret" not in raw.data


async def test_a_wrong_or_missing_secret_is_401_and_stores_nothing(gw: Gateway, http, js) -> None:
    problem(await gw.tradingview(http, tv_alert(secret="not-the-secret-000000")), 401, "invalid_secret")
    problem(await gw.tradingview(http, tv_alert(secret=None)), 401, "invalid_secret")
    problem(await gw.tradingview(http, tv_alert(secret=12345)), 401, "invalid_secret")
    assert await stream_count(js, "SIGNALS") == 0


async def test_tradingview_resending_the_same_alert_is_a_duplicate_and_a_new_alert_time_is_a_new_signal(
    gw: Gateway, http, js
) -> None:
    first = await gw.tradingview(http, tv_alert())
    resend = await gw.tradingview(http, tv_alert())
    assert resend.status_code == 202
    assert resend.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
    later = await gw.tradingview(http, tv_alert(timenow="2026-01-02T14:45:00Z"))
    assert later.json()["duplicate"] is False and later.json()["signal_id"] != first.json()["signal_id"]
    assert await stream_count(js, "SIGNALS") == 2


async def test_a_tradingview_alert_is_remembered_24_h_not_600_s_and_a_late_resend_stores_nothing(
    gw: Gateway, http, js
) -> None:
    first = (await gw.tradingview(http, tv_alert())).json()
    for later in (601, 23 * 3600):  # past the Standard Webhooks window, then nearly a day on the gateway's clock
        gw.clock.advance(later)
        resend = await gw.tradingview(http, tv_alert())
        assert resend.json() == {"signal_id": first["signal_id"], "duplicate": True}
    assert await stream_count(js, "SIGNALS") == 1
    # the record that remembers the alert (keyed by its content id) lives 24 h in NATS, whatever the clock says
    holding = []
    for bucket in gw.app.state.runtime.buckets:
        kv = await js.key_value(bucket)
        with contextlib.suppress(KeyNotFoundError):
            entry = await kv.get(first["signal_id"])
            holding.append((bucket, (await kv.status()).ttl, json.loads(entry.value or b"{}")))
    [(_, ttl, record)] = holding
    assert ttl >= 24 * 3600 and record["stored"] is True


async def test_an_indicator_alert_without_strategy_fields_only_updates_market_state(gw: Gateway, http, js) -> None:
    plain = tv_alert(action=None, contracts=None, order_id=None, position_size=None, market_position=None)
    assert (await gw.tradingview(http, plain)).status_code == 202
    [(_, signal)] = await stored_signals(js)
    assert signal["action"] is None and signal["quantity"] is None


async def test_unfilled_placeholders_and_bad_values_are_422_naming_the_fields(gw: Gateway, http, js) -> None:
    body = problem(
        await gw.tradingview(
            http, tv_alert(action="{{strategy.order.action}}", contracts="{{strategy.order.contracts}}")
        ),
        422,
        "schema_violation",
    )
    assert {e["field"] for e in body["errors"]} == {"action", "contracts"}
    assert "placeholder" in body["errors"][0]["message"]
    body = problem(
        await gw.tradingview(http, tv_alert(close=None, market_position="sideways", time="yesterday")),
        422,
        "schema_violation",
    )
    assert {"market_position", "time"} <= {e["field"] for e in body["errors"]}
    assert TV_SECRET not in json.dumps(body)
    assert await stream_count(js, "SIGNALS") == 0


async def test_malformed_json_is_400_even_before_the_secret_is_checked(gw: Gateway, http) -> None:
    response = await http.post(f"{gw.base}/webhook/tradingview", content=b"BTCUSD crossed 64000")
    problem(response, 400, "malformed_json")


async def test_the_tradingview_ip_preset_refuses_other_addresses_and_ignores_forwarded_for_from_strangers(
    gw: Gateway, http, js
) -> None:
    problem(await gw.tradingview(http, tv_alert(), source="tvip"), 403, "ip_not_allowed")
    spoofed = await gw.tradingview(http, tv_alert(), source="tvip", headers={"X-Forwarded-For": "52.89.214.238"})
    problem(spoofed, 403, "ip_not_allowed")
    assert await stream_count(js, "SIGNALS") == 0


async def test_forwarded_for_is_believed_from_a_trusted_proxy(nats_server, http, js) -> None:
    settings = settings_for(nats_server.url, trusted_proxies=["127.0.0.0/8"])
    async with running_gateway(settings) as gw:
        via_proxy = {"X-Forwarded-For": "198.51.100.7, 52.89.214.238"}
        assert (await gw.tradingview(http, tv_alert(), source="tvip", headers=via_proxy)).status_code == 202
        outside = {"X-Forwarded-For": "52.89.214.238, 198.51.100.7"}
        problem(await gw.tradingview(http, tv_alert(), source="tvip", headers=outside), 403, "ip_not_allowed")
        garbage = {"X-Forwarded-For": "not-an-ip"}
        problem(await gw.tradingview(http, tv_alert(), source="tvip", headers=garbage), 403, "ip_not_allowed")
    assert await stream_count(js, "SIGNALS") == 1


def _readme_alert() -> str:
    text = README.read_text()
    match = re.search(r"<!-- tradingview-alert -->\s*```json\n(.*?)```", text, flags=re.S)
    assert match, "README has no TradingView alert message block"
    return match.group(1)


async def test_the_alert_message_in_the_readme_rendered_by_tradingview_is_accepted(gw: Gateway, http, js) -> None:
    values = {
        "ticker": "AAPL",
        "exchange": "NASDAQ",
        "interval": "60",
        "open": "190.1",
        "high": "191",
        "low": "189.5",
        "close": "190.25",
        "volume": "1234567",
        "time": "2026-01-02T14:00:00Z",
        "timenow": "2026-01-02T14:30:00Z",
        "strategy.order.action": "sell",
        "strategy.order.contracts": "10",
        "strategy.order.id": "Short",
        "strategy.position_size": "-10",
        "strategy.market_position": "short",
    }
    template = _readme_alert()
    rendered = re.sub(r"\{\{([a-z_.]+)\}\}", lambda m: values[m.group(1)], template)
    assert "{{" not in rendered
    rendered = rendered.replace("YOUR-TRADINGVIEW-SECRET", TV_SECRET)
    response = await http.post(f"{gw.base}/webhook/tradingview", content=rendered.encode())
    assert response.status_code == 202, response.text
    [(_, signal)] = await stored_signals(js)
    assert (signal["symbol"], signal["action"], Decimal(signal["quantity"]), Decimal(signal["position_size"])) == (
        "AAPL",
        "sell",
        Decimal(10),
        Decimal(-10),
    )
    assert signal["market_position"] == "short"
