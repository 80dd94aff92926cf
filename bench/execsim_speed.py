"""Orders per second through the pure engine and through the NATS service end to end. Prints numbers.

Targets on 2 cores: >= 50,000 orders/s in the engine; the service keeps up with the gateway's
accepted rate (a few thousand signals/s). Run: `.venv/bin/python bench/execsim_speed.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bus.embedded import free_port, start_nats_server  # noqa: E402
from bus.jetstream import connect, ensure_streams, publish  # noqa: E402
from execsim.engine import Engine, EngineConfig  # noqa: E402
from execsim.service import run_execsim  # noqa: E402
from execsim.settings import ExecSimSettings  # noqa: E402
from schemas.market import Bar  # noqa: E402
from schemas.orders import OrderIntent  # noqa: E402
from schemas.subjects import Subject  # noqa: E402
from tools.clock import TestClock  # noqa: E402

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def _intents(n: int, prefix: str, limit_every: int = 0) -> list[OrderIntent]:
    out = []
    for i in range(n):
        limit = bool(limit_every) and i % limit_every == 0
        out.append(
            OrderIntent(
                client_order_id=f"{prefix}{i}",
                symbol=f"S{i % 20}",
                side="buy" if i % 2 else "sell",
                quantity=Decimal(1 + i % 5),
                order_type="limit" if limit else "market",
                limit_price=Decimal(99) if limit else None,
                time_in_force="GTC",
                reference_price=Decimal(100),
                origin="mcp",
                created_at=T0,
                correlation_id=f"c{i}",
            )
        )
    return out


def bench_engine(n: int = 100_000) -> None:
    config = EngineConfig(slippage_bps=Decimal(2), fee_bps=Decimal(1), spread_bps=Decimal(4))
    for label, intents in (("market", _intents(n, "m")), ("mixed 10% limits", _intents(n, "x", limit_every=10))):
        engine = Engine(TestClock(T0), config)
        for s in range(20):
            engine.set_price(f"S{s}", Decimal(100))
        started = time.perf_counter()
        events = 0
        for intent in intents:
            events += len(engine.submit(intent))
        elapsed = time.perf_counter() - started
        print(f"engine submit ({label}): {n / elapsed:,.0f} orders/s  ({events:,} events, {elapsed:.2f} s)")
    engine = Engine(TestClock(T0), config)
    for intent in _intents(10_000, "r", limit_every=1):
        engine.submit(intent)
    bars = [
        Bar(
            symbol=f"S{i % 20}",
            ts=T0,
            open=Decimal(100),
            high=Decimal(101),
            low=Decimal(98),
            close=Decimal(100),
            volume=Decimal(0),
        )
        for i in range(20)
    ]
    started = time.perf_counter()
    for b in bars:
        engine.on_bar(b)
    elapsed = time.perf_counter() - started
    print(f"engine on_bar: 10,000 resting limits worked in {elapsed * 1000:.1f} ms ({10_000 / elapsed:,.0f} orders/s)")


async def bench_service(n: int = 5_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        try:
            settings = ExecSimSettings(nats_url=server.url, port=free_port())
            task = asyncio.create_task(run_execsim(settings))
            nc = await connect(server.url, "bench")
            js = nc.jetstream()
            await ensure_streams(js)
            intents = _intents(n, "svc")
            started = time.perf_counter()
            for i in range(0, n, 200):
                await asyncio.gather(
                    *(
                        publish(
                            js, Subject.ORDER_INTENT, it, msg_id=it.client_order_id, correlation_id=it.correlation_id
                        )
                        for it in intents[i : i + 200]
                    )
                )
            published = time.perf_counter() - started
            while True:
                info = await js.stream_info("EXECUTIONS", subjects_filter=Subject.EXECUTION_FILL.value)
                if (info.state.subjects or {}).get(Subject.EXECUTION_FILL.value, 0) >= n:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            print(
                f"service end to end: {n:,} intents published in {published:.2f} s ({n / published:,.0f}/s), "
                f"all filled after {elapsed:.2f} s -> {n / elapsed:,.0f} orders/s "
                f"({3 * n / elapsed:,.0f} stored events/s)"
            )
            await nc.close()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        finally:
            server.stop()


if __name__ == "__main__":
    from observability.logging import configure_logging

    configure_logging("bench", "WARNING")
    bench_engine()
    asyncio.run(bench_service())
    print("(2 shared cores: numbers are noisy; rerun for a range)")
