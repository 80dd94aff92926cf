"""Export the lag of durable JetStream consumers (`num_pending`, `num_ack_pending`) as gauges.

A service starts one watcher for the durables it owns, in one line:
`watch_consumer_lag(js, [("DECISIONS", "execsim-orders")])`. The task runs until the event loop ends.
A consumer that does not exist yet (the service has not subscribed) is skipped, not an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from observability import metrics

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
_running: set[asyncio.Task[None]] = set()  # keep a reference: the loop holds tasks only weakly


async def sample_consumer_lag(js: JetStreamContext, consumers: Iterable[tuple[str, str]]) -> None:
    """Read consumer info once for each (stream, durable) and set the gauges."""
    for stream, durable in consumers:
        try:
            info = await js.consumer_info(stream, durable, timeout=2.0)
        except NotFoundError:
            continue
        except Exception as exc:  # a scrape helper must never take the service down
            metrics.jetstream_consumer_lag_errors_total.labels(stream, durable).inc()
            log.debug("consumer info for %s/%s failed: %s", stream, durable, exc)
            continue
        metrics.jetstream_consumer_pending_messages.labels(stream, durable).set(info.num_pending or 0)
        metrics.jetstream_consumer_ack_pending_messages.labels(stream, durable).set(info.num_ack_pending or 0)


async def _loop(js: JetStreamContext, consumers: list[tuple[str, str]], interval: float) -> None:
    while True:
        await sample_consumer_lag(js, consumers)
        await asyncio.sleep(interval)


def watch_consumer_lag(
    js: JetStreamContext, consumers: Iterable[tuple[str, str]], interval: float = DEFAULT_INTERVAL_S
) -> asyncio.Task[None]:
    """Start sampling every `interval` seconds in the running loop; cancel the task to stop."""
    task = asyncio.get_running_loop().create_task(_loop(js, list(consumers), interval), name="consumer-lag")
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def stop_watching(task: asyncio.Task[None]) -> None:
    """Cancel the watcher and wait until it has ended.

    One cancel is not always enough: on Python 3.11 `asyncio.wait_for` (under every nats-py request) drops a
    cancellation that lands in the same loop pass as the reply it was waiting for, and the loop goes on
    sampling. So cancel again until the task is done; the caller's own cancellation is never swallowed.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
