"""Load shedding (gateway.backlog): while a live reader of SIGNALS is more than the limit behind, a valid signal gets
503 pipeline_behind and nothing is stored or claimed; a reader that is gone does not close the gateway; bad input
keeps its own answer. Real nats-server, real uvicorn gateway, real consumers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import httpx
import nats
import pytest
from nats.js import api

from bus.embedded import EmbeddedNats
from bus.jetstream import ensure_streams
from decisions.agent.service import durable_of
from gateway import signing
from gateway.backlog import LIVE_S, STALE_S, Backlog, waited_for
from gateway.errors import Problem
from tests.conftest import stream_count, wait_for
from tests.gateway.kit import SLOW, running_gateway, settings_for, slow_reader
from tests.gateway.test_gateway_standard import SIGNAL, problem


async def test_a_live_reader_too_far_behind_gets_503_pipeline_behind_and_nothing_is_stored_until_it_catches_up(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, js: nats.js.JetStreamContext
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        async with running_gateway(
            settings_for(nats_server.url, max_signal_backlog=3, max_signal_wait_s=0, retry_after_s=1)
        ) as gw:
            await gw.send(http, SIGNAL)  # the gateway has made the streams
            await slow_reader(nc, js)
            stored = 1
            refused: httpx.Response | None = None
            refused_id = ""
            for n in range(60):  # readings come at most every 0.25 s, in the background: send until one says no
                refused_id = f"msg_backlog_{n}"
                response = await gw.send(http, SIGNAL, msg_id=refused_id)
                if response.status_code != 202:
                    refused = response
                    break
                stored += 1
                await asyncio.sleep(0.05)
            assert refused is not None, "no signal was refused while the reader fell 60 signals behind"
            body = problem(refused, 503, "pipeline_behind")
            assert refused.headers["retry-after"] == "1"
            assert SLOW in str(body["detail"]) and "limit of 3" in str(body["detail"])
            behind = int(re.search(r"is (\d+) signals behind", str(body["detail"])).group(1))  # type: ignore[union-attr]
            assert behind > 3
            # the reader holds one signal unacknowledged and has the rest pending: it was over the limit only
            # once more than 3 were stored after the one it took
            assert stored >= 4
            assert await stream_count(js, "SIGNALS") == stored  # the refused one was not stored

            # bad input still gets its own answer, not the backlog's
            problem(await gw.send(http, SIGNAL, secret=signing.new_secret()), 401, "invalid_signature")
            problem(await gw.send(http, {"symbol": "AAPL"}), 422, "schema_violation")
            metrics = (await http.get(f"{gw.base}/metrics")).text
            assert re.search(r"^gateway_signal_backlog ([0-9.]+)$", metrics, re.M)
            assert float(re.search(r"^gateway_signal_backlog ([0-9.]+)$", metrics, re.M).group(1)) > 3  # type: ignore[union-attr]

            # the reader catches up (here: it goes away for good); the same request is then stored, once
            await js.delete_consumer("SIGNALS", SLOW)

            async def taken() -> bool:
                return (await gw.send(http, SIGNAL, msg_id=refused_id)).status_code == 202

            await wait_for(taken, 5, "the refused signal to be taken once the reader is gone")
            again = await gw.send(http, SIGNAL, msg_id=refused_id)
            assert again.status_code == 202 and again.json()["duplicate"] is True
            assert await stream_count(js, "SIGNALS") == stored + 1
    finally:
        await nc.close()


async def test_a_reader_that_is_gone_does_not_close_the_gateway(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, js: nats.js.JetStreamContext
) -> None:
    """A durable with no pull open and a backlog that never moves (a stopped bridge, an agent durable left
    behind) is not waited for, however far behind it is."""
    async with running_gateway(settings_for(nats_server.url, max_signal_backlog=3)) as gw:
        assert (await gw.send(http, SIGNAL)).status_code == 202
        await js.add_consumer(
            "SIGNALS",
            api.ConsumerConfig(
                durable_name="left-behind", ack_policy=api.AckPolicy.EXPLICIT, filter_subject="signals.normalized"
            ),
        )
        for _ in range(20):
            response = await gw.send(http, SIGNAL)
            assert response.status_code == 202, response.text
            await asyncio.sleep(0.05)  # several readings happen meanwhile
        info = await js.consumer_info("SIGNALS", "left-behind")
        assert info.num_pending == 21  # it is far behind, and the gateway knew: it read the consumers
        assert gw.app.state.runtime.ingest.backlog.read_at > 0
        assert gw.app.state.runtime.ingest.backlog.behind == 0


async def test_a_reader_too_slow_for_the_rate_sent_gets_503_pipeline_behind_on_the_wait_limit_before_the_count(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, js: nats.js.JetStreamContext
) -> None:
    """A reader that acknowledges 4 signals a second while ~15 a second arrive: its backlog over its rate passes the
    wait limit (0.5 s) long before the count limit (1,000)."""
    async with running_gateway(settings_for(nats_server.url, max_signal_wait_s=0.5, retry_after_s=1)) as gw:
        await gw.send(http, SIGNAL)
        sub = await js.pull_subscribe("signals.normalized", durable="trickle", stream="SIGNALS")

        async def trickle() -> None:
            while True:
                with contextlib.suppress(nats.errors.TimeoutError):
                    for msg in await sub.fetch(1, timeout=1):
                        await msg.ack()
                await asyncio.sleep(0.25)

        reading = asyncio.create_task(trickle())
        try:
            refused: httpx.Response | None = None
            for _ in range(150):
                response = await gw.send(http, SIGNAL)
                if response.status_code != 202:
                    refused = response
                    break
                await asyncio.sleep(0.06)
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        assert refused is not None, "no signal was refused while the reader fell behind at 4/s"
        body = problem(refused, 503, "pipeline_behind")
        detail = str(body["detail"])
        assert "trickle" in detail and "limit of 0.5 s" in detail and "MAX_SIGNAL_WAIT_S" in detail, detail
        assert float(re.search(r"would wait ([0-9.]+) s", detail).group(1)) > 0.5  # type: ignore[union-attr]
        backlog = gw.app.state.runtime.ingest.backlog
        assert 0 < backlog.behind < 1000 and backlog.waited_on == "trickle"
        assert 2 <= backlog.readers["trickle"].rate <= 8  # about the 4/s it acknowledged at
        metrics = (await http.get(f"{gw.base}/metrics")).text
        assert float(re.search(r"^gateway_signal_wait_seconds ([0-9.]+)$", metrics, re.M).group(1)) > 0.5  # type: ignore[union-attr]


async def test_the_projected_wait_is_the_backlog_over_the_rate_of_a_full_window_and_a_reader_back_from_a_restart_drains(
    js: nats.js.JetStreamContext,
) -> None:
    """The wait limit on a real server with the loop clock stepped by hand: no rate before a full window; then the
    backlog over the rate; a reader draining fast (back from a restart) projects a short wait whatever piled up;
    one that stops moving projects nothing; a gap between readings starts a new window."""
    await ensure_streams(js)
    for n in range(20):
        await js.publish("signals.normalized", json.dumps({"n": n}).encode())
    sub = await js.pull_subscribe("signals.normalized", durable="mover", stream="SIGNALS")
    now = [100.0]
    backlog = Backlog(js, limit=0, retry_after_s=1, max_wait_s=2.0, time=lambda: now[0])

    async def take(n: int) -> None:
        for msg in await sub.fetch(n, timeout=2):
            await msg.ack_sync()  # the server has it before the next reading

    await backlog.read()  # first seen, with no pull open: not yet waited for
    await take(2)
    now[0] = 100.5
    await backlog.read()  # it moved: waited for, but half a window says no rate yet
    assert (backlog.behind, backlog.wait_s) == (18, 0.0)
    backlog.check()
    await take(2)
    now[0] = 101.0
    await backlog.read()  # 4 acknowledged over 1 s: 16 left at 4/s
    assert backlog.readers["mover"].rate == 4.0 and (backlog.behind, backlog.wait_s) == (16, 4.0)
    with pytest.raises(Problem) as refused:
        backlog.check()
    assert refused.value.code == "pipeline_behind" and "would wait 4.0 s" in refused.value.detail
    await take(12)
    now[0] = 102.0
    await backlog.read()  # draining fast: 12 in 1 s, 4 left
    assert backlog.readers["mover"].rate == 12.0 and backlog.wait_s == pytest.approx(4 / 12)
    backlog.check()
    now[0] = 103.0
    await backlog.read()  # not moving: no rate, no projected wait (the count limit is what holds then)
    assert backlog.readers["mover"].rate == 0.0 and (backlog.behind, backlog.wait_s) == (4, 0.0)
    await take(2)
    now[0] = 103.0 + STALE_S + 5
    await backlog.read()  # after a gap: a new window, no rate from across it
    assert backlog.readers["mover"].rate == 0.0 and backlog.readers["mover"].floor == 18


async def test_both_limits_0_turn_shedding_off_and_read_nothing(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, js: nats.js.JetStreamContext
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        settings = settings_for(nats_server.url, max_signal_backlog=0, max_signal_wait_s=0)
        async with running_gateway(settings) as gw:
            await gw.send(http, SIGNAL)
            await slow_reader(nc, js)
            for _ in range(10):
                assert (await gw.send(http, SIGNAL)).status_code == 202
                await asyncio.sleep(0.05)
            info = await js.consumer_info("SIGNALS", SLOW)
            assert (info.num_pending, info.num_ack_pending) == (10, 1)  # 11 stored, 1 taken, far over the limit
            assert gw.app.state.runtime.ingest.backlog.read_at < 0  # never read
    finally:
        await nc.close()


async def test_a_reader_counts_while_it_moves_and_stops_counting_once_it_has_not_for_live_s(
    js: nats.js.JetStreamContext,
) -> None:
    """The liveness rule on a real server, with the loop clock stepped by hand: a reader first seen with no pull
    open counts only once its delivered position moves, and stops counting LIVE_S after it last moved."""
    await ensure_streams(js)
    for n in range(5):
        await js.publish("signals.normalized", json.dumps({"n": n}).encode())
    await js.add_consumer(
        "SIGNALS",
        api.ConsumerConfig(
            durable_name="mover", ack_policy=api.AckPolicy.EXPLICIT, filter_subject="signals.normalized"
        ),
    )
    now = [100.0]
    backlog = Backlog(js, limit=1, retry_after_s=1, time=lambda: now[0])

    await backlog.read()  # first seen, no pull open, never moved: not waited for
    assert (backlog.behind, backlog.slowest) == (0, None)
    backlog.check()

    sub = await js.pull_subscribe("signals.normalized", durable="mover", stream="SIGNALS")
    [taken] = await sub.fetch(1, timeout=2)  # it moves; the fetch is answered, so no pull stays open
    now[0] += 1
    await backlog.read()
    assert (backlog.behind, backlog.slowest) == (5, "mover")  # 4 not delivered + 1 not acknowledged
    with pytest.raises(Problem) as refused:
        backlog.check()
    assert refused.value.code == "pipeline_behind" and refused.value.headers == {"Retry-After": "1"}

    now[0] += LIVE_S - 1  # still within LIVE_S of its last move
    await backlog.read()
    assert backlog.behind == 5
    now[0] += 2  # LIVE_S since it last moved: gone
    await backlog.read()
    assert (backlog.behind, backlog.slowest) == (0, None)
    backlog.check()

    now[0] += STALE_S + 1  # and a reading over the limit that has gone stale says nothing
    backlog.behind, backlog.read_at = 5, now[0] - STALE_S - 0.5
    backlog._asked_at = now[0]  # no new reading now
    backlog.check()
    await taken.ack()


async def test_an_agents_reader_holding_a_signal_for_its_conversation_closes_nothing(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, js: nats.js.JetStreamContext
) -> None:
    """The agent holds each signal for a whole conversation with the model: its wait is by design, and the gateway
    does not shed for it (the same slow reader under another name is refused: the first test)."""
    assert waited_for("bridge") and waited_for("bridge-momo") and waited_for("execsim-market")
    assert waited_for("agentx") and waited_for("authority-market-agent")
    assert not waited_for(durable_of("paper")) and not waited_for(durable_of("momo"))
    nc = await nats.connect(nats_server.url)
    try:
        settings = settings_for(nats_server.url, max_signal_backlog=3, max_signal_wait_s=0.3)
        async with running_gateway(settings) as gw:
            await gw.send(http, SIGNAL)
            await slow_reader(nc, js, durable_of("paper"))
            for _ in range(15):
                assert (await gw.send(http, SIGNAL)).status_code == 202
                await asyncio.sleep(0.05)
            info = await js.consumer_info("SIGNALS", durable_of("paper"))
            assert (info.num_pending, info.num_ack_pending, info.num_waiting) == (15, 1, 1)  # far over both limits
            backlog = gw.app.state.runtime.ingest.backlog
            assert backlog.read_at > 0 and (backlog.behind, backlog.wait_s) == (0, 0.0)
    finally:
        await nc.close()
