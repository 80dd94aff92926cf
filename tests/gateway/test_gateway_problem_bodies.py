"""Every error code docs/ERROR_CATALOG.md lists for the gateway, provoked on a real gateway: each answer is
problem+json with type, title, status, detail and code, and its status is the catalogued one."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import httpx
import nats
import structlog
import structlog.testing

from bus.embedded import EmbeddedNats, free_port
from gateway.app import create_app
from gateway.errors import CODES, PROBLEM_JSON, TYPE_BASE
from tests.conftest import Webhook, wait_for
from tests.gateway.kit import SECRET, TV_SECRET, serve_gateway_app, settings_for, slow_reader
from tools.clock import TestClock

CATALOG = Path(__file__).resolve().parents[2] / "docs" / "ERROR_CATALOG.md"
SIGNAL = {"symbol": "AAPL", "price": "190.25"}


def catalogued_gateway_codes() -> dict[str, int]:
    text = CATALOG.read_text()
    start = text.index("\n## Gateway")
    section = text[start : text.index("\n## ", start + 1)]
    return {code: int(status) for code, status in re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", section, flags=re.M)}


def _parse(raw: bytes) -> tuple[int, str, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers["content-type"], json.loads(body)


async def test_every_catalogued_gateway_error_is_a_complete_problem_document(nats_server: EmbeddedNats) -> None:
    settings = settings_for(
        nats_server.url,
        header_timeout_s=0.5,
        body_timeout_s=5,
        max_inflight_body_bytes=1024 * 1024,
        max_signal_backlog=2,
    )
    clock = TestClock()
    app = create_app(settings, clock)

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:  # a bug anywhere in the app: the catch-all handler answers
        raise RuntimeError("a bug")

    port = free_port()
    answers: dict[str, tuple[int, str, dict[str, object]]] = {}
    async with serve_gateway_app(app, port, settings) as base, httpx.AsyncClient(timeout=10) as http:
        ts = int(clock.now().timestamp())
        hook = Webhook(f"{base}/webhook", SECRET)

        def record(code: str, response: httpx.Response) -> None:
            answers[code] = (response.status_code, response.headers["content-type"], response.json())

        async def raw(payload: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data

        record("malformed_json", await hook.send(http, b"{", ts=ts))
        record("invalid_header", await hook.send(http, SIGNAL, ts=ts, msg_id="m" * 257))
        record("missing_signature_headers", await http.post(f"{base}/webhook", json=SIGNAL))
        record("invalid_signature", await hook.send(http, SIGNAL, ts=ts, secret="whsec_" + "A" * 44))
        record("timestamp_out_of_tolerance", await hook.send(http, SIGNAL, ts=ts - 1000))
        record("invalid_secret", await http.post(f"{base}/webhook/tradingview", json={"secret": "no", "ticker": "A"}))
        record("ip_not_allowed", await http.post(f"{base}/webhook/tvip", json={"secret": TV_SECRET}))
        limited = Webhook(f"{base}/webhook/limited", SECRET)
        record("symbol_not_allowed", await limited.send(http, {"symbol": "MSFT", "price": "1"}, ts=ts))
        record("unknown_source", await Webhook(f"{base}/webhook/nobody", SECRET).send(http, SIGNAL, ts=ts))
        record("not_found", await http.get(f"{base}/nothing-here"))
        record("method_not_allowed", await http.get(f"{base}/webhook"))
        assert (await hook.send(http, SIGNAL, ts=ts, msg_id="m1")).status_code == 202
        record("webhook_id_conflict", await hook.send(http, {**SIGNAL, "price": "2"}, ts=ts, msg_id="m1"))
        key = {"idempotency-key": uuid.uuid4().hex}
        body, headers = hook.signed(SIGNAL, ts=ts)
        assert (await http.post(hook.url, content=body, headers={**headers, **key})).status_code == 202
        body, headers = hook.signed({**SIGNAL, "price": "3"}, ts=ts)
        record("idempotency_key_conflict", await http.post(hook.url, content=body, headers={**headers, **key}))
        record("payload_too_large", await hook.send(http, b" " * (1024 * 1024 + 1), ts=ts))
        record("schema_violation", await hook.send(http, {"symbol": "AAPL", "price": "-1"}, ts=ts))
        for _ in range(2):  # the `limited` source's burst
            await limited.send(http, {"symbol": "AAPL", "price": "1"}, ts=ts)
        record("rate_limited", await limited.send(http, {"symbol": "AAPL", "price": "1"}, ts=ts))
        record("internal_error", await http.get(f"{base}/boom"))
        answers["malformed_request"] = _parse(await raw(b"NOT HTTP AT ALL\r\n\r\n"))
        answers["request_timeout"] = _parse(await raw(b"POST /webhook HTTP/1.1\r\nhost: x\r\n"))

        reader = await nats.connect(nats_server.url)
        await slow_reader(reader, reader.jetstream())  # it takes one signal and never acknowledges it

        async def behind() -> bool:
            response = await hook.send(http, SIGNAL, ts=ts)
            if response.status_code == 503:
                record("pipeline_behind", response)
            return response.status_code == 503

        await wait_for(behind, 10, "a signal refused while the reader is behind")
        await reader.close()

        budget = app.state.runtime.budget
        reader, holder = await asyncio.open_connection("127.0.0.1", port)
        holder.write(b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\n\r\n{")
        await wait_for(lambda: budget.held == 1024 * 1024, 5, "a full-size body to be reserved")
        record("overloaded", await hook.send(http, SIGNAL, ts=ts))
        holder.close()

        nats_server.stop()
        record("nats_unavailable", await hook.send(http, SIGNAL, ts=ts))

    catalogued = catalogued_gateway_codes()
    assert set(answers) == set(catalogued) == set(CODES), "provoke every catalogued code here"
    for code, (status, content_type, body) in answers.items():
        assert content_type == PROBLEM_JSON, code
        assert status == catalogued[code] == body["status"], code
        assert body["code"] == code and body["type"] == TYPE_BASE + code, code
        assert body["title"] == CODES[code][1] and isinstance(body["detail"], str) and body["detail"], code


async def test_a_bug_while_handling_a_webhook_is_a_logged_500_problem_and_the_gateway_keeps_serving(
    nats_server: EmbeddedNats,
) -> None:
    """Webhooks are answered ahead of Starlette's stack (gateway.fastpath), so its error catcher is not there:
    the fast path itself must turn an unexpected exception into the catalogued 500, with the correlation id."""
    settings = settings_for(nats_server.url)
    clock = TestClock()
    app = create_app(settings, clock)
    port = free_port()
    async with serve_gateway_app(app, port, settings) as base, httpx.AsyncClient(timeout=10) as http:
        hook = Webhook(f"{base}/webhook", SECRET)
        ts = int(clock.now().timestamp())
        ingest = app.state.runtime.ingest
        working = ingest.standard

        async def broken(*_: object) -> object:
            raise RuntimeError("a bug with a secret in its text")

        ingest.standard = broken
        body, headers = hook.signed(SIGNAL, ts=ts)
        with structlog.testing.capture_logs() as logs:
            answer = await http.post(hook.url, content=body, headers={**headers, "x-correlation-id": "bug-1"})
        assert [e for e in logs if e["event"] == "unhandled error"] == [
            {"event": "unhandled error", "error": "RuntimeError", "log_level": "error"}
        ]
        assert answer.status_code == 500 and answer.headers["content-type"] == PROBLEM_JSON
        body = answer.json()
        assert body["code"] == "internal_error" and "a bug" not in body["detail"]
        assert answer.headers["x-correlation-id"] == "bug-1"
        ingest.standard = working
        assert (await hook.send(http, SIGNAL, ts=ts)).status_code == 202
