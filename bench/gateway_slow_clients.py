"""Stalled clients against the webhook gateway: N connections each announce a 1 MB body, send all of it
but the last byte, and stall. Prints the gateway's RSS before, at peak and after the clients are dropped.

    .venv/bin/python bench/gateway_slow_clients.py [--connections 500] [--sent 1048575] [--unbounded]

Starts a nats-server and the gateway (as `trading-mcp gateway` runs it, its own process, free port). Each
connection's answer is counted: 503 `overloaded` (refused at once: the in-flight bound), 408
`request_timeout` (the body deadline), or a close. `--unbounded` runs the gateway with the in-flight bound
and the body deadline set out of reach, which is how the gateway behaved before they existed.
Reads /proc/<pid>/status (VmRSS). Loopback only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bus.embedded import free_port, start_nats_server  # noqa: E402
from gateway import signing  # noqa: E402

BODY = 1024 * 1024
CHUNK = 64 * 1024


def serve_gateway(port: int, nats_url: str, secret: str) -> None:
    from gateway.service import main
    from gateway.settings import GatewaySettings
    from observability.logging import configure_logging

    configure_logging("gateway", "INFO")
    main(GatewaySettings(nats_url=nats_url, webhook_secret=secret, port=port))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port} after {timeout} s") from None
            await asyncio.sleep(0.05)


async def stalled_client(port: int, sent: int, outcomes: Counter[str], times: list[float]) -> asyncio.StreamWriter:
    """Announce a 1 MB body, send `sent` bytes of it, then wait (bounded) for an answer or a close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(f"POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {BODY}\r\n\r\n".encode())
    chunk = b" " * CHUNK
    try:
        for offset in range(0, sent, CHUNK):
            writer.write(chunk[: min(CHUNK, sent - offset)])
            await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 60)
    except (OSError, TimeoutError):
        line = b""
    status = line.split(b" ", 2)[1].decode() if line.startswith(b"HTTP/1.1 ") else "closed or no answer"
    outcomes[status] += 1
    times.append(time.monotonic() - started)
    return writer


async def run(args: argparse.Namespace) -> None:
    tmp = tempfile.TemporaryDirectory(prefix="gateway-slow-")
    nats_server = start_nats_server(Path(tmp.name) / "nats")
    port = free_port()
    env = dict(os.environ)
    if args.unbounded:
        env |= {"TRADING_MCP_MAX_INFLIGHT_BODY_BYTES": str(1 << 40), "TRADING_MCP_BODY_TIMEOUT_S": "3600"}
    secret = signing.new_secret()
    cmd = [sys.executable, __file__, "--role", "gateway", "--port", str(port), "--nats-url", nats_server.url]
    gateway = subprocess.Popen(
        [*cmd, "--secret", secret], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await wait_listening(port)
        await asyncio.sleep(1.0)  # let start-up allocations settle before the baseline
        before = rss_mb(gateway.pid)
        peak = before
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_mb(gateway.pid))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        outcomes: Counter[str] = Counter()
        times: list[float] = []
        started = time.monotonic()
        writers = await asyncio.gather(
            *(stalled_client(port, args.sent, outcomes, times) for _ in range(args.connections))
        )
        answered_in = time.monotonic() - started
        at_answers = rss_mb(gateway.pid)
        for writer in writers:
            writer.close()
        await asyncio.sleep(3.0)  # the gateway notices the closes and frees what it held
        stop.set()
        await sampler
        after = rss_mb(gateway.pid)

        mode = "unbounded (no in-flight bound, no body deadline)" if args.unbounded else "default settings"
        print(f"gateway {mode}; {args.connections} connections announcing {BODY} bytes, sending {args.sent}")
        print(f"answers: {dict(sorted(outcomes.items()))}; all answered or closed within {answered_in:.1f} s")
        if times:
            print(f"time to answer: min {min(times):.2f} s, max {max(times):.2f} s")
        print(
            f"gateway RSS: before {before:.0f} MB, peak {peak:.0f} MB, when all were answered {at_answers:.0f} MB, "
            f"3 s after the clients dropped {after:.0f} MB"
        )
    finally:
        gateway.terminate()
        gateway.wait(10)
        nats_server.stop()
        tmp.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--sent", type=int, default=BODY - 1, help="body bytes each client sends before stalling")
    parser.add_argument("--unbounded", action="store_true", help="the gateway without its bounds, for comparison")
    parser.add_argument("--role", choices=["gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "gateway":
        serve_gateway(args.port, args.nats_url, args.secret)
        return 0
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
