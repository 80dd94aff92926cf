"""Stopping a lag watcher ends it even when the cancel lands on a reply that has just arrived.

Python 3.11's `asyncio.wait_for`, which every nats-py request awaits, returns the result instead of raising
when it is cancelled in the same loop pass as its future completes. A single `task.cancel()` is then lost,
and the watcher samples forever (this hung the lag test in CI). The stand-in below is not a NATS double: it
is the smallest object whose `consumer_info` awaits `wait_for` exactly as nats-py does, so the race happens
on every run instead of once in a few hundred.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from observability.consumer_lag import stop_watching, watch_consumer_lag


class ReplyLandsWithTheCancel:
    def __init__(self) -> None:
        self.calls = 0
        self.reply: asyncio.Future[Any] | None = None
        self.waiting = asyncio.Event()

    async def consumer_info(self, stream: str, durable: str, timeout: float) -> Any:
        self.calls += 1
        self.reply = asyncio.get_running_loop().create_future()
        self.waiting.set()
        return await asyncio.wait_for(self.reply, timeout)


async def test_stop_watching_ends_the_watcher_when_the_first_cancel_is_swallowed() -> None:
    js = ReplyLandsWithTheCancel()
    watcher = watch_consumer_lag(js, [("DECISIONS", "race")], interval=0.01)  # type: ignore[arg-type]
    await asyncio.wait_for(js.waiting.wait(), 5)
    assert js.reply is not None
    js.reply.set_result(SimpleNamespace(num_pending=0, num_ack_pending=0))
    # The reply is done and the cancel lands in the same pass: wait_for on 3.11 swallows a single cancel.
    stopping = asyncio.create_task(stop_watching(watcher))
    done, _ = await asyncio.wait({stopping}, timeout=3)
    try:
        assert done, f"stop_watching did not end the watcher ({js.calls} samples so far)"
        assert watcher.cancelled()
    finally:
        while not watcher.done():  # never leave a sampler behind, whatever the result
            watcher.cancel()
            await asyncio.wait({watcher}, timeout=0.1)
        stopping.cancel()
