"""The event loop every long-running service runs on: uvloop where it is installed (a dependency on Linux and macOS),
else asyncio's own.

Most of a service's CPU goes to moving NATS messages and HTTP requests through the loop (epoll, socket writes,
callbacks), which uvloop does in C: bench/pipeline_vs_gateway.py prints the CPU per signal of each process.
`TRADING_MCP_EVENT_LOOP=asyncio` runs asyncio's loop anyway (to compare, or to rule the loop out when chasing a
bug); `uvloop` insists on it; `auto` (the default) takes uvloop when it imports.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "TRADING_MCP_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


class LoopChoiceError(SystemExit):
    """`TRADING_MCP_EVENT_LOOP` names no loop, or uvloop is asked for and not installed."""


def loop_name(environ: dict[str, str] | None = None) -> str:
    """The loop a service started now runs on: "uvloop" or "asyncio"."""
    wanted = (os.environ if environ is None else environ).get(ENV, "auto").strip().lower() or "auto"
    if wanted not in CHOICES:
        raise LoopChoiceError(f"{ENV}={wanted!r} names no event loop: use one of {', '.join(CHOICES)}")
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError as exc:
        if wanted == "uvloop":
            raise LoopChoiceError(f"{ENV}=uvloop but uvloop is not installed ({exc}): pip install uvloop") from exc
        return "asyncio"
    return "uvloop"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What `asyncio.Runner` builds its loop with (None: asyncio's own)."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    try:
        factory = loop_factory()
    except LoopChoiceError:
        main.close()  # never awaited: no "coroutine was never awaited" warning on the way out
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


async def wait_any(*events: asyncio.Event) -> None:
    """Until one of `events` is set (a stop, or work to do), with no waiter left behind."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
