"""Correlation ids, logs without secrets, /healthz /readyz /metrics, and the OpenAPI document."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from observability.logging import configure_logging
from tests.gateway.kit import (
    OLD_SECRET,
    SECRET,
    TV_SECRET,
    Gateway,
    running_gateway,
    settings_for,
    stored_signals,
    tv_alert,
)
from tests.gateway.test_gateway_standard import SIGNAL


async def test_a_given_correlation_id_is_echoed_and_carried_into_the_nats_headers(gw: Gateway, http, js) -> None:
    body, headers = gw.webhook().signed(SIGNAL, ts=gw.now())
    response = await http.post(gw.webhook().url, content=body, headers={**headers, "X-Correlation-ID": "trace-42"})
    assert response.status_code == 202 and response.headers["x-correlation-id"] == "trace-42"
    [(nats_headers, signal)] = await stored_signals(js)
    assert nats_headers["X-Correlation-ID"] == signal["correlation_id"] == "trace-42"


async def test_a_missing_or_malformed_correlation_id_is_replaced_by_a_new_one(gw: Gateway, http) -> None:
    created = await gw.send(http, SIGNAL)
    assert len(created.headers["x-correlation-id"]) == 32
    body, headers = gw.webhook().signed(SIGNAL, ts=gw.now())
    evil = await http.post(gw.webhook().url, content=body, headers={**headers, "X-Correlation-ID": 'a"b\\n{}' * 30})
    assert evil.status_code == 202
    assert evil.headers["x-correlation-id"].isalnum() and len(evil.headers["x-correlation-id"]) == 32
    refused = await http.get(f"{gw.base}/nothing")
    assert len(refused.headers["x-correlation-id"]) == 32


async def test_healthz_and_readyz_report_nats_streams_and_kv_buckets(gw: Gateway, http) -> None:
    assert (await http.get(f"{gw.base}/healthz")).json() == {"status": "ok"}
    ready = await http.get(f"{gw.base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "nats": True,
        "SIGNALS": True,
        "DECISIONS": True,
        "EXECUTIONS": True,
        "KV_webhook_ids": True,
        "KV_idempotency_keys": True,
    }


async def test_metrics_count_webhooks_by_source_and_outcome(gw: Gateway, http) -> None:
    await gw.send(http, SIGNAL, msg_id="msg_metrics")
    await gw.send(http, SIGNAL, msg_id="msg_metrics")
    await gw.send(http, SIGNAL, secret=TV_SECRET + "x" * 20)
    await gw.send(http, SIGNAL, source="who")
    text = (await http.get(f"{gw.base}/metrics")).text
    for line in (
        'gateway_webhooks_received_total{outcome="accepted",source="default"}',
        'gateway_webhooks_received_total{outcome="duplicate",source="default"}',
        'gateway_webhooks_received_total{outcome="invalid_signature",source="default"}',
        'gateway_webhooks_received_total{outcome="unknown_source",source="unknown"}',
        'gateway_validation_errors_total{code="invalid_signature"}',
        'gateway_webhook_duration_seconds_bucket{le="0.005",source="default"}',
        "gateway_nats_errors_total",
    ):
        assert line in text, line


@pytest.fixture
def json_logs(capfd: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """Call `configure_logging` inside the test (the stream it binds must be the test's captured stderr)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield capfd
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()


async def test_logs_are_json_with_the_correlation_id_and_never_hold_a_secret_or_signature(
    nats_server, http, json_logs
) -> None:
    configure_logging("gateway", "DEBUG")  # before the server starts, as the CLI does
    signatures = []
    async with running_gateway(settings_for(nats_server.url)) as gw:
        for secret in (SECRET, OLD_SECRET, TV_SECRET + "-wrong-wrong"):
            body, headers = gw.webhook().signed(SIGNAL, ts=gw.now(), secret=secret)
            signatures.append(headers["webhook-signature"].split(",", 1)[1])
            await http.post(gw.webhook().url, content=body, headers={**headers, "X-Correlation-ID": "corr-log-1"})
        await gw.tradingview(http, tv_alert(), headers={"X-Correlation-ID": "corr-log-2"})
        await gw.tradingview(http, tv_alert(secret=TV_SECRET + "-nope"))
        await gw.tradingview(http, tv_alert(market_position="{{strategy.market_position}}"))
        await gw.tradingview(http, tv_alert(ticker="bad ticker"))

    out, err = json_logs.readouterr()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    webhook_lines = [entry for entry in lines if str(entry.get("event", "")).startswith("webhook")]
    assert len(webhook_lines) == 7
    assert {e["correlation_id"] for e in webhook_lines} >= {"corr-log-1", "corr-log-2"}
    assert all(e["service"] == "gateway" and e["source"] in {"default", "tradingview"} for e in webhook_lines)
    assert any(e["level"] == "debug" for e in lines)  # the most verbose level was on
    for secret in (SECRET, OLD_SECRET, TV_SECRET, SECRET.removeprefix("whsec_"), *signatures):
        assert secret not in out + err


async def test_the_openapi_document_describes_every_endpoint_and_problem_response(gw: Gateway, http) -> None:
    doc = (await http.get(f"{gw.base}/openapi.json")).json()
    assert set(doc["paths"]) == {
        "/webhook",
        "/webhook/tradingview",
        "/webhook/{source}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    standard = doc["paths"]["/webhook"]["post"]
    statuses = {"202", "400", "401", "403", "404", "408", "409", "413", "422", "429", "500", "503"}
    assert statuses == set(standard["responses"])
    assert {p["name"] for p in standard["parameters"]} >= {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert "invalid_signature" in standard["responses"]["401"]["description"]
    assert "application/problem+json" in standard["responses"]["401"]["content"]
    assert "Retry-After" in standard["responses"]["503"]["headers"]
    assert "overloaded" in standard["responses"]["503"]["description"]
    assert "request_timeout" in standard["responses"]["408"]["description"]
    tv = doc["paths"]["/webhook/tradingview"]["post"]
    assert "invalid_secret" in tv["responses"]["401"]["description"]
    assert "secret" in doc["components"]["schemas"]["TradingViewAlert"]["required"]
    assert "code" in doc["components"]["schemas"]["ProblemDetails"]["required"]
