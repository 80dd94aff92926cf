"""`bus.jetstream.fetch_loop`, the persistent pull every consumer runs, against a real nats-server.

It must hand each message over as it is stored (no per-message pull request), in order, each once; and it must
pull again on its own when the server it pulled from was killed (the open pull requests die with it, silently)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
from nats.aio.msg import Msg
from nats.js import api

from bus.embedded import EmbeddedNats, start_nats_server
from bus.jetstream import PULL_SILENCE_S, fetch_loop
from tests.conftest import wait_for


async def _consumer(js: nats.js.JetStreamContext, stream: str) -> nats.js.JetStreamContext.PullSubscription:
    await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    config = api.ConsumerConfig(durable_name="d", ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30)
    return await js.pull_subscribe(f"{stream.lower()}.x", durable="d", stream=stream, config=config)


async def _counted_consumer(
    nc: nats.NATS, stream: str
) -> tuple[nats.js.JetStreamContext, nats.js.JetStreamContext.PullSubscription, list[str]]:
    """A durable consumer on a fresh stream, and the list of the pull requests sent for it (read off the bus)."""
    js = nc.jetstream()
    sub = await _consumer(js, stream)
    pulls: list[str] = []

    async def on_pull(m: Msg) -> None:
        pulls.append(m.subject)

    await nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.d", cb=on_pull)
    return js, sub, pulls


async def test_messages_arrive_as_stored_in_order_once_with_few_pull_requests(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    js, sub, pulls = await _counted_consumer(nc, "PULL")
    got: list[int] = []
    batches: list[int] = []
    latency: list[float] = []
    stop = asyncio.Event()

    async def on_batch(msgs: list[Msg]) -> None:
        batches.append(len(msgs))
        for m in msgs:
            n, sent = m.data.split(b" ")
            got.append(int(n))
            latency.append(time.monotonic() - float(sent))
            await m.ack()

    loop = asyncio.create_task(fetch_loop(sub, 64, stop.is_set, on_batch, "test"))
    try:
        for n in range(300):  # one at a time, as a quiet market sends them
            await js.publish("pull.x", f"{n} {time.monotonic()}".encode())
            if n % 3 == 0:
                await asyncio.sleep(0.002)
        await wait_for(lambda: len(got) >= 300, 10, "every message handed over")
        assert got == list(range(300))  # in stream order, each once
        assert max(batches) <= 64
        # a fetch per handover would be hundreds of pull requests (two per fetch); top-ups at half of 64 are ~10
        assert len(pulls) <= 300 // 32 + 3, len(pulls)
        assert sorted(latency)[len(latency) // 2] < 0.05  # handed over as stored, not at a pull's expiry

        async def all_acked() -> bool:
            info = await js.consumer_info("PULL", "d")
            return info.num_ack_pending == 0 and info.num_pending == 0

        await wait_for(all_acked, 5, "every message acked, none pending")
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
        await nc.close()


async def test_the_loop_pulls_again_after_the_server_restarts(tmp_path: Path) -> None:
    server = start_nats_server(tmp_path / "nats")
    port = server.port
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        sub = await _consumer(js, "AGAIN")
        got: list[int] = []
        stop = asyncio.Event()

        async def on_batch(msgs: list[Msg]) -> None:
            for m in msgs:
                got.append(int(m.data))
                await m.ack()

        loop = asyncio.create_task(fetch_loop(sub, 64, stop.is_set, on_batch, "test"))
        await js.publish("again.x", b"1")
        await wait_for(lambda: got == [1], 5, "the first message")
        assert server.process is not None
        server.process.kill()  # kill -9: the open pull requests die with the server, and nobody says so
        server.process.wait(10)
        server = start_nats_server(tmp_path / "nats", port=port)  # same store, same port
        deadline = time.monotonic() + 20
        while True:  # until the client has reconnected and JetStream recovered its store
            try:
                await js.publish("again.x", b"2", timeout=2)
                break
            except Exception:
                assert time.monotonic() < deadline, "no publish stored within 20 s of the restart"
                await asyncio.sleep(0.2)
        # without a heartbeat from the dead pulls the loop pulls afresh after PULL_SILENCE_S
        await wait_for(lambda: got == [1, 2], PULL_SILENCE_S + 10, "the message stored after the restart")
        stop.set()
        await asyncio.wait_for(loop, 5)
    finally:
        await nc.close()
        server.stop()


async def test_a_slow_handler_does_not_make_the_loop_pull_again(nats_server: EmbeddedNats) -> None:
    """The open pull's heartbeats wait in the queue while a handler runs longer than PULL_SILENCE_S: that pull is
    alive, so no second one is sent (each would add a batch of prefetched messages, waiting out their ack_wait)."""
    nc = await nats.connect(nats_server.url)
    js, sub, pulls = await _counted_consumer(nc, "SLOW")
    got: list[bytes] = []
    stop = asyncio.Event()

    async def on_batch(msgs: list[Msg]) -> None:
        await asyncio.sleep(PULL_SILENCE_S + 1.5)  # slower than the silence rule, as a stalled journal append
        for m in msgs:
            got.append(m.data)
            await m.ack()

    loop = asyncio.create_task(fetch_loop(sub, 8, stop.is_set, on_batch, "test"))
    try:
        await js.publish("slow.x", b"1")
        await wait_for(lambda: got == [b"1"], 10, "the slow batch handled")
        await asyncio.sleep(0.5)  # the loop reads the queued heartbeats
        assert len(pulls) == 1, pulls  # 7 still owed by the first pull: no top-up, no second pull
        await js.publish("slow.x", b"2")
        await wait_for(lambda: got == [b"1", b"2"], 10, "the next message, on the same pull")
        assert len(pulls) == 1, pulls
    finally:
        stop.set()
        await asyncio.wait_for(loop, 15)
        await nc.close()
