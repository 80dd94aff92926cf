"""How long a strategy-mode bridge takes to warm its strategies up at start with history behind it: replaying every
signal its consumer acked, and from its strategy snapshot (KV STRATEGY_SNAPSHOT) plus the signals acked after it.
Prints numbers, asserts nothing.

    .venv/bin/python bench/strategy_warmup.py                    # 10k and 100k signals of history
    .venv/bin/python bench/strategy_warmup.py --signals 10000 1000000

The history is `--symbols` symbols (default 4) of random-walk daily bars on SIGNALS, every one acked by the bridge's
durable consumer, run by the default strategy (hybrid: EWMA volatility and a variance ratio, unbounded memory). The
snapshot is taken `--behind` signals (default 200: what 30 s leaves behind at a few signals a second) before the
end, as the bridge's snapshot loop would have left it. Each timed twice: `warm_up` with no snapshot stored, and
`warm_up` from the stored one; and the snapshot's write and size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
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
from decisions.strategy_mode import (  # noqa: E402
    SNAPSHOT_BUCKET,
    StrategyMode,
    replay_acked_signals,
    warm_up,
    write_strategy_snapshot,
)
from schemas.signals import NormalizedSignal  # noqa: E402
from schemas.subjects import Subject  # noqa: E402

DURABLE = "bridge"
T0 = datetime(1990, 1, 1, tzinfo=UTC)


async def publish_history(js, start: int, n: int, symbols: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(start)
    prices = [100.0] * symbols
    pending = []
    for i in range(start, start + n):
        k = i % symbols
        o = prices[k]
        prices[k] = c = max(1.0, o * (1 + rng.gauss(0.0003, 0.02)))
        signal = NormalizedSignal(
            signal_id=f"sig_{i:012d}",
            source="bench",
            symbol=f"S{k}",
            price=Decimal(f"{c:.4f}"),
            open=Decimal(f"{o:.4f}"),
            high=Decimal(f"{max(o, c) * 1.004:.4f}"),
            low=Decimal(f"{min(o, c) * 0.996:.4f}"),
            close=Decimal(f"{c:.4f}"),
            signal_time=T0 + timedelta(days=i // symbols),
            received_at=T0 + timedelta(days=i // symbols),
            correlation_id=f"c{i}",
        )
        pending.append(await js.publish_async(Subject.SIGNALS_NORMALIZED.value, signal.model_dump_json().encode()))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def acked_up_to_the_end(js) -> int:  # type: ignore[no-untyped-def]
    """The bridge's durable, acked up to the end of SIGNALS (a fresh durable starting after the last signal)."""
    last = (await js.stream_info("SIGNALS")).state.last_seq
    with contextlib.suppress(Exception):
        await js.delete_consumer("SIGNALS", DURABLE)
    await js.add_consumer(
        "SIGNALS",
        api.ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=last + 1,
            filter_subject=Subject.SIGNALS_NORMALIZED.value,
        ),
    )
    floor = (await js.consumer_info("SIGNALS", DURABLE)).ack_floor.stream_seq
    assert floor == last, (floor, last)
    return int(last)


async def timed_warm_up(js) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    mode = StrategyMode()
    started = time.perf_counter()
    fold = await warm_up(js, "paper", DURABLE, mode, lambda s: True)
    return time.perf_counter() - started, fold.restored_from, fold.replayed


async def run(sizes: list[int], behind: int, symbols: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        try:
            nc = await connect(server.url, "bench")
            js = nc.jetstream()
            await ensure_streams(js)
            await js.create_key_value(api.KeyValueConfig(bucket=SNAPSHOT_BUCKET, history=1))
            have = 0
            print(f"strategy warm-up, hybrid on {symbols} symbols; snapshot {behind} signals before the end")
            for n in sizes:
                await publish_history(js, have, n - have, symbols)
                have = n
                last = await acked_up_to_the_end(js)
                kv = await js.key_value(SNAPSHOT_BUCKET)
                with contextlib.suppress(Exception):
                    await kv.purge("paper")
                full = [await timed_warm_up(js) for _ in range(repeat)]
                # the snapshot the live loop would have left `behind` signals ago
                mode = StrategyMode()
                await replay_acked_signals(js, DURABLE, mode.warm, upto=last - behind)
                started = time.perf_counter()
                size = await write_strategy_snapshot(js, "paper", mode, last - behind)
                wrote = time.perf_counter() - started
                snap = [await timed_warm_up(js) for _ in range(repeat)]
                print(
                    f"  {n:>9,} signals: every acked signal "
                    + " / ".join(f"{t:.2f} s" for t, _, _ in full)
                    + f" ({full[0][2]:,} replayed); from the snapshot "
                    + " / ".join(f"{t:.3f} s" for t, _, _ in snap)
                    + f" (from signal {snap[0][1]:,}, {snap[0][2]:,} replayed);"
                    + f" snapshot {size:,} bytes in {wrote:.3f} s"
                )
            await nc.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--behind", type=int, default=200)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(run(sorted(args.signals), args.behind, args.symbols, args.repeat))


if __name__ == "__main__":
    main()
