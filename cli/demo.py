"""`trading-mcp demo`: replay a real daily series (bundled data) through the running gateway as signed signals.

Each bar is one generic JSON signal with its OHLCV and time (no action: the bridge in strategy mode
decides). Start the system with `trading-mcp up --mode strategy` first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

from gateway import signing
from gateway.settings import SECRET_FILE

DEFAULT_URL = "http://127.0.0.1:8001/webhook"


def bar_payloads(symbol: str, bars: int, start: int = 0) -> list[dict[str, Any]]:
    """`bars` daily bars of the bundled `symbol` from index `start`, as generic signal bodies."""
    from execsim.backtest.data import load_bundled

    data = load_bundled(symbol)
    times = data.times()
    out = []
    for i in range(start, min(len(data), start + bars)):
        close = repr(float(data.close[i]))
        body: dict[str, Any] = {
            "symbol": symbol,
            "price": close,
            "open": repr(float(data.open[i])),
            "high": repr(float(data.high[i])),
            "low": repr(float(data.low[i])),
            "close": close,
            "interval": "1D",
            "time": times[i].isoformat(),
        }
        if data.volume[i] > 0:
            body["volume"] = repr(float(data.volume[i]))
        out.append(body)
    return out


def signed_request(secret: str, body: bytes, msg_id: str) -> dict[str, str]:
    ts = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signing.sign(secret, msg_id, ts, body),
    }


async def replay(
    url: str,
    secret: str,
    payloads: list[dict[str, Any]],
    speed: float = 0,
    progress: Callable[[int, dict[str, Any], httpx2.Response], None] | None = None,
) -> list[httpx2.Response]:
    """Send each payload in order, `speed` per second (0: as fast as the gateway answers)."""
    run = uuid.uuid4().hex[:12]
    answers = []
    started = time.monotonic()
    async with httpx2.AsyncClient(timeout=10) as client:
        for i, payload in enumerate(payloads):
            if speed > 0:
                await asyncio.sleep(max(0.0, started + i / speed - time.monotonic()))  # pacing, not waiting
            body = httpx2.Request("POST", url, json=payload).content
            response = await client.post(url, content=body, headers=signed_request(secret, body, f"demo_{run}_{i}"))
            answers.append(response)
            if progress is not None:
                progress(i, payload, response)
            if response.status_code >= 400:
                break
    return answers


def read_secret(args: argparse.Namespace) -> str | None:
    if args.secret:
        return str(args.secret)
    path: Path = args.data_dir / SECRET_FILE
    return path.read_text().strip() if path.exists() else None


def cmd_demo(args: argparse.Namespace) -> int:
    from execsim.backtest.errors import BacktestError

    secret = read_secret(args)
    if secret is None:
        print(
            f"no webhook secret in {args.data_dir / SECRET_FILE}: run `trading-mcp up --mode strategy` first "
            "(same --data-dir), or pass --secret",
            file=sys.stderr,
        )
        return 2
    try:
        payloads = bar_payloads(args.symbol, args.bars, args.start)
    except BacktestError as exc:
        print(f"trading-mcp demo: {exc.message}", file=sys.stderr)
        return 2
    total = len(payloads)
    print(f"replaying {total} daily bars of {args.symbol} to {args.url} at {args.speed:g} bars/s", flush=True)
    if payloads:
        print(
            f"the same bars in a backtest: trading-mcp backtest --strategy <the bridge's> --data "
            f"bundled:{args.symbol} --start {payloads[0]['time'][:10]} --bars {total} "
            "(and --commission <fee-bps / 10000> when `up` was given --fee-bps)",
            flush=True,
        )
    every = max(1, total // 20)

    def progress(i: int, payload: dict[str, Any], response: httpx2.Response) -> None:
        if response.status_code >= 400:
            print(f"bar {i + 1}: HTTP {response.status_code} {response.text}", file=sys.stderr, flush=True)
        elif (i + 1) % every == 0 or i + 1 == total:
            print(f"  {i + 1:>5}/{total}  {payload['time'][:10]}  close {float(payload['close']):.2f}", flush=True)

    try:
        answers = asyncio.run(replay(args.url, secret, payloads, args.speed, progress))
    except httpx2.HTTPError as exc:
        print(f"could not reach {args.url}: {exc} (is `trading-mcp up --mode strategy` running?)", file=sys.stderr)
        return 2
    accepted = sum(1 for r in answers if r.status_code < 400)
    print(
        f"done: {accepted} of {total} signals accepted. The bridge decides on each bar (warm-up first); "
        "ask the MCP tools: get_positions, list_fills, list_orders.",
        flush=True,
    )
    return 0 if accepted == total else 1


def add_demo_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from bus.embedded import default_data_dir

    demo = sub.add_parser("demo", help="replay real daily bars (bundled data) through the gateway as signed signals")
    demo.add_argument("--symbol", default="AAPL", help="bundled: AAPL, GOOG, IBM, MSFT, FB (default AAPL)")
    demo.add_argument("--bars", type=int, default=500, help="daily bars to send (default 500)")
    demo.add_argument("--start", type=int, default=0, help="index of the first bar (default 0)")
    demo.add_argument("--speed", type=float, default=20, help="bars per second (default 20; 0 = as fast as possible)")
    demo.add_argument("--url", default=DEFAULT_URL)
    demo.add_argument(
        "--data-dir", type=Path, default=default_data_dir(), help="where `up` keeps webhook_secret (the secret)"
    )
    demo.add_argument("--secret", default=None, help="the webhook secret (default: <data-dir>/webhook_secret)")
    demo.set_defaults(func=cmd_demo)
