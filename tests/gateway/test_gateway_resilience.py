"""Replicas share the seen-id store; NATS down or stalled means 503, never a 2xx for an unstored signal."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bus.embedded import EmbeddedNats, start_nats_server
from bus.jetstream import connect, ensure_streams
from tests.conftest import stream_count, wait_for
from tests.gateway.kit import running_gateway, settings_for
from tests.gateway.test_gateway_standard import SIGNAL, problem


async def test_a_replay_to_a_second_gateway_replica_is_a_duplicate_and_a_conflict_there_is_409(
    nats_server: EmbeddedNats, http, js
) -> None:
    settings = settings_for(nats_server.url)
    async with running_gateway(settings) as a, running_gateway(settings, a.clock) as b:
        first = await a.send(http, SIGNAL, msg_id="msg_two_replicas")
        second = await b.send(http, SIGNAL, msg_id="msg_two_replicas")
        assert second.status_code == 202
        assert second.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
        problem(await b.send(http, {**SIGNAL, "price": "1"}, msg_id="msg_two_replicas"), 409, "webhook_id_conflict")
        tv = {"secret": "tv-secret-0123456789abcdef", "ticker": "AAPL", "close": 1, "timenow": "2026-01-02T14:30:00Z"}
        assert (await a.tradingview(http, tv)).json()["duplicate"] is False
        assert (await b.tradingview(http, tv)).json()["duplicate"] is True
    assert await stream_count(js, "SIGNALS") == 2


@pytest.fixture
def restartable_nats(tmp_path: Path) -> Iterator[list[EmbeddedNats]]:
    """A nats-server that a test may stop and start again on the same store and port (last one wins)."""
    servers = [start_nats_server(tmp_path / "nats")]
    yield servers
    servers[-1].stop()


async def test_nats_stopped_mid_run_gives_503_stores_nothing_and_recovers_remembering_old_ids(
    restartable_nats: list[EmbeddedNats], http: httpx.AsyncClient
) -> None:
    server = restartable_nats[0]
    async with running_gateway(settings_for(server.url)) as gw:
        before = await gw.send(http, SIGNAL, msg_id="msg_before")
        assert before.status_code == 202

        server.stop()
        readyz = f"{gw.base}/readyz"

        async def not_ready() -> bool:
            return (await http.get(readyz)).status_code == 503

        await wait_for(not_ready, 10, "readyz to report NATS down")
        during = await gw.send(http, SIGNAL, msg_id="msg_during")
        problem(during, 503, "nats_unavailable")
        assert during.headers["retry-after"] == "2"
        problem(
            await gw.tradingview(http, {"secret": "tv-secret-0123456789abcdef", "ticker": "A", "close": 1}),
            503,
            "nats_unavailable",
        )

        restartable_nats.append(start_nats_server(server.data_dir, server.port))

        async def ready() -> bool:
            return (await http.get(readyz)).status_code == 200

        await wait_for(ready, 15, "the gateway to reconnect")
        retried = await gw.send(http, SIGNAL, msg_id="msg_during")
        assert retried.status_code == 202 and retried.json()["duplicate"] is False
        replayed = await gw.send(http, SIGNAL, msg_id="msg_before")  # remembered across the NATS restart
        assert replayed.json() == {"signal_id": before.json()["signal_id"], "duplicate": True}

    nc = await connect(restartable_nats[-1].url, "check")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        assert await stream_count(js, "SIGNALS") == 2
    finally:
        await nc.close()


async def test_a_stalled_nats_gives_503_within_the_publish_timeout_and_a_resend_stores_once(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, js
) -> None:
    assert nats_server.process is not None
    async with running_gateway(settings_for(nats_server.url)) as gw:
        os.kill(nats_server.process.pid, signal.SIGSTOP)
        try:
            stalled = await gw.send(http, SIGNAL, msg_id="msg_stalled")
        finally:
            os.kill(nats_server.process.pid, signal.SIGCONT)
        problem(stalled, 503, "nats_unavailable")
        assert stalled.elapsed.total_seconds() < 3.0  # TradingView gives up after 3 s

        async def stored_once() -> bool:
            response = await gw.send(http, SIGNAL, msg_id="msg_stalled")
            return response.status_code == 202

        await wait_for(stored_once, 10, "the resend to be accepted")
        again = await gw.send(http, SIGNAL, msg_id="msg_stalled")
        assert again.json()["duplicate"] is True
    assert await stream_count(js, "SIGNALS") == 1


async def test_a_restarted_gateway_remembers_webhook_ids(nats_server: EmbeddedNats, http, js) -> None:
    settings = settings_for(nats_server.url)
    async with running_gateway(settings) as gw:
        first = await gw.send(http, SIGNAL, msg_id="msg_restart")
        clock = gw.clock
    async with running_gateway(settings, clock) as gw:
        again = await gw.send(http, SIGNAL, msg_id="msg_restart")
    assert again.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
    assert await stream_count(js, "SIGNALS") == 1
