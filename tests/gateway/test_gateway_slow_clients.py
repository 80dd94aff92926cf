"""Slow and stalled clients against a real uvicorn gateway, over raw sockets: a head or a body that does not
arrive in time is answered 408 (or the connection is closed), and request bodies held at once are bounded."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from bus.embedded import EmbeddedNats
from tests.conftest import stream_count, wait_for
from tests.gateway.kit import Gateway, running_gateway, settings_for

HEAD_TIMEOUT = 0.6
BODY_TIMEOUT = 0.6
SLACK = 2.0  # scheduling noise on a shared 2-core machine


@pytest.fixture
async def quick(nats_server: EmbeddedNats) -> AsyncIterator[Gateway]:
    settings = settings_for(nats_server.url, header_timeout_s=HEAD_TIMEOUT, body_timeout_s=BODY_TIMEOUT)
    async with running_gateway(settings) as gateway:
        yield gateway


async def _connect(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(gw.base.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


async def _read_until_closed(reader: asyncio.StreamReader, bound: float) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), bound)  # read() returns at EOF
    return data, time.monotonic() - started


def _problem(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, json.loads(body)


def _head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n{extra}\r\n"
    ).encode()


async def test_a_request_head_that_stalls_gets_408_problem_json_and_a_close_within_the_head_deadline(
    quick: Gateway,
) -> None:
    reader, writer = await _connect(quick)
    writer.write(b"POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-le")
    raw, took = await _read_until_closed(reader, HEAD_TIMEOUT + SLACK)
    writer.close()
    status, headers, body = _problem(raw)
    assert status == 408 and headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert body["code"] == "request_timeout" and body["status"] == 408 and "headers" in str(body["detail"])
    assert HEAD_TIMEOUT * 0.8 <= took < HEAD_TIMEOUT + SLACK


async def test_a_head_sent_one_byte_at_a_time_does_not_extend_the_head_deadline(quick: Gateway) -> None:
    reader, writer = await _connect(quick)
    started = time.monotonic()
    request = _head("/webhook", 2)
    first = b""
    for byte in request:  # a deliberately slow client: one byte every 0.1 s, far slower than the deadline allows
        writer.write(bytes([byte]))
        try:
            first = await asyncio.wait_for(reader.read(1), 0.1)
        except TimeoutError:
            continue
        break  # the gateway answered (or closed)
    rest, _ = await _read_until_closed(reader, HEAD_TIMEOUT + SLACK)
    raw = first + rest
    took = time.monotonic() - started
    writer.close()
    assert _problem(raw)[2]["code"] == "request_timeout"
    assert took < HEAD_TIMEOUT + SLACK < 0.1 * len(request)


async def test_an_idle_connection_that_sends_nothing_is_closed_at_the_head_deadline(quick: Gateway) -> None:
    reader, writer = await _connect(quick)
    raw, took = await _read_until_closed(reader, HEAD_TIMEOUT + SLACK)
    writer.close()
    assert raw == b""
    assert took < HEAD_TIMEOUT + SLACK


async def test_a_stalled_body_gets_408_within_the_body_deadline_and_nothing_is_stored(quick: Gateway, js) -> None:
    reader, writer = await _connect(quick)
    writer.write(_head("/webhook/tradingview", 1000) + b'{"secret": "')
    raw, took = await _read_until_closed(reader, BODY_TIMEOUT + SLACK)
    writer.close()
    status, headers, body = _problem(raw)
    assert status == 408 and headers["connection"] == "close"
    assert body["code"] == "request_timeout" and "body" in str(body["detail"])
    assert took < BODY_TIMEOUT + SLACK
    assert await stream_count(js, "SIGNALS") == 0
    assert quick.app.state.runtime.budget.held == 0


async def test_a_body_still_dripping_after_an_early_answer_is_cut_off_at_the_body_deadline(quick: Gateway) -> None:
    reader, writer = await _connect(quick)
    writer.write(_head("/no-such-endpoint", 1000) + b"x")
    started = time.monotonic()
    answered = await asyncio.wait_for(reader.readuntil(b"}"), SLACK)
    closed = False
    for _ in range(int((BODY_TIMEOUT + 1 + SLACK) / 0.1)):  # one byte every 0.1 s: without a deadline, for ever
        writer.write(b"x")
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.1) == b""
        except TimeoutError:
            continue
        break
    took = time.monotonic() - started
    writer.close()
    assert b" 404 " in answered.split(b"\r\n", 1)[0]
    assert closed and took < BODY_TIMEOUT + 1 + SLACK


async def test_bodies_held_at_once_are_bounded_the_next_is_503_overloaded_and_room_comes_back(
    nats_server: EmbeddedNats, js
) -> None:
    size = 1000
    settings = settings_for(nats_server.url, max_body_bytes=size, max_inflight_body_bytes=3 * size)
    async with running_gateway(settings) as gw, httpx.AsyncClient(timeout=10) as http:
        budget = gw.app.state.runtime.budget
        stalled = [await _connect(gw) for _ in range(3)]
        for _, writer in stalled:
            writer.write(_head("/webhook", size) + b"{")
        await wait_for(lambda: budget.held == 3 * size, 5, "three announced bodies to be reserved")

        reader, writer = await _connect(gw)
        started = time.monotonic()
        writer.write(_head("/webhook", size) + b"{")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLACK)
        length = int(next(v for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k == b"content-length"))
        raw = head + await reader.readexactly(length)
        took = time.monotonic() - started
        writer.close()
        refused_small = await gw.send(http, {"symbol": "AAPL", "price": "1"})

        for _, w in stalled:
            w.close()
        await wait_for(lambda: budget.held == 0, 5, "the dropped bodies to be released")
        accepted = await gw.send(http, {"symbol": "AAPL", "price": "1"})

    status, headers, body = _problem(raw)
    assert status == 503 and body["code"] == "overloaded" and headers["retry-after"] == "2"
    assert took < SLACK
    assert refused_small.status_code == 503 and refused_small.json()["code"] == "overloaded"
    assert accepted.status_code == 202
    assert await stream_count(js, "SIGNALS") == 1


def test_the_in_flight_bound_must_hold_at_least_one_full_body(nats_server: EmbeddedNats) -> None:
    with pytest.raises(ValueError, match="max_inflight_body_bytes must be at least max_body_bytes"):
        settings_for(nats_server.url, max_body_bytes=1000, max_inflight_body_bytes=999)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLACK)
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    return head + await asyncio.wait_for(reader.readexactly(length), SLACK)


async def test_on_a_kept_alive_connection_the_head_deadline_runs_from_the_last_answer(quick: Gateway) -> None:
    reader, writer = await _connect(quick)
    started = time.monotonic()
    for _ in range(2):  # two requests, the second well inside the first's head deadline
        writer.write(_head("/webhook", 2) + b"{}")
        assert b" 401 " in (await _answer(reader)).split(b"\r\n", 1)[0]  # unsigned: refused, connection kept
        answered = time.monotonic()
        await asyncio.sleep(HEAD_TIMEOUT * 0.6)
    raw, _ = await _read_until_closed(reader, HEAD_TIMEOUT + SLACK)
    closed = time.monotonic()
    writer.close()
    assert raw == b""
    assert closed - answered >= HEAD_TIMEOUT * 0.9  # not the deadline of the connection's start, nor the first's
    assert closed - started >= HEAD_TIMEOUT * 1.5
    assert closed - answered < HEAD_TIMEOUT + SLACK


async def test_a_body_that_comes_after_its_head_within_the_deadline_is_read_whole(quick: Gateway) -> None:
    reader, writer = await _connect(quick)
    body = b'{"symbol": "AAPL", "price": "1"}'
    writer.write(_head("/webhook", len(body)) + body[:9])
    await asyncio.sleep(BODY_TIMEOUT / 3)
    writer.write(body[9:])
    answer = await _answer(reader)
    writer.close()
    status, _, problem = _problem(answer)
    assert status == 401 and problem["code"] == "missing_signature_headers"  # read whole, then refused: not 408
