"""Cold start with history, with and without the account snapshot (bus/snapshot.py). Prints numbers, asserts nothing.

    .venv/bin/python bench/cold_start.py                         # 0, 10k and 100k orders of history
    .venv/bin/python bench/cold_start.py --orders 0 10000

For each history (orders of five journal entries, as bench/journal_fold.py writes them) on a real nats-server:
- a fresh reader to caught-up (`read_snapshot`, then `JournalFollower` after it, into `tools.account.Account`), with
  no snapshot and with one taken 200 orders (1,000 entries) before the end (the authority writes one every 2,000);
- a fresh `trading-mcp serve --transport stdio` to its first tools/list answered, without and with the snapshot, against
  a trivial MCP server on the same SDK (one tool), and the ratios (target: at most 1.5x the trivial server); `exit`
  also counts the client closing the session and waiting for the process to end (`+exit`: that ratio, no snapshot).
With `--signals N`, N signals are in the SIGNALS stream too (every MCP server keeps the newest 10,000 in its
signal log). tools/list is answered while the server still folds, so the first tool call (`get_positions`, which
waits for the journal's fold; `ping` on the trivial server) is timed as well: `1st call`. `--tool list_signals`
times a first call that waits for the signal log instead.

Both servers run with their bytecode cached, as in an installation (pip compiles it; `make run` writes it): one warm-up
run each writes it under the temporary directory (PYTHONPYCACHEPREFIX), never into the checkout, even where
PYTHONDONTWRITEBYTECODE is set (it is on the shared machines, and serve then compiles ~70 of its own modules, ~0.2 s,
at every start). `--bytecode-as-is` keeps the environment's setting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from journal_fold import entries  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

from bus.embedded import start_nats_server  # noqa: E402
from bus.jetstream import connect, ensure_streams  # noqa: E402
from bus.journal import JournalFollower, ensure_journal  # noqa: E402
from bus.snapshot import BUCKET, read_snapshot, write_snapshot  # noqa: E402
from schemas.account import journal_subject  # noqa: E402
from schemas.signals import NormalizedSignal  # noqa: E402
from schemas.subjects import Subject  # noqa: E402
from tools.account import Account  # noqa: E402

EXE = str(Path(sys.executable).parent / "trading-mcp")
BEHIND = 200  # orders journaled after the snapshot
SERVE_TOOL = "get_positions"  # answered once the server's journal is caught up (the signal log loads beside it)
SYMBOLS = ("AAPL", "MSFT", "IBM", "GOOG", "AMZN", "NVDA")
TRIVIAL = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("trivial")


@server.tool()
def ping() -> str:
    \"\"\"Answer pong.\"\"\"
    return "pong"


server.run()
"""


