"""Send one signed signal to a running stack and follow it hop by hop to a fill and a position.

Run through scripts/test-signal-flow.sh (which documents the settings). Prints one line per hop:

    1 gateway        202 signal_id=sig_… correlation_id=…
    2 SIGNALS        signals.normalized stored (stream seq 41)
    3 DECISIONS      decisions.order_intent sig-sig_… buy 1 FLOWTEST
    4 EXECUTIONS     executions.fill fill_… 1 @ 100.00
    5 MCP            get_positions FLOWTEST quantity 3 (fill visible in list_fills)

and exits 0, or exits 1 naming the first hop that did not happen within the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx2
import nats
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from nats.js import JetStreamContext, api

from bus.credentials import nats_auth
from bus.jetstream import CORRELATION_ID
from gateway import signing
from schemas.orders import Fill, OrderIntent, RiskDenied
from schemas.signals import NormalizedSignal


class HopMissing(Exception):
    pass


def hop(number: int, where: str, text: str) -> None:
    print(f"{number} {where:<14} {text}", flush=True)


async def _subscribe(js: JetStreamContext, stream: str, subject: str) -> JetStreamContext.PullSubscription:
    """An ephemeral consumer that sees only messages stored after this call."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.NEW,
        filter_subject=subject,
        inactive_threshold=30.0,
    )
    return await js.pull_subscribe(subject, stream=stream, config=config)


async def _first(sub, match: Callable[[nats.aio.msg.Msg], bool], deadline: float, what: str):  # type: ignore[no-untyped-def]
    while time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(16, timeout=min(0.5, max(0.05, deadline - time.monotonic())))
        except nats.errors.TimeoutError:
            continue
        for msg in msgs:
            if match(msg):
                return msg
    raise HopMissing(what)


def _send(gateway_url: str, secret: str, body: dict[str, object], correlation_id: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    raw = json.dumps(body).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    ts = int(time.time())
    request = urllib.request.Request(
        gateway_url.rstrip("/") + "/webhook",
        data=raw,
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signing.sign(secret, msg_id, ts, raw),
            CORRELATION_ID: correlation_id,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


async def _mcp_position(mcp_url: str, token: str | None, symbol: str, fill_id: str, deadline: float) -> Decimal:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        Client(streamable_http_client(mcp_url, http_client=http)) as client,
    ):
        while time.monotonic() < deadline:
            fills = (await client.call_tool("list_fills", {"symbol": symbol, "limit": 500})).structured_content or {}
            if any(f["fill_id"] == fill_id for f in fills.get("fills", [])):
                positions = (await client.call_tool("get_positions", {})).structured_content or {}
                for p in positions.get("positions", []):
                    if p["symbol"] == symbol:
                        return Decimal(str(p["quantity"]))
                return Decimal(0)
            await asyncio.sleep(0.1)
    raise HopMissing(f"fill {fill_id} did not reach the portfolio (MCP list_fills) in time")


async def follow(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    # a reader: the MCP role's credentials (from the data dir, or NATS_CREDS / NATS_USER / NATS_TOKEN)
    auth = nats_auth("mcp", args.data_dir)
    nc = await nats.connect(args.nats_url, name="signal-flow", connect_timeout=5, max_reconnect_attempts=2, **auth)
    try:
        js = nc.jetstream()
        signals = await _subscribe(js, "SIGNALS", "signals.normalized")
        decisions = await _subscribe(js, "DECISIONS", "decisions.>")
        fills = await _subscribe(js, "EXECUTIONS", "executions.fill")
        correlation_id = f"flow-{uuid.uuid4().hex[:16]}"
        body = {"symbol": args.symbol, "price": args.price, "action": "buy", "quantity": args.quantity}
        status, answer = await asyncio.to_thread(_send, args.gateway_url, args.secret, body, correlation_id)
        if status != 202:
            raise HopMissing(f"gateway answered {status} {answer}")
        signal_id = answer["signal_id"]
        hop(1, "gateway", f"{status} signal_id={signal_id} correlation_id={correlation_id}")

        msg = await _first(
            signals,
            lambda m: NormalizedSignal.model_validate_json(m.data).signal_id == signal_id,
            deadline,
            f"{signal_id} was not stored on signals.normalized",
        )
        hop(2, "SIGNALS", f"signals.normalized stored (stream seq {msg.metadata.sequence.stream})")

        def about_signal(m: nats.aio.msg.Msg) -> bool:
            data = json.loads(m.data)
            return bool(data.get("signal_id") == signal_id)

        msg = await _first(decisions, about_signal, deadline, f"no decision for {signal_id}")
        if msg.subject == "decisions.risk_denied":
            denied = RiskDenied.model_validate_json(msg.data)
            raise HopMissing(f"the risk gate denied the order: {denied.reason_code} ({denied.message})")
        intent = OrderIntent.model_validate_json(msg.data)
        hop(3, "DECISIONS", f"{msg.subject} {intent.client_order_id} {intent.side} {intent.quantity} {intent.symbol}")

        msg = await _first(
            fills,
            lambda m: Fill.model_validate_json(m.data).client_order_id == intent.client_order_id,
            deadline,
            f"no fill for {intent.client_order_id}",
        )
        fill = Fill.model_validate_json(msg.data)
        hop(4, "EXECUTIONS", f"executions.fill {fill.fill_id} {fill.quantity} @ {fill.price}")
        if (msg.headers or {}).get(CORRELATION_ID) != correlation_id:
            raise HopMissing(f"the fill lost the correlation id (header {msg.headers})")

        quantity = await _mcp_position(args.mcp_url, args.mcp_token, args.symbol, fill.fill_id, deadline)
        hop(5, "MCP", f"get_positions {args.symbol} quantity {quantity} (fill visible in list_fills)")
    finally:
        await nc.close()
    return 0


def _secret(args: argparse.Namespace) -> str:
    if args.secret:
        return str(args.secret)
    if args.data_dir and (args.data_dir / "webhook_secret").exists():
        return (args.data_dir / "webhook_secret").read_text().strip()
    raise SystemExit("no webhook secret: set TRADING_MCP_WEBHOOK_SECRET or pass --data-dir holding webhook_secret")


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway-url", default=env("GATEWAY_URL", "http://127.0.0.1:8001"))
    p.add_argument("--mcp-url", default=env("MCP_URL", "http://127.0.0.1:8002/mcp"))
    p.add_argument("--nats-url", default=env("NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--secret", default=env("TRADING_MCP_WEBHOOK_SECRET"))
    p.add_argument("--mcp-token", default=env("TRADING_MCP_AUTH_TOKEN"))
    data_dir = env("TRADING_MCP_DATA_DIR")
    p.add_argument("--data-dir", type=Path, default=Path(data_dir) if data_dir else None)
    p.add_argument("--symbol", default=env("FLOW_SYMBOL", "FLOWTEST"))
    p.add_argument("--price", default=env("FLOW_PRICE", "100.00"))
    p.add_argument("--quantity", default=env("FLOW_QUANTITY", "1"))
    p.add_argument("--timeout", type=float, default=float(env("FLOW_TIMEOUT", "20")), help="seconds for all hops")
    args = p.parse_args(argv)
    args.secret = _secret(args)
    try:
        return asyncio.run(follow(args))
    except HopMissing as missing:
        print(f"FAILED: {missing}", file=sys.stderr, flush=True)
        return 1
    except (OSError, nats.errors.Error) as exc:
        print(f"FAILED: cannot reach the stack: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
