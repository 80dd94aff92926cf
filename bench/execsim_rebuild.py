"""How long a simulator takes to rebuild an account (a restart, a takeover after SIGKILL) with history behind it, from
the whole streams and from its snapshot (KV EXECSIM_SNAPSHOT) plus the streams' tails. Prints numbers, asserts nothing.

    .venv/bin/python bench/execsim_rebuild.py                  # 0, 10k and 100k orders of history
    .venv/bin/python bench/execsim_rebuild.py --orders 0 20000

Each history order is what the live simulator leaves for a market order (its signed-off intent on DECISIONS, its
fill on EXECUTIONS, as `execsim.engine.Engine` makes them and `ExecSimService` publishes them) and a bar on
SIGNALS that the market consumer acked; one order in 50 is a buy limit that stays resting. The snapshot is taken
`--behind` orders (default 200, about 6 s at 30 orders/s; the service writes one every 30 s) before the end, as the
service's snapshot loop would have left it. Timed, each twice: `rebuild` with a fresh fold (the whole streams) and
`rebuild` from the stored snapshot (`read_fold`, then the tails), and the snapshot's write and size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog  # noqa: E402
from nats.js import api  # noqa: E402

from bus.embedded import start_nats_server  # noqa: E402
from bus.jetstream import connect, ensure_streams  # noqa: E402
from execsim.engine import Engine, EngineConfig  # noqa: E402
from execsim.fold import StreamFold  # noqa: E402
from execsim.service import MARKET_DURABLE, FinishedOrders, read_fold, rebuild, write_fold  # noqa: E402
from schemas.orders import Fill, OrderIntent, superseded_reports  # noqa: E402
from schemas.signals import NormalizedSignal  # noqa: E402
from schemas.subjects import Subject  # noqa: E402
from tools.clock import TestClock  # noqa: E402

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SYMBOLS = ("AAPL", "MSFT", "IBM", "GOOG", "AMZN", "NVDA")


class History:
    """Writes orders (and their bars) to the streams as the live simulator leaves them."""

    def __init__(self, js) -> None:  # type: ignore[no-untyped-def]
        self.js = js
        self.engine = Engine(TestClock(T0), EngineConfig())
        self.n = 0

    async def write(self, count: int) -> None:
        pending = []
        for _ in range(count):
            i, self.n = self.n, self.n + 1
            symbol = SYMBOLS[i % len(SYMBOLS)]
            price = Decimal(100) + Decimal(i % 97) / 100
            self.engine.set_price(symbol, price)
            bar = NormalizedSignal(
                signal_id=f"bar-{i}",
                source="bench",
                symbol=symbol,
                price=price,
                received_at=T0 + timedelta(seconds=i),
                correlation_id=f"c{i}",
            )
            pending.append(
                await self.js.publish_async(Subject.SIGNALS_NORMALIZED.value, bar.model_dump_json().encode())
            )
            limit = i % 50 == 0
            intent = OrderIntent(
                client_order_id=f"o{i}",
                symbol=symbol,
                side="buy" if limit or i % 2 else "sell",
                quantity=Decimal(1 + i % 5),
                order_type="limit" if limit else "market",
                limit_price=Decimal(50) if limit else None,
                time_in_force="GTC",
                reference_price=price,
                origin="bridge",
                created_at=T0,
                correlation_id=f"c{i}",
            )
            pending.append(await self.js.publish_async(Subject.ORDER_INTENT.value, intent.model_dump_json().encode()))
            events = self.engine.submit(intent)
            superseded = superseded_reports(events)  # what the service does not publish (ExecSimService._publish)
            for event in (e for i, e in enumerate(events) if i not in superseded):
                subject = Subject.EXECUTION_FILL if isinstance(event, Fill) else Subject.EXECUTION_REPORT
                pending.append(await self.js.publish_async(subject.value, event.model_dump_json().encode()))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)

    async def market_acked(self) -> None:
        """The market consumer, acked up to the end of SIGNALS (a fresh durable starting after the last bar)."""
        last = (await self.js.stream_info("SIGNALS")).state.last_seq
        with contextlib.suppress(Exception):  # not there yet
            await self.js.delete_consumer("SIGNALS", MARKET_DURABLE)
        await self.js.add_consumer(
            "SIGNALS",
            api.ConsumerConfig(
                durable_name=MARKET_DURABLE,
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE if last else api.DeliverPolicy.ALL,
                opt_start_seq=last + 1 if last else None,
                filter_subject=Subject.SIGNALS_NORMALIZED.value,
            ),
        )


async def timed_rebuild(js, fold: StreamFold | None) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    """Seconds to rebuild account paper, the orders restored and the open ones."""
    engine = Engine(TestClock(T0), EngineConfig())
    started = time.perf_counter()
    if fold is None:
        fold = await read_fold(js, "paper", MARKET_DURABLE, None)
        assert fold is not None, "the snapshot was not usable"
    restored = await rebuild(js, engine, MARKET_DURABLE, account="paper", finished=FinishedOrders(), fold=fold)
    return time.perf_counter() - started, restored, engine.open_count()


async def run(orders: list[int], behind: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        try:
            nc = await connect(server.url, "bench")
            js = nc.jetstream()
            await ensure_streams(js)
            history = History(js)
            print(
                f"{'orders':>7} {'messages':>9} | {'whole s':>7} {'snapshot+tail s':>15} {'x faster':>8}"
                f" | {'write s':>7} {'snap KB':>7} | {'restored':>8} {'open':>5}"
            )
            for target in orders:
                snap_at = max(history.n, target - behind)
                await history.write(snap_at - history.n)
                await history.market_acked()
                fold = StreamFold("paper")
                await rebuild(js, Engine(TestClock(T0), EngineConfig()), MARKET_DURABLE, account="paper", fold=fold)
                started = time.perf_counter()
                size = await write_fold(js, fold, None)
                write_s = time.perf_counter() - started
                await history.write(target - history.n)
                await history.market_acked()
                messages = 0
                for stream in ("SIGNALS", "DECISIONS", "EXECUTIONS"):
                    messages += (await js.stream_info(stream)).state.messages
                for _ in range(repeat):
                    whole_s, restored, open_ = await timed_rebuild(js, StreamFold("paper"))
                    snap_s, restored_s, open_s = await timed_rebuild(js, None)
                    same = "" if (restored_s, open_s) == (restored, open_) else f"  DIFFERS: {restored_s}/{open_s}"
                    print(
                        f"{target:>7} {messages:>9} | {whole_s:>7.2f} {snap_s:>15.3f} {whole_s / snap_s:>8.1f}"
                        f" | {write_s:>7.3f} {size / 1024:>7.0f} | {restored:>8} {open_:>5}{same}",
                        flush=True,
                    )
            await nc.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="*", default=[0, 10_000, 100_000])
    parser.add_argument("--behind", type=int, default=200, help="orders written after the snapshot (default 200)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per history (default 2)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # no per-run info lines
    asyncio.run(run(args.orders, args.behind, args.repeat))


if __name__ == "__main__":
    main()
