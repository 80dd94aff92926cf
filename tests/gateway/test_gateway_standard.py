"""POST /webhook and /webhook/{source} for Standard Webhooks senders, against real uvicorn and nats-server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from gateway import signing
from tests.conftest import stream_count
from tests.gateway.kit import OLD_SECRET, SECRET, Gateway, stored_signals

SIGNAL = {"symbol": "AAPL", "price": "190.25", "action": "buy", "quantity": 10}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith(code)
    assert body["title"] and body["detail"]
    return body


async def test_a_signed_generic_signal_is_stored_once_with_its_id_as_nats_msg_id(gw: Gateway, http, js) -> None:
    response = await gw.send(http, SIGNAL)
    assert response.status_code == 202 and response.json()["duplicate"] is False
    [(headers, signal)] = await stored_signals(js)
    assert headers["Nats-Msg-Id"] == signal["signal_id"] == response.json()["signal_id"]
    assert (signal["symbol"], Decimal(signal["price"]), signal["action"], Decimal(signal["quantity"])) == (
        "AAPL",
        Decimal("190.25"),
        "buy",
        Decimal(10),
    )
    assert signal["source"] == "default"
    assert signal["received_at"] == gw.clock.now().isoformat().replace("+00:00", "Z")


async def test_both_secrets_of_a_rotation_are_accepted_and_a_retired_one_is_not(gw: Gateway, http, js) -> None:
    assert (await gw.send(http, SIGNAL, secret=SECRET)).status_code == 202
    assert (await gw.send(http, SIGNAL, secret=OLD_SECRET)).status_code == 202
    retired = signing.new_secret()
    problem(await gw.send(http, SIGNAL, secret=retired), 401, "invalid_signature")
    # a sender mid-rotation signs with both keys in one header; any match passes
    body, headers = gw.webhook().signed(SIGNAL, ts=gw.now(), secret=retired)
    new_sig = signing.sign(SECRET, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    headers["webhook-signature"] = f"{headers['webhook-signature']} {new_sig}"
    assert (await http.post(gw.webhook().url, content=body, headers=headers)).status_code == 202
    assert await stream_count(js, "SIGNALS") == 3


@pytest.mark.parametrize(("skew", "status"), [(-300, 202), (300, 202), (-301, 401), (301, 401)])
async def test_timestamps_are_accepted_up_to_300_s_either_way_and_refused_beyond(
    gw: Gateway, http, js, skew: int, status: int
) -> None:
    response = await gw.send(http, SIGNAL, ts=gw.now() + skew)
    assert response.status_code == status
    if status == 401:
        problem(response, 401, "timestamp_out_of_tolerance")
    assert await stream_count(js, "SIGNALS") == (1 if status == 202 else 0)


async def test_a_timestamp_that_is_not_unix_seconds_is_refused(gw: Gateway, http) -> None:
    body, headers = gw.webhook().signed(SIGNAL, ts=gw.now())
    headers["webhook-timestamp"] = "2026-01-02T14:30:00Z"
    problem(await http.post(gw.webhook().url, content=body, headers=headers), 401, "timestamp_out_of_tolerance")


async def test_a_resent_webhook_id_is_a_duplicate_with_the_original_id_and_another_body_is_409(
    gw: Gateway, http, js
) -> None:
    first = await gw.send(http, SIGNAL, msg_id="msg_replay")
    again = await gw.send(http, SIGNAL, msg_id="msg_replay")
    assert again.status_code == 202
    assert again.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
    other = await gw.send(http, {**SIGNAL, "quantity": 11}, msg_id="msg_replay")
    problem(other, 409, "webhook_id_conflict")
    assert await stream_count(js, "SIGNALS") == 1


async def test_the_same_webhook_id_from_two_sources_is_two_signals(gw: Gateway, http, js) -> None:
    a = await gw.send(http, SIGNAL, msg_id="msg_shared")
    b = await gw.send(http, SIGNAL, source="limited", msg_id="msg_shared")
    assert a.status_code == b.status_code == 202
    assert a.json()["signal_id"] != b.json()["signal_id"]
    assert await stream_count(js, "SIGNALS") == 2


async def test_an_idempotency_key_makes_resends_with_new_webhook_ids_duplicates(gw: Gateway, http, js) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = await _send_with_headers(gw, http, SIGNAL, key)
    second = await _send_with_headers(gw, http, SIGNAL, key)
    assert first.status_code == second.status_code == 202
    assert second.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
    problem(await _send_with_headers(gw, http, {**SIGNAL, "quantity": 3}, key), 409, "idempotency_key_conflict")
    problem(await _send_with_headers(gw, http, SIGNAL, {"Idempotency-Key": "x" * 257}), 400, "invalid_header")
    assert await stream_count(js, "SIGNALS") == 1


async def _send_with_headers(gw: Gateway, http, payload, extra: dict[str, str]) -> httpx.Response:
    body, headers = gw.webhook().signed(payload, ts=gw.now())
    return await http.post(gw.webhook().url, content=body, headers={**headers, **extra})


async def test_missing_signature_headers_are_401_and_nothing_is_stored(gw: Gateway, http, js) -> None:
    body, headers = gw.webhook().signed(SIGNAL, ts=gw.now())
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in headers.items() if k != name}
        problem(await http.post(gw.webhook().url, content=body, headers=partial), 401, "missing_signature_headers")
    assert await stream_count(js, "SIGNALS") == 0


async def test_a_body_changed_after_signing_is_401(gw: Gateway, http, js) -> None:
    body, headers = gw.webhook().signed(SIGNAL, ts=gw.now())
    tampered = body.replace(b"10", b"99")
    problem(await http.post(gw.webhook().url, content=tampered, headers=headers), 401, "invalid_signature")
    # the signature covers the raw bytes: re-serialising the same JSON differently also fails
    spaced = json.dumps(SIGNAL, indent=2).encode()
    problem(await http.post(gw.webhook().url, content=spaced, headers=headers), 401, "invalid_signature")
    assert await stream_count(js, "SIGNALS") == 0


async def test_malformed_json_is_400_and_schema_violations_are_422_listing_each_field(gw: Gateway, http, js) -> None:
    problem(await gw.send(http, b'{"symbol": "AAPL", "price": '), 400, "malformed_json")
    problem(await gw.send(http, b"[1, 2]"), 400, "malformed_json")
    problem(await gw.send(http, b'{"symbol": "AAPL", "price": NaN}'), 400, "malformed_json")
    bad = {"symbol": "aapl; rm -rf", "price": "-1", "action": "hold", "quantity": "1e400", "time": "2026-01-02T10:00"}
    body = problem(await gw.send(http, bad), 422, "schema_violation")
    assert {e["field"] for e in body["errors"]} == {"symbol", "price", "action", "quantity", "time"}
    for field in ("symbol", "price", "action", "quantity", "time"):
        assert field in body["detail"]
    problem(await gw.send(http, {**SIGNAL, "price": "Infinity"}), 422, "schema_violation")
    problem(await gw.send(http, {**SIGNAL, "price": "1.12345678901"}), 422, "schema_violation")
    problem(await gw.send(http, {**SIGNAL, "comment": "x" * 501}), 422, "schema_violation")
    problem(await gw.send(http, {**SIGNAL, "leverage": 100}), 422, "schema_violation")
    far = problem(await gw.send(http, {**SIGNAL, "time": "9999-12-31T23:59:59-14:00"}), 422, "schema_violation")
    assert "out of range" in str(far["errors"]), "past the year 9999 in UTC: a coded 422, not a 500"
    assert await stream_count(js, "SIGNALS") == 0


async def test_numbers_keep_their_exact_decimal_value_and_times_become_utc(gw: Gateway, http, js) -> None:
    payload = b'{"symbol": "EURUSD", "price": 1.10000000001, "time": "2026-01-02T16:30:00+02:00"}'
    problem(await gw.send(http, payload), 422, "schema_violation")  # 11 decimals
    payload = b'{"symbol": "EURUSD", "price": 1.1000000001, "time": "2026-01-02T16:30:00+02:00"}'
    assert (await gw.send(http, payload)).status_code == 202
    [(_, signal)] = await stored_signals(js)
    assert signal["price"] == "1.1000000001"
    assert signal["signal_time"] == "2026-01-02T14:30:00Z"


async def _stream_body(size: int) -> AsyncIterator[bytes]:
    chunk = b" " * 65536
    sent = 0
    while sent < size:
        yield chunk
        sent += len(chunk)


async def test_bodies_over_1_mb_are_413_whether_declared_or_streamed(gw: Gateway, http, js) -> None:
    big = json.dumps({**SIGNAL, "comment": "x"}).encode() + b" " * (1024 * 1024)
    problem(await gw.send(http, big), 413, "payload_too_large")
    _, headers = gw.webhook().signed(SIGNAL, ts=gw.now())
    chunked = await http.post(gw.webhook().url, content=_stream_body(2 * 1024 * 1024), headers=headers)
    problem(chunked, 413, "payload_too_large")
    exactly = json.dumps(SIGNAL).encode().ljust(1024 * 1024)
    assert (await gw.send(http, exactly)).status_code == 202
    assert await stream_count(js, "SIGNALS") == 1


async def test_a_source_limited_to_some_symbols_refuses_others_with_403(gw: Gateway, http, js) -> None:
    problem(await gw.send(http, {**SIGNAL, "symbol": "MSFT"}, source="limited"), 403, "symbol_not_allowed")
    assert (await gw.send(http, SIGNAL, source="limited")).status_code == 202
    assert await stream_count(js, "SIGNALS") == 1


async def test_the_rate_limit_is_a_token_bucket_per_source_answering_429_with_retry_after(
    gw: Gateway, http, js
) -> None:
    for _ in range(2):  # burst 2
        assert (await gw.send(http, SIGNAL, source="limited")).status_code == 202
    limited = await gw.send(http, SIGNAL, source="limited")
    problem(limited, 429, "rate_limited")
    assert limited.headers["retry-after"] == "1"
    assert (await gw.send(http, SIGNAL)).status_code == 202  # other sources are not affected
    gw.clock.advance(1.0)
    assert (await gw.send(http, SIGNAL, source="limited")).status_code == 202
    assert await stream_count(js, "SIGNALS") == 4


async def test_unknown_sources_paths_and_methods_are_problem_json(gw: Gateway, http) -> None:
    problem(await gw.send(http, SIGNAL, source="nobody"), 404, "unknown_source")
    problem(await http.get(f"{gw.base}/nothing-here"), 404, "not_found")
    problem(await http.get(f"{gw.base}/webhook"), 405, "method_not_allowed")


async def test_a_bad_webhook_id_is_400(gw: Gateway, http) -> None:
    problem(await gw.send(http, SIGNAL, msg_id="m" * 257), 400, "invalid_header")


async def test_a_member_named_twice_is_400_naming_it_and_nothing_is_stored(gw: Gateway, http, js) -> None:
    body = problem(await gw.send(http, b'{"symbol":"AAPL","symbol":"MSFT","price":"1"}'), 400, "malformed_json")
    assert "'symbol' appears twice" in str(body["detail"])
    nested = b'{"symbol":"AAPL","price":"1","comment":"x","x":{"a":1,"a":2}}'
    assert "'a' appears twice" in str(problem(await gw.send(http, nested), 400, "malformed_json")["detail"])
    alert = b'{"secret":"wrong","secret":"tv-secret-0123456789abcdef","ticker":"BTCUSD","close":1}'
    tv = await http.post(f"{gw.base}/webhook/tradingview", content=alert)
    assert "'secret' appears twice" in str(problem(tv, 400, "malformed_json")["detail"])
    assert await stream_count(js, "SIGNALS") == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", "１２３"),  # fullwidth digits: Decimal("１２３") == 123
        ("price", "١٢٣"),  # Arabic-Indic digits
        ("quantity", "٥"),
        ("symbol", "ıbm"),  # dotless i: "ıbm".upper() == "IBM"
        ("symbol", "ＡＡＰＬ"),
    ],
)
async def test_numbers_and_symbols_that_are_not_ascii_are_422_on_that_field(
    gw: Gateway, http, js, field: str, value: str
) -> None:
    body = problem(await gw.send(http, {**SIGNAL, field: value}), 422, "schema_violation")
    assert [e["field"] for e in body["errors"]] == [field]  # type: ignore[union-attr]
    tv_field = {"symbol": "ticker", "quantity": "contracts"}.get(field, field)
    alert = {"secret": "tv-secret-0123456789abcdef", "ticker": "BTCUSD", "close": 1, tv_field: value}
    tv = problem(await http.post(f"{gw.base}/webhook/tradingview", json=alert), 422, "schema_violation")
    assert [e["field"] for e in tv["errors"]] == [tv_field]  # type: ignore[union-attr]
    assert await stream_count(js, "SIGNALS") == 0
