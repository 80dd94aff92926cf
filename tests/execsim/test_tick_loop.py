"""The simulator's clock-driven loop ticks the engine only while orders are open: an idle simulator does not wake
20 times a second for nothing, and an order that a batch leaves resting (here: one still inside its latency) is
worked as soon as its time comes, however long the loop slept before it."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import nats

from bus.jetstream import publish
from execsim import service as execsim_service
from execsim.engine import Engine, EngineConfig
from execsim.service import ExecSimService
from schemas.subjects import Subject
from tests.conftest import stream_count
from tests.execsim.engine_helpers import intent
from tests.execsim.process_helpers import signal
from tests.execsim.test_finished_orders import _intent_messages
from tools.clock import LiveClock

LATENCY_MS = 500  # long enough that a stalled test machine still checks the order before it fills


async def test_an_idle_simulator_does_not_tick_and_a_resting_order_wakes_it(js: nats.js.JetStreamContext) -> None:
    price = signal("AAPL", "100")
    await publish(js, Subject.SIGNALS_NORMALIZED, price, msg_id=price.signal_id, correlation_id="p")
    engine = Engine(LiveClock(), EngineConfig(latency_ms=LATENCY_MS))
    service = ExecSimService(js, engine)
    ticks = looks = 0  # the engine's ticks, and the loop's looks at whether anything is open (one per wake-up)
    real_tick, real_open_count = engine.tick, engine.open_count

    def counting_tick() -> Any:
        nonlocal ticks
        ticks += 1
        return real_tick()

    def counting_open_count() -> int:
        nonlocal looks
        looks += 1
        return real_open_count()

    engine.tick = counting_tick  # type: ignore[method-assign]
    engine.open_count = counting_open_count  # type: ignore[method-assign]
    stop = asyncio.Event()
    loop = asyncio.create_task(execsim_service._tick_loop(service, stop))
    try:
        await asyncio.sleep(10 * execsim_service.TICK_SECONDS)
        assert ticks == 0 and looks <= 1, f"nothing is open: the loop woke {looks} times"

        late = intent("late", quantity=1, at=datetime.now(UTC))
        await publish(js, Subject.ORDER_INTENT, late, msg_id="late", correlation_id="late")
        [msg] = await _intent_messages(js, 1)
        await service.handle_batch([msg])
        assert engine.open_count() == 1, "inside its latency the order rests"
        assert await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value) == 0

        async with asyncio.timeout(LATENCY_MS / 1000 + 2):
            while await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value) == 0:
                await asyncio.sleep(0.02)
        assert engine.open_count() == 0 and ticks >= 1
        await asyncio.sleep(5 * execsim_service.TICK_SECONDS)  # let the loop see nothing is open any more
        settled, looked = ticks, looks
        await asyncio.sleep(10 * execsim_service.TICK_SECONDS)
        assert (ticks, looks) == (settled, looked), "the fill closed the last open order: the loop sleeps again"
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(loop, 2)
