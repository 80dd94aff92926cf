"""Decided order requests/s of an authority pool of N members (N = 1, 2, 4) over 8 accounts, and the failover time
after a kill -9 of one member. Prints numbers, asserts nothing (never a test).

    .venv/bin/python bench/authority_pool.py                 # N = 1 2 4, 10 s each, concurrency 64
    .venv/bin/python bench/authority_pool.py --members 1 2 --seconds 5

For each N: a fresh nats-server (`bus.embedded.start_nats_server`, free port, temporary store), an accounts file of
8 accounts in a temporary data dir (every limit off but a huge max_position, so nothing is denied for risk), N
`trading-mcp authority` processes (own --member and --port). Once every account is owned (KV ACCOUNT_LEASES,
`bus.lease.read_lease`), `--concurrency` workers send `place` requests (`bus.authority_client.ask`, distinct
client_order_id, accounts round-robin) for `--seconds`; decided = answered with an OrderReply (approved or a
coded denial). No simulator runs: admitted orders stay `submitted`. Then one member is killed with SIGKILL and
the time until every account answers a `check` request again is measured (the floor is the lease TTL, 3 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal as os_signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bus.authority_client import AuthorityUnavailable, ask  # noqa: E402
from bus.embedded import free_port, start_nats_server  # noqa: E402
from bus.jetstream import connect  # noqa: E402
from bus.lease import lease_bucket, read_lease  # noqa: E402
from schemas.account import OrderCommand  # noqa: E402

EXE = str(Path(sys.executable).parent / "trading-mcp")
ACCOUNTS = [f"acct{i}" for i in range(8)]
LIMITS = {
    "max_position": "1000000000",
    "max_order_notional": None,
    "max_gross_exposure": None,
    "max_open_orders": None,
    "max_orders_per_window": None,
    "daily_loss_limit": None,
    "max_drawdown": None,
}


def place(account: str, n: int, tag: str) -> OrderCommand:
    return OrderCommand(
        kind="place", account=account, symbol="AAA", side="buy" if n % 2 else "sell", quantity=Decimal(1),
        order_type="limit", limit_price=Decimal(100), time_in_force="GTC", client_order_id=f"{tag}-{n}",
        origin="mcp",
    )  # fmt: skip


async def run_pool(n: int, args: argparse.Namespace, tmp: Path) -> tuple[float, float | None]:
    data = tmp / f"data{n}"
    data.mkdir()
    (data / "accounts.toml").write_text("".join(f'[[accounts]]\nid = "{a}"\n\n' for a in ACCOUNTS))
    (data / "limits.json").write_text(json.dumps(LIMITS))
    server = start_nats_server(tmp / f"nats{n}")
    env = {**os.environ, "NATS_URL": server.url, "TRADING_MCP_LOG_LEVEL": "WARNING"}
    procs: list[subprocess.Popen[bytes]] = []
    nc = await connect(server.url, "bench")
    try:
        for k in range(n):
            with open(tmp / f"auth{n}-{k}.log", "ab") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            EXE,
                            "authority",
                            "--data-dir",
                            str(data),
                            "--member",
                            f"m{k}",
                            "--port",
                            str(free_port()),
                            "--risk-limits-file",
                            str(data / "limits.json"),
                        ],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=out,
                        start_new_session=True,
                    )  # fmt: skip
                )
        js = nc.jetstream()
        deadline = time.monotonic() + 60
        kv = None
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                kv = kv or await lease_bucket(js)
                owners = [await read_lease(kv, "authority", a) for a in ACCOUNTS]
                if all(owners) and len({o.member for o in owners if o}) == n:  # settled: every member has a share
                    break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"N={n}: the accounts were not all owned (and shared) within 60 s")
        await asyncio.sleep(1.0)  # let each authority finish its start (owner entry, control)
        decided, failed = 0, 0
        stop_at = time.monotonic() + args.seconds
        counter = iter(range(10**9))

        async def worker() -> None:
            nonlocal decided, failed
            while time.monotonic() < stop_at:
                i = next(counter)
                try:
                    await ask(nc, place(ACCOUNTS[i % len(ACCOUNTS)], i, f"n{n}"))
                    decided += 1
                except AuthorityUnavailable:
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        rate = decided / (time.monotonic() - started)
        print(
            f"N={n}: {decided} decided in {args.seconds:g} s = {rate:,.0f} requests/s ({failed} unavailable)",
            flush=True,
        )
        failover = None
        if n > 1:
            victim = procs[0]
            victim.send_signal(os_signal.SIGKILL)
            victim.wait()
            killed = time.monotonic()
            pending = set(ACCOUNTS)
            while pending and time.monotonic() - killed < 60:

                async def answers(a: str) -> bool:
                    with contextlib.suppress(AuthorityUnavailable):
                        await ask(nc, OrderCommand(kind="check", account=a, symbol="AAA", quantity=Decimal(1)), 0.5)
                        return True
                    return False

                ok = await asyncio.gather(*(answers(a) for a in pending))
                pending -= {a for a, good in zip(list(pending), ok, strict=True) if good}
                if pending:
                    await asyncio.sleep(0.05)
            failover = time.monotonic() - killed if not pending else None
            print(
                f"N={n}: kill -9 of m0 -> every account answers again after "
                + (f"{failover:.2f} s" if failover is not None else f"> 60 s (still silent: {sorted(pending)})"),
                flush=True,
            )
        return rate, failover
    finally:
        await nc.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(os_signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{len(ACCOUNTS)} accounts, concurrency {args.concurrency}, {args.seconds:g} s per N, {cores} CPU cores")
    results: dict[int, tuple[float, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.members:
            results[n] = await run_pool(n, args, Path(tmp))
    base = results.get(1, next(iter(results.values())))[0]
    print(f"\n{'N':>3} {'requests/s':>12} {'vs N=1':>7} {'failover':>9}")
    for n, (rate, failover) in results.items():
        shown = f"{failover:.2f} s" if failover is not None else "-"
        print(f"{n:>3} {rate:>12,.0f} {rate / base:>7.2f} {shown:>9}")
    print(
        f"(one nats-server, this bench's client and every authority share {cores} cores: with fewer cores than "
        "processes the scaling is capped by the machine, not by the pool)"
    )


if __name__ == "__main__":
    asyncio.run(main())
