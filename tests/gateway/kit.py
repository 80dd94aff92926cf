"""Gateway test kit: sources, a real uvicorn gateway with a TestClock, stream readers. Fixtures: conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import uvicorn
from nats.js import api

from bus.embedded import free_port
from gateway import signing
from gateway.app import create_app
from gateway.service import uvicorn_config
from gateway.settings import GatewaySettings
from gateway.sources import SourceConfig
from tests.conftest import Webhook, wait_for
from tools.clock import TestClock

SECRET = signing.new_secret()
OLD_SECRET = signing.new_secret()
TV_SECRET = "tv-secret-0123456789abcdef"


def sources() -> list[SourceConfig]:
    return [
        SourceConfig(name="default", secrets=(SECRET, OLD_SECRET)),
        SourceConfig(name="tradingview", mode="tradingview", secrets=(TV_SECRET,)),
        SourceConfig(name="limited", secrets=(SECRET,), allowed_symbols=frozenset({"AAPL"}), rate_per_s=1, burst=2),
        SourceConfig(name="tvip", mode="tradingview", secrets=(TV_SECRET,), allowed_ips=("tradingview",)),
    ]


def settings_for(nats_url: str, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(nats_url=nats_url, sources=overrides.pop("sources", sources()), **overrides)


@dataclass
class Gateway:
    base: str
    clock: TestClock
    app: Any = None

    def webhook(self, source: str | None = None, secret: str = SECRET) -> Webhook:
        return Webhook(f"{self.base}/webhook" + (f"/{source}" if source else ""), secret)

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    async def send(self, http: httpx.AsyncClient, payload: Any, source: str | None = None, **kw: Any) -> httpx.Response:
        kw.setdefault("ts", self.now())
        return await self.webhook(source, kw.pop("secret", SECRET)).send(http, payload, **kw)

    async def tradingview(
        self, http: httpx.AsyncClient, payload: dict[str, Any], source: str = "tradingview", **kw: Any
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = {"content-type": "text/plain; charset=utf-8", **kw.pop("headers", {})}
        return await http.post(f"{self.base}/webhook/{source}", content=body, headers=headers)


@contextlib.asynccontextmanager
async def serve_gateway_app(app: Any, port: int, settings: GatewaySettings) -> AsyncIterator[str]:
    """Like tests.conftest.serve_uvicorn, but configured as gateway.service runs it (no proxy headers, the
    head and body deadlines)."""
    server = uvicorn.Server(uvicorn_config(app, settings, port))
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started, 10, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def running_gateway(
    settings: GatewaySettings, clock: TestClock | None = None, port: int | None = None
) -> AsyncIterator[Gateway]:
    clock = clock or TestClock()
    app = create_app(settings, clock)
    async with serve_gateway_app(app, port or free_port(), settings) as base:
        yield Gateway(base, clock, app)


async def stored_signals(js: nats.js.JetStreamContext) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every message in SIGNALS: (headers, decoded body)."""
    info = await js.stream_info("SIGNALS")
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        msg = await js.get_msg("SIGNALS", seq)
        out.append((dict(msg.headers or {}), json.loads(msg.data or b"{}")))
    return out


def tv_alert(**overrides: Any) -> dict[str, Any]:
    """A TradingView strategy alert as TradingView renders the README's message."""
    alert = {
        "secret": TV_SECRET,
        "ticker": "BTCUSD",
        "exchange": "BITSTAMP",
        "interval": "15",
        "open": 64000.5,
        "high": 64210,
        "low": 63950.25,
        "close": 64100.75,
        "volume": 12.345,
        "time": "2026-01-02T14:15:00Z",
        "timenow": "2026-01-02T14:30:01Z",
        "action": "buy",
        "contracts": 0.5,
        "order_id": "Long entry",
        "position_size": 0.5,
        "market_position": "long",
    }
    alert.update(overrides)
    return {k: v for k, v in alert.items() if v is not None}


@contextlib.contextmanager
def gateway_in_thread(settings: GatewaySettings, clock: TestClock | None = None) -> Iterator[Gateway]:
    """A real uvicorn gateway on its own event loop in a thread, for synchronous (Hypothesis) tests."""
    clock = clock or TestClock()
    port = free_port()
    server = uvicorn.Server(uvicorn_config(create_app(settings, clock), settings, port))
    thread = threading.Thread(target=server.run, name="gateway-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the gateway did not start within 10 s")
        time.sleep(0.01)  # the thread's loop is what we wait on; no asyncio loop here to await
    try:
        yield Gateway(f"http://127.0.0.1:{port}", clock)
    finally:
        server.should_exit = True
        thread.join(10)


def count_signals(nats_url: str) -> int:
    async def count() -> int:
        nc = await nats.connect(nats_url)
        try:
            return int((await nc.jetstream().stream_info("SIGNALS")).state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())


SLOW = "slow-reader"


async def _open_pull(nc: nats.NATS, durable: str, inbox: str) -> None:
    """A pull request for one message that waits up to 60 s on the server (the reader is alive while it is open)."""
    await nc.publish(
        f"$JS.API.CONSUMER.MSG.NEXT.SIGNALS.{durable}",
        json.dumps({"batch": 1, "expires": 60_000_000_000}).encode(),
        reply=inbox,
    )
    await nc.flush()


async def slow_reader(nc: nats.NATS, js: nats.js.JetStreamContext, durable: str = SLOW) -> None:
    """A durable reader that takes one signal and never acknowledges it: with max_ack_pending 1 its next pull
    stays open on the server, so it is alive, and everything after its first signal waits for it."""
    await js.add_consumer(
        "SIGNALS",
        api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            max_ack_pending=1,
            ack_wait=300,
            filter_subject="signals.normalized",
        ),
    )
    inbox = nc.new_inbox()
    await nc.subscribe(inbox)  # deliveries land here and are never acknowledged
    await _open_pull(nc, durable, inbox)
    await _open_pull(nc, durable, inbox)
