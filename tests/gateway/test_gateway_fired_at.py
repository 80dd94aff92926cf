"""`fired_at` on published signals: when the sender fired it, never the bar's market time (`signal_time`).

Real uvicorn gateway and nats-server, as the other gateway tests; the TestClock is the receipt time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.gateway.kit import Gateway, stored_signals, tv_alert


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def test_a_standard_webhooks_signal_is_fired_at_its_verified_webhook_timestamp(gw: Gateway, http, js) -> None:
    sent = gw.now() - 7  # the sender fired 7 s before the gateway received it (within the 300 s tolerance)
    daily_bar = {"symbol": "AAPL", "price": "190.25", "action": "buy", "interval": "1D", "time": "2000-01-03T00:00:00Z"}
    response = await gw.send(http, daily_bar, ts=sent)
    assert response.status_code == 202, response.text
    [(_, signal)] = await stored_signals(js)
    assert signal["fired_at"] == iso(datetime.fromtimestamp(sent, UTC))
    assert signal["received_at"] == iso(gw.clock.now())
    assert signal["signal_time"] == "2000-01-03T00:00:00Z"  # market time, kept apart from the firing time


async def test_a_tradingview_alert_is_fired_at_its_timenow(gw: Gateway, http, js) -> None:
    gw.clock.advance(3)  # received 14:30:03, fired 14:30:01
    response = await gw.tradingview(http, tv_alert(time="2026-01-02T00:00:00Z", interval="1D"))
    assert response.status_code == 202, response.text
    [(_, signal)] = await stored_signals(js)
    assert signal["fired_at"] == signal["alert_time"] == "2026-01-02T14:30:01Z"
    assert signal["received_at"] == "2026-01-02T14:30:03Z"
    assert signal["signal_time"] == "2026-01-02T00:00:00Z"


async def test_a_tradingview_alert_without_timenow_is_fired_at_its_receipt(gw: Gateway, http, js) -> None:
    response = await gw.tradingview(http, tv_alert(timenow=None))
    assert response.status_code == 202, response.text
    [(_, signal)] = await stored_signals(js)
    assert signal["alert_time"] is None
    assert signal["fired_at"] == signal["received_at"] == iso(gw.clock.now())
    assert signal["signal_time"] == "2026-01-02T14:15:00Z"
