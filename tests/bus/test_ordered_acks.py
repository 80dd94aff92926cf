"""`bus.jetstream.consume` with lanes and `acks_in_order` (the strategy-mode bridge), against a real nats-server: a
fast symbol's messages are handled while a slow symbol's older one works, but none is acked before it, so the ack
floor is exactly what was handled; a message redelivered after its ack_wait is not handled twice; a failed one is
redelivered and handled again, and the ones after it are acked only then. Per-key acks (the default) leave the fast
symbol's messages acked above the floor: after a crash they are neither redelivered nor below it. Either way a
message redelivered while it is still in hand (a handler slower than ack_wait) is handled once."""

from __future__ import annotations

import asyncio
import collections

import nats
import pytest
from nats.aio.msg import Msg

from bus.embedded import EmbeddedNats
from bus.jetstream import connect, consume
from tests.conftest import wait_for


async def acks(js: nats.js.JetStreamContext) -> tuple[int, int]:
    """The consumer's ack floor (stream sequence) and how many delivered messages wait for an ack."""
    info = await js.consumer_info("LANES", "d")
    return int(info.ack_floor.stream_seq or 0), int(info.num_ack_pending)


@pytest.mark.parametrize("in_order", [True, False], ids=["acks_in_order", "acks_per_key"])
async def test_a_fast_symbol_is_not_acked_above_a_slow_one_still_working(
    nats_server: EmbeddedNats, in_order: bool
) -> None:
    nc = await connect(nats_server.url, "lanes-test")
    js = nc.jetstream()
    await js.add_stream(name="LANES", subjects=["lanes.>"])
    release, fail_once = asyncio.Event(), {"lanes.b": 0}
    handled: collections.Counter[tuple[str, bytes]] = collections.Counter()

    async def handler(msg: Msg) -> None:
        if msg.subject == "lanes.a":
            await release.wait()
        if msg.data == b"b2" and fail_once["lanes.b"] == 0:
            fail_once["lanes.b"] = 1
            raise RuntimeError("a handler fails once")
        handled[(msg.subject, msg.data)] += 1

    stop = asyncio.Event()
    task = asyncio.create_task(
        consume(
            js,
            stream="LANES",
            durable="d",
            subject="lanes.>",
            handler=handler,
            stop=stop,
            ack_wait=1.0,
            key=lambda m: m.subject,
            acks_in_order=in_order,
        )
    )
    try:
        for subject, data in (("lanes.a", b"a1"), ("lanes.b", b"b1"), ("lanes.b", b"b2"), ("lanes.b", b"b3")):
            await js.publish(subject, data)
        await wait_for(lambda: handled[("lanes.b", b"b3")] >= 1 and handled[("lanes.b", b"b2")] >= 1, 10, "b")
        await asyncio.sleep(2.5)  # past ack_wait: b1..b3 are redelivered if not acked
        if in_order:
            assert await acks(js) == (0, 4), "nothing is acked above a1, which is still working"
            assert all(handled[("lanes.b", d)] == 1 for d in (b"b1", b"b2", b"b3")), "a redelivery is not handled"
        else:
            assert await acks(js) == (0, 1), "b1..b3 acked above the floor: a restart neither replays nor gets them"
        release.set()

        async def all_acked() -> bool:
            return await acks(js) == (4, 0)

        await wait_for(all_acked, 10, "every message acked once a1 is handled")
        assert handled[("lanes.a", b"a1")] == 1, "its redeliveries past ack_wait, while it worked, are not handled"
        assert all(handled[("lanes.b", d)] == 1 for d in (b"b1", b"b2", b"b3"))
    finally:
        stop.set()
        await task
        await nc.close()
