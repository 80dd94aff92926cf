"""Instructions per webhook, gateway vs bare FastAPI endpoint, counted by valgrind's callgrind.

    .venv/bin/python bench/gateway_instructions.py [--requests 400] [--concurrency 8]

`bench/gateway_load.py` measures the same ratio as throughput, and on a shared 2-core machine its CPU figures
move by a quarter from one run to the next. Instructions do not: each server (the gateway as `trading-mcp
gateway` runs it, and the bare endpoint of gateway_load.py) runs under callgrind, is warmed up, has its counters
zeroed, takes `--requests` signed unique webhooks over keep-alive connections, and has its counters dumped.
The ratio bare / gateway approximates gateway_load's throughput ratio (each server is one process on one core;
the nats-server's share is not counted). Needs valgrind. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from gateway_load import closed_loop, signed_requests, wait_listening  # noqa: E402

from bus.embedded import free_port, start_nats_server  # noqa: E402
from gateway import signing  # noqa: E402

LOAD = str(ROOT / "gateway_load.py")


def callgrind(out: Path, role: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, LOAD,
         "--role", role, "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def control(flag: str, pid: int) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True, timeout=120)


def dumped_instructions(out: Path) -> int:
    """Instructions in the dump made after the zeroing (callgrind writes it as `<out>.<n>`)."""
    deadline = time.monotonic() + 60
    while True:
        dumps = sorted(out.parent.glob(out.name + ".*"))
        if dumps:
            text = dumps[-1].read_text(errors="replace")
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            if found:
                return int(found.group(1))
        if time.monotonic() > deadline:
            raise RuntimeError(f"no callgrind dump next to {out}")
        time.sleep(0.5)


async def measure(role: str, port: int, extra: list[str], secret: str, args: argparse.Namespace, tmp: Path) -> float:
    out = tmp / f"{role}.callgrind"
    proc = callgrind(out, role, port, *extra)
    try:
        await wait_listening(port, timeout=300)
        await closed_loop("warm-up", port, signed_requests("127.0.0.1", secret, args.warmup), args.concurrency)
        control("-z", proc.pid)
        requests = signed_requests("127.0.0.1", secret, args.requests)
        result = await closed_loop("measured", port, requests, args.concurrency)
        control("-d", proc.pid)
        if result.accepted != args.requests:
            raise RuntimeError(f"{role}: {result.accepted} of {args.requests} accepted: {result.statuses}")
        return dumped_instructions(out) / args.requests
    finally:
        proc.terminate()
        proc.wait(60)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-instr-") as name:
        tmp = Path(name)
        server = start_nats_server(tmp / "nats")
        secret = signing.new_secret()
        try:
            gateway = await measure(
                "gateway", free_port(), ["--nats-url", server.url, "--secret", secret], secret, args, tmp
            )
            bare = await measure("bare", free_port(), [], secret, args, tmp)
        finally:
            server.stop()
    print(f"{args.requests} webhooks after {args.warmup} warm-up, {args.concurrency} connections (callgrind)")
    print(f"instructions per webhook: bare FastAPI {bare / 1e3:,.0f} k   gateway {gateway / 1e3:,.0f} k")
    print(f"bare / gateway: {bare / gateway:.2f}  (gateway_load's throughput ratio; target >= 0.7)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (with callgrind_control) is not installed; nothing measured")
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