async def reader(js, snapshot: bool) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Seconds for a fresh reader to catch up, and how many entries it folded."""
    started = time.perf_counter()
    account = Account()
    if snapshot:
        restored = await read_snapshot(js, "paper")
        assert restored is not None, "the snapshot was not usable"
        account = restored[1]
    folded = 0

    def apply(seq: int, event) -> None:  # type: ignore[no-untyped-def]
        nonlocal folded
        folded += 1
        account.apply(event, seq)

    follower = JournalFollower(js, apply, "paper", after=account.seq)
    await follower.start()
    await asyncio.wait_for(follower.caught_up.wait(), 1200)
    await follower.stop()
    return time.perf_counter() - started, folded


TOOLS_LIST_TIMEOUT_S = 600.0  # a server that never answers (it lost NATS while folding) is a result, not a hang


async def tools_list(params: StdioServerParameters, tool: str) -> tuple[float, float, float]:
    """Seconds from spawning the server to its first tools/list answer, to its first answer of `tool`, and to its
    exit once the client closes."""
    started = time.perf_counter()
    answered = called = float("inf")

    async def listed() -> None:
        nonlocal answered, called
        async with Client(params) as client:
            await client.list_tools()
            answered = time.perf_counter() - started
            await client.call_tool(tool, {})
            called = time.perf_counter() - started

    try:
        await asyncio.wait_for(listed(), TOOLS_LIST_TIMEOUT_S)
    except TimeoutError:
        print(f"  no tools/list within {TOOLS_LIST_TIMEOUT_S:g} s", flush=True)
        return answered, called, float("inf")
    return answered, called, time.perf_counter() - started


async def publish_signals(js, count: int) -> None:  # type: ignore[no-untyped-def]
    """`count` signals into SIGNALS (six symbols, as the gateway stores them)."""
    now = datetime.now(UTC)
    pending = []
    for n in range(count):
        signal = NormalizedSignal(
            signal_id=f"cold-{n}",
            source="bench",
            symbol=SYMBOLS[n % len(SYMBOLS)],
            price=Decimal(100) + Decimal(n % 500) / 100,
            action="buy",
            quantity=Decimal(1),
            received_at=now,
            fired_at=now,
            correlation_id=f"corr-cold-{n}",
        )
        pending.append(await js.publish_async(Subject.SIGNALS_NORMALIZED.value, signal.model_dump_json().encode()))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def run(
    orders: list[int], repeat: int, bytecode_as_is: bool = False, signals: int = 0, tool: str = SERVE_TOOL
) -> None:
    logging.getLogger("bus.snapshot").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        trivial_py = Path(tmp) / "trivial.py"
        trivial_py.write_text(TRIVIAL)
        env = {**os.environ, "NATS_URL": server.url, "TRADING_MCP_LOG_LEVEL": "WARNING"}
        if not bytecode_as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        serve = StdioServerParameters(command=EXE, args=["serve", "--transport", "stdio", "--data-dir", tmp], env=env)
        trivial = StdioServerParameters(command=sys.executable, args=[str(trivial_py)], env=env)
        try:
            nc = await connect(server.url, "bench")
            js = nc.jetstream()
            await ensure_journal(js)
            await ensure_streams(js)
            await tools_list(serve, tool)  # warm the page cache and the bytecode once
            await tools_list(trivial, "ping")
            if signals:
                await publish_signals(js, signals)
                print(f"SIGNALS holds {signals} signals", flush=True)
            print(
                f"{'orders':>7} {'entries':>8} {'snap MB':>7} {'write s':>7} | {'reader s':>8} {'+snap s':>7}"
                f" {'x faster':>8} | {'trivial s':>9} {'serve s':>7} {'+snap s':>7} {'ratio':>6} {'+snap':>6}"
                f" | {'1st call':>8} {'+snap':>6} {'trivial':>7} {'ratio':>6} {'+snap':>6}"
                f" | {'exit s':>6} {'triv. ex':>8} {'+exit':>6}"
            )
            written = 0
            projection = Account()
            for target in orders:
                snap_at = max(0, target - BEHIND)
                pending = []
                for i in range(written, target):
                    for event in entries(i):
                        pending.append(await js.publish_async(journal_subject(), event.model_dump_json().encode()))
                        if i < snap_at:
                            projection.apply(event, projection.seq + 1)
                    if len(pending) >= 2000:
                        await asyncio.gather(*pending)
                        pending.clear()
                await asyncio.gather(*pending)
                written = target
                kv = None
                size, write_s = 0.0, 0.0
                if projection.seq:
                    started = time.perf_counter()
                    data = await asyncio.to_thread(projection.to_snapshot)
                    size = await write_snapshot(js, "paper", projection.seq, data) / 1e6
                    write_s = time.perf_counter() - started
                    kv = await js.key_value(BUCKET)
                ratios: list[tuple[float, ...]] = []
                for _ in range(repeat):
                    if kv is not None:
                        head = (await kv.get("paper")).value
                        await kv.delete("paper")
                    cold_s, n = await reader(js, snapshot=False)
                    serve_s, serve_call_s, serve_exit_s = await tools_list(serve, tool)
                    snap_s = serve_snap_s = snap_call_s = float("nan")
                    if kv is not None:
                        await kv.put("paper", head)
                        snap_s, _ = await reader(js, snapshot=True)
                        serve_snap_s, snap_call_s, _ = await tools_list(serve, tool)
                    trivial_s, trivial_call_s, trivial_exit_s = await tools_list(trivial, "ping")
                    row = (
                        serve_s / trivial_s,
                        serve_snap_s / trivial_s,
                        serve_call_s / trivial_call_s,
                        snap_call_s / trivial_call_s,
                        serve_exit_s / trivial_exit_s,
                    )
                    print(
                        f"{target:>7} {n:>8} {size:>7.1f} {write_s:>7.1f} | {cold_s:>8.2f} {snap_s:>7.2f}"
                        f" {cold_s / snap_s:>8.1f} | {trivial_s:>9.2f} {serve_s:>7.2f} {serve_snap_s:>7.2f}"
                        f" {row[0]:>6.2f} {row[1]:>6.2f}"
                        f" | {serve_call_s:>8.2f} {snap_call_s:>6.2f} {trivial_call_s:>7.2f}"
                        f" {row[2]:>6.2f} {row[3]:>6.2f}"
                        f" | {serve_exit_s:>6.2f} {trivial_exit_s:>8.2f} {row[4]:>6.2f}",
                        flush=True,
                    )
                    ratios.append(row)
                if repeat > 1:  # one pair is at the mercy of the neighbours: the median ratios of the runs
                    m = [statistics.median(r[i] for r in ratios) for i in range(5)]
                    print(
                        f"{'median':>7} {'':>70} {m[0]:>6.2f} {m[1]:>6.2f} | {'':>24} {m[2]:>6.2f} {m[3]:>6.2f}"
                        f" | {'':>15} {m[4]:>6.2f}"
                    )
            await nc.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="*", default=[0, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=1, help="runs per history")
    parser.add_argument(
        "--bytecode-as-is", action="store_true", help="keep PYTHONDONTWRITEBYTECODE (no bytecode cache) if it is set"
    )
    parser.add_argument("--signals", type=int, default=0, help="signals in the SIGNALS stream (default 0)")
    parser.add_argument("--tool", default=SERVE_TOOL, help=f"the serve tool first called (default {SERVE_TOOL})")
    args = parser.parse_args()
    asyncio.run(run(args.orders, args.repeat, args.bytecode_as_is, args.signals, args.tool))


if __name__ == "__main__":
    main()
