"""How long does writing a snapshot stall the authority's event loop? Prints numbers, asserts nothing.

The authority snapshots its projection every few thousand journal entries while it goes on deciding. Building the
snapshot (`Account.to_snapshot`, JSON, zlib) is tens of ms of Python. This bench folds `--orders` filled market
orders (the entries `bench/journal_fold.py` writes) into an account, then builds its snapshot the two ways while a
1 ms ticker runs on the event loop, and prints how long the build took and how late the ticker was (its worst
stall, and the sum of its stalls over 2 ms):

- thread: `detached()` copy on the loop, `to_snapshot` and the encoding in a thread (what the authority did): the
  thread shares the GIL with the loop;
- fork: `bus.snapshot.ForkedSnapshot`, a child encodes the copy-on-write image; the loop pays the fork.

    .venv/bin/python bench/snapshot_stall.py [--orders 30000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bus.snapshot as snapshot  # noqa: E402
from bench.journal_fold import entries  # noqa: E402
from tools.account import Account  # noqa: E402


async def stalls(job: Callable[[], Awaitable[object]]) -> tuple[float, float, float]:
    """(the job's time, the ticker's worst stall, the sum of its stalls over 2 ms), in ms."""
    lags: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.2)
    lags.clear()
    started = time.perf_counter()
    await job()
    took = time.perf_counter() - started
    await asyncio.sleep(0.1)
    running = False
    await task
    return 1000 * took, 1000 * max(lags), 1000 * sum(x for x in lags if x > 0.002)


async def run(orders: int, repeat: int) -> None:
    account = Account(account_id="paper")
    seq = 0
    for i in range(orders):
        for event in entries(i):
            seq += 1
            account.apply(event, seq)
    gc.freeze()  # as the services do once started (observability.heap)

    async def in_thread() -> None:
        copy = account.detached()
        data = await asyncio.to_thread(copy.to_snapshot)
        await asyncio.to_thread(snapshot._encode, data)

    async def forked() -> None:
        await snapshot.ForkedSnapshot(account).blob()

    print(f"snapshot of an account with {orders} orders ({seq} journal entries) behind it, {repeat} times each")
    for _ in range(repeat):
        for name, job in (("thread", in_thread), ("fork", forked)):
            took, worst, total = await stalls(job)
            print(
                f"  {name:<6} built in {took:6.1f} ms; event loop: worst stall {worst:5.1f} ms, "
                f"stalls > 2 ms {total:6.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.orders, args.repeat))


if __name__ == "__main__":
    main()
