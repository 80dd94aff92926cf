"""How long a fresh reader (a new stdio server, a restarted bridge, `risk show`) takes to fold the account journal,
with history behind it. Prints numbers, asserts nothing.

    .venv/bin/python bench/journal_fold.py                  # 10k and 50k orders of history (5 entries each)
    .venv/bin/python bench/journal_fold.py --orders 100000

Each order is five entries (mark, admitted, accepted report, fill, filled report): what the pipeline once journaled
for a filled market order, more than the three it journals now (mark, admitted, fill), so a conservative history.
The journal is written straight to a real nats-server, then folded the way
`bus.account_view.AppState` folds it (`bus.journal.JournalFollower` into `tools.account.Account`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bus.embedded import start_nats_server
from bus.jetstream import connect
from bus.journal import JournalFollower, ensure_journal
from schemas.account import AccountEvent, Mark, journal_subject
from schemas.orders import Fill, OrderEvent, OrderIntent
from tools.account import Account

D = Decimal
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def entries(i: int) -> list[AccountEvent]:
    ts = T0 + timedelta(milliseconds=50 * i)
    sym = ("AAPL", "MSFT", "IBM", "CNF")[i % 4]
    side = "buy" if i % 2 else "sell"
    coid = f"sig-{i}"
    intent = OrderIntent(
        client_order_id=coid, symbol=sym, side=side, quantity=D(1), reference_price=D(100), origin="bridge",
        created_at=ts, correlation_id=coid,
    )  # fmt: skip

    def report(status: str, filled: int) -> OrderEvent:
        return OrderEvent(
            event_id=f"{coid}.{status}", client_order_id=coid, symbol=sym, side=side, status=status,  # type: ignore[arg-type]
            quantity=D(1), filled_quantity=D(filled), ts=ts, correlation_id=coid,
        )  # fmt: skip

    fill = Fill(
        fill_id=f"{coid}.f1", client_order_id=coid, symbol=sym, side=side, quantity=D(1), price=D(100),
        fee=D(0), ts=ts, correlation_id=coid,
    )  # fmt: skip
    return [
        AccountEvent(kind="mark", ts=ts, mark=Mark(symbol=sym, price=D(100) + D(i % 7), ts=ts)),
        AccountEvent(kind="admitted", ts=ts, intent=intent),
        AccountEvent(kind="report", ts=ts, report=report("accepted", 0)),
        AccountEvent(kind="fill", ts=ts, fill=fill),
        AccountEvent(kind="report", ts=ts, report=report("filled", 1)),
    ]


async def run(orders: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        try:
            nc = await connect(server.url, "bench")
            js = nc.jetstream()
            await ensure_journal(js)
            written = 0
            print(
                f"{'orders':>8} {'entries':>8} {'write s':>8} {'fold s':>7} {'entries/s':>10} {'peak RSS MB':>12} "
                f"{'RSS now MB':>11} {'snapshot KB':>12}"
            )
            for target in orders:
                started = time.perf_counter()
                pending = []
                for i in range(written, target):
                    for event in entries(i):
                        pending.append(await js.publish_async(journal_subject(), event.model_dump_json().encode()))
                    if len(pending) >= 2000:
                        await asyncio.gather(*pending)
                        pending.clear()
                await asyncio.gather(*pending)
                write_s = time.perf_counter() - started
                written = target
                account = Account()
                started = time.perf_counter()
                follower = JournalFollower(js, lambda seq, ev, a=account: a.apply(ev, seq), "paper")
                await follower.start()
                await asyncio.wait_for(follower.caught_up.wait(), 600)
                fold_s = time.perf_counter() - started
                await follower.stop()
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                gc.collect()
                now_mb = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
                snapshot_kb = len(zlib.compress(json.dumps(account.to_snapshot()).encode(), 6)) / 1024
                n = account.seq
                print(
                    f"{target:>8} {n:>8} {write_s:>8.1f} {fold_s:>7.1f} {n / fold_s:>10.0f} {rss:>12.0f} "
                    f"{now_mb:>11.0f} {snapshot_kb:>12.0f}",
                    flush=True,
                )
            await nc.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, nargs="*", default=[10_000, 50_000])
    asyncio.run(run(parser.parse_args().orders))


if __name__ == "__main__":
    main()
