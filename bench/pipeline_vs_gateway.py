"""Does the pipeline keep up with the gateway? The whole stack on one machine, a flood of signed webhooks.

Real processes against a fresh, unlocked nats-server (`bus.embedded.start_nats_server`): `trading-mcp execsim`,
`trading-mcp authority` (a limits file that switches off every limit but `max_position`, so orders are
admitted), `trading-mcp serve --transport streamable-http --bridge --bridge-mode follow` and
`trading-mcp gateway`. The bench floods the gateway for `--seconds` (default 30) with signed Standard Webhooks
(buy / sell, quantity 1, a few symbols) from `--concurrency` keep-alive connections (closed loop), or, with
`--rate`, sends at a fixed rate (open loop). Each webhook carries `X-Correlation-ID: b-<n>`, which every hop
keeps, so the bench sees its fill on `executions.fill` (a core subscription) and its decision on `decisions.>`.

Prints: gateway accepted/s (and the other statuses: 503 `pipeline_behind` while the gateway sheds load, which a
closed-loop sender honours by waiting Retry-After unless `--ignore-retry-after`), decided/s (intents + denials
stored in DECISIONS during the flood), their ratio, what was still pending (bridge durable) at the end of the
flood, what became of the signals sent right after it (20 at 10/s: traded, or denied stale behind the backlog),
webhook → fill latency p50 / p99 of the first and last 1,000 accepted signals (send of the request → the fill
seen by the bench; the run drains for at most `--drain` s), and CPU ms per accepted signal of each process
(utime + stime from /proc, flood start to the end of the drain). Asserts nothing (never a test). Two cores shared
with other work: compare ratios of one run, repeat. `--max-signal-backlog 0 --max-signal-wait-s 0` runs the gateway
without load shedding.

Run: .venv/bin/python bench/pipeline_vs_gateway.py [--seconds 30] [--concurrency 16] [--rate 0] [--keep]
Services log at INFO (as deployed) unless --log-level says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import nats  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402

from bench.bridge_throughput import LIMITS, Service, by_label, proc_cpu_s, proc_rss_mb, scrape  # noqa: E402
from bus import authority_key  # noqa: E402
from bus.embedded import EmbeddedNats, free_port, start_nats_server  # noqa: E402
from gateway import signing  # noqa: E402

SYMBOLS = ("AAPL", "MSFT", "IBM", "GOOG", "AMZN", "NVDA")
INTENT, DENIED = "decisions.order_intent", "decisions.risk_denied"
EDGE = 1000  # first / last signals for the latency windows
AFTER_S, AFTER_RATE = 2.0, 10.0  # the signals sent right after the flood (open loop)


# ---------------------------------------------------------------------- webhooks


@dataclass
class Sent:
    """Per accepted webhook (by its number): when the request went out, when its decision and fill were seen."""

    sent: dict[int, float] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)  # in order of acceptance
    statuses: dict[int, int] = field(default_factory=dict)
    decided: dict[int, float] = field(default_factory=dict)
    decision: dict[int, str] = field(default_factory=dict)
    filled: dict[int, float] = field(default_factory=dict)


class Senders:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.n = 0

    def next(self) -> tuple[int, bytes]:
        self.n += 1
        n = self.n
        symbol = SYMBOLS[n % len(SYMBOLS)]
        body = json.dumps(
            {
                "symbol": symbol,
                "price": f"{100 + (n // len(SYMBOLS)) % 50}.25",
                "action": "buy" if (n // len(SYMBOLS)) % 2 else "sell",
                "quantity": 1,
            }
        ).encode()
        msg_id = f"bench_{n}_{secrets.token_hex(6)}"
        ts = int(time.time())
        head = (
            f"POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
            f"content-type: application/json\r\nwebhook-id: {msg_id}\r\nwebhook-timestamp: {ts}\r\n"
            f"webhook-signature: {signing.sign(self.secret, msg_id, ts, body)}\r\nx-correlation-id: b-{n}\r\n\r\n"
        )
        return n, head.encode() + body


async def read_status(reader: asyncio.StreamReader) -> tuple[int, float]:
    """The response's status and its Retry-After (0 without one); the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    await reader.readexactly(int(fields["content-length"]))
    return int(lines[0].split(" ", 2)[1]), float(fields.get("retry-after", 0))


async def flood(
    port: int,
    senders: Senders,
    sent: Sent,
    seconds: float,
    concurrency: int,
    rate: float,
    honour_retry_after: bool = True,
) -> float:
    """Closed loop (rate 0) or open loop at `rate`; returns the elapsed time. A closed-loop sender told to retry
    later (503 with Retry-After: the gateway shedding load, gateway.backlog) waits that long first, as a sender
    should, unless `honour_retry_after` is off (a hostile flood)."""
    t_end = time.monotonic() + seconds
    queue: asyncio.Queue[None] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < t_end:
                if rate:
                    await queue.get()
                    if time.monotonic() >= t_end:
                        break
                n, raw = senders.next()
                sent.sent[n] = time.monotonic()
                writer.write(raw)
                status, retry_after = await read_status(reader)
                sent.statuses[status] = sent.statuses.get(status, 0) + 1
                if status == 202:
                    sent.accepted.append(n)
                elif retry_after and honour_retry_after and not rate:
                    await asyncio.sleep(min(retry_after, max(0.0, t_end - time.monotonic())))
        finally:
            writer.close()

    async def pacer() -> None:
        started = time.monotonic()
        i = 0
        while time.monotonic() < t_end:
            i += 1
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(None)
        for _ in range(concurrency):
            queue.put_nowait(None)

    started = time.monotonic()
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    if rate:
        tasks.append(asyncio.create_task(pacer()))
    await asyncio.gather(*tasks)
    return time.monotonic() - started


# ---------------------------------------------------------------------- the bus


async def decided_count(js: JetStreamContext) -> tuple[int, int]:
    info = await js.stream_info("DECISIONS", subjects_filter="decisions.>")
    subjects = info.state.subjects or {}
    return subjects.get(INTENT, 0), subjects.get(DENIED, 0)


async def bridge_backlog(js: JetStreamContext) -> tuple[int, int]:
    c = await js.consumer_info("SIGNALS", "bridge")
    return c.num_pending or 0, c.num_ack_pending or 0


def number_of(data: bytes) -> int | None:
    """The bench's webhook number from a message's correlation id `b-<n>`."""
    i = data.find(b'"correlation_id":"b-')
    if i < 0:
        return None
    j = data.find(b'"', i + 20)
    with contextlib.suppress(ValueError):
        return int(data[i + 20 : j])
    return None


def pattern(subject: str) -> str:
    """A subject with its unique tokens (inbox ids, ack sequences) folded, so counts group by kind."""
    if subject.startswith("$JS.ACK."):
        return "$JS.ACK." + ".".join(subject.split(".")[2:4]) + ".*"
    parts = subject.split(".")
    if parts[0] == "_INBOX":
        return "_INBOX.*"
    return ".".join("*" if len(p) >= 16 else p for p in parts)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------- the run


async def connz(http: httpx.AsyncClient, monitor: int) -> dict[str, tuple[int, int]]:
    """Messages in / out per connection name (summed over a name's connections), from nats-server's monitor."""
    r = await http.get(f"http://127.0.0.1:{monitor}/connz", params={"limit": 1024})
    totals: dict[str, tuple[int, int]] = {}
    for c in r.json().get("connections", []):
        name = c.get("name") or "?"
        i, o = totals.get(name, (0, 0))
        totals[name] = (i + c.get("in_msgs", 0), o + c.get("out_msgs", 0))
    return totals


async def run(
    args: argparse.Namespace, nats_server: EmbeddedNats, services: list[Service], secret: str, monitor: int
) -> None:
    sent = Sent()
    nc = await nats.connect(nats_server.url, name="bench")
    js = nc.jetstream()

    async def on_fill(msg: nats.aio.msg.Msg) -> None:
        n = number_of(msg.data)
        if n is not None:
            sent.filled.setdefault(n, time.monotonic())

    async def on_decision(msg: nats.aio.msg.Msg) -> None:
        n = number_of(msg.data)
        if n is not None and n not in sent.decided:
            sent.decided[n] = time.monotonic()
            sent.decision[n] = "intent" if msg.subject == INTENT else "denied"

    subjects: dict[str, int] = {}
    counting = [False]

    async def on_any(msg: nats.aio.msg.Msg) -> None:  # --subjects: what is published, by subject pattern
        if counting[0]:
            key = pattern(msg.subject)
            subjects[key] = subjects.get(key, 0) + 1

    if args.subjects:
        await nc.subscribe(">", cb=on_any)
    await nc.subscribe("executions.fill", cb=on_fill)
    await nc.subscribe("decisions.>", cb=on_decision)
    pids = {s.name: s.proc.pid for s in services if s.proc is not None}
    if nats_server.process is not None:
        pids["nats-server"] = nats_server.process.pid
    pids["bench (client)"] = os.getpid()
    by_name = {s.name: s for s in services}
    try:
        async with httpx.AsyncClient() as http:
            senders = Senders(secret)
            # warm-up: a few signals through every hop
            await flood(by_name["gateway"].port, senders, Sent(), 2.0, 2, 20.0)
            await asyncio.sleep(3.0)
            idle0, idle_t0 = {n: proc_cpu_s(p) or 0.0 for n, p in pids.items()}, time.monotonic()
            await asyncio.sleep(args.idle)  # what each process spends with nothing to do
            idle = {
                n: 1000 * ((proc_cpu_s(p) or 0.0) - idle0[n]) / (time.monotonic() - idle_t0) for n, p in pids.items()
            }
            intents0, denials0 = await decided_count(js)
            authority0 = await scrape(http, by_name["authority"].port)
            conns0 = await connz(http, monitor)
            cpu0 = {n: proc_cpu_s(p) or 0.0 for n, p in pids.items()}
            t0 = time.monotonic()
            first = senders.n + 1
            kind = f"open loop at {args.rate:g}/s" if args.rate else f"closed loop, {args.concurrency} connections"
            print(f"flood: {args.seconds:g} s, {kind} ...", flush=True)
            rss: list[dict[str, float | None]] = []
            counting[0] = True

            async def sample_rss() -> None:  # every service's RSS, 20 times over the flood
                while True:
                    rss.append({n: proc_rss_mb(p) for n, p in pids.items()})
                    await asyncio.sleep(args.seconds / 20)

            cpu_marks: list[tuple[float, dict[str, float]]] = []  # --timeline: every service's CPU per window

            async def sample_cpu() -> None:
                while True:
                    cpu_marks.append((time.monotonic(), {n: proc_cpu_s(p) or 0.0 for n, p in pids.items()}))
                    await asyncio.sleep(args.timeline)

            sampler = asyncio.create_task(sample_rss())
            cpu_sampler = asyncio.create_task(sample_cpu()) if args.timeline else None
            elapsed = await flood(
                by_name["gateway"].port,
                senders,
                sent,
                args.seconds,
                args.concurrency,
                args.rate,
                honour_retry_after=not args.ignore_retry_after,
            )
            sampler.cancel()
            if cpu_sampler is not None:
                cpu_sampler.cancel()
                cpu_marks.append((time.monotonic(), {n: proc_cpu_s(p) or 0.0 for n, p in pids.items()}))
            rss.append({n: proc_rss_mb(p) for n, p in pids.items()})
            counting[0] = False
            intents1, denials1 = await decided_count(js)
            pending, ack_pending = await bridge_backlog(js)
            accepted = len(sent.accepted)
            decided_flood = intents1 - intents0 + denials1 - denials0
            # the signals a sender sends right after the flood: are they traded, or stale behind its backlog?
            after = Sent()
            after_first = senders.n + 1
            await flood(by_name["gateway"].port, senders, after, AFTER_S, 1, AFTER_RATE)
            after_numbers = [n for n in after.accepted if n >= after_first]
            print(f"flood done; draining (at most {args.drain:g} s) ...", flush=True)
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline:
                p, a = await bridge_backlog(js)
                i, d = await decided_count(js)
                if p + a == 0 and (i - intents0 + d - denials0) >= accepted:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # the last fills
            wall = time.monotonic() - t0
            cpu1 = {n: proc_cpu_s(p) or 0.0 for n, p in pids.items()}
            intents2, denials2 = await decided_count(js)
            authority1 = await scrape(http, by_name["authority"].port)
            conns1 = await connz(http, monitor)
            p_end, a_end = await bridge_backlog(js)
    finally:
        await nc.close()

    gw_rate = accepted / elapsed
    dec_rate = decided_flood / elapsed
    print("\nresult")
    print(f"  cores {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (at the end)")
    print(
        f"  gateway accepted   {accepted} in {elapsed:.1f} s = {gw_rate:.0f}/s   "
        f"statuses {dict(sorted(sent.statuses.items()))}"
    )
    print(
        f"  decided            {decided_flood} during the flood = {dec_rate:.0f}/s "
        f"(intents {intents1 - intents0}, denials {denials1 - denials0})"
    )
    print(f"  ratio              decided/s ÷ accepted/s = {dec_rate / gw_rate if gw_rate else float('nan'):.2f}")
    print(f"  pending at the end {pending + ack_pending} (bridge durable {pending} + {ack_pending} delivered, unacked)")
    codes = {
        k: int(v - by_label(authority0, "authority_requests_total", "code").get(k, 0))
        for k, v in by_label(authority1, "authority_requests_total", "code").items()
    }
    print(
        f"  after the drain    decided {intents2 - intents0 + denials2 - denials0} of {accepted} "
        f"(backlog {p_end + a_end}) after {wall:.0f} s; authority answers { {k: v for k, v in codes.items() if v} }"
    )
    after_fills = [1000 * (sent.filled[n] - after.sent[n]) for n in after_numbers if n in sent.filled]
    after_denied = sum(1 for n in after_numbers if sent.decision.get(n) == "denied")
    print(
        f"  right after        {sum(after.statuses.values())} signals at {AFTER_RATE:g}/s: statuses "
        f"{dict(sorted(after.statuses.items()))}; filled {len(after_fills)}, denied {after_denied}; "
        f"webhook→fill p50 {pct(after_fills, 0.5):.1f} ms, max {max(after_fills, default=float('nan')):.1f} ms"
    )
    ours = [n for n in sent.accepted if n >= first]
    ours.sort()
    for label, part in (("first", ours[:EDGE]), ("last", ours[-EDGE:])):
        fills = [1000 * (sent.filled[n] - sent.sent[n]) for n in part if n in sent.filled]
        decs = [1000 * (sent.decided[n] - sent.sent[n]) for n in part if n in sent.decided]
        denied = sum(1 for n in part if sent.decision.get(n) == "denied")
        print(
            f"  {label} {len(part):>4} signals: webhook→fill p50 {pct(fills, 0.5):8.1f} ms  "
            f"p99 {pct(fills, 0.99):8.1f} ms"
            f" (n={len(fills)});  webhook→decision p50 {pct(decs, 0.5):8.1f} ms  p99 {pct(decs, 0.99):8.1f} ms;"
            f" denied {denied}"
        )
    if args.timeline:
        print(f"  webhook→fill by when the webhook was sent, windows of {args.timeline:g} s: p50 / p99 / max ms (n)")
        t_first = min(sent.sent[n] for n in ours) if ours else 0.0
        windows: dict[int, list[float]] = {}
        for n in ours:
            if n in sent.filled:
                w = int((sent.sent[n] - t_first) // args.timeline)
                windows.setdefault(w, []).append(1000 * (sent.filled[n] - sent.sent[n]))
        for w, values in sorted(windows.items()):
            print(
                f"    {w * args.timeline:6.0f} s  {pct(values, 0.5):6.1f} / {pct(values, 0.99):6.1f} / "
                f"{max(values):6.1f}  ({len(values)})"
            )
        # CPU a signal per window (sampled while sending, so the work of a window's signals lands mostly in it)
        services = [n for n in pids if n != "bench (client)"]
        print("  CPU ms per accepted signal by window: " + ", ".join(services) + ", all")
        for (t_a, c_a), (t_b, c_b) in zip(cpu_marks, cpu_marks[1:], strict=False):
            n_sent = sum(1 for n in ours if t_a <= sent.sent[n] < t_b)
            if n_sent == 0:
                continue
            per = [1000 * (c_b[n] - c_a[n]) / n_sent for n in services]
            print(f"    {t_a - cpu_marks[0][0]:6.0f} s  " + " ".join(f"{v:5.2f}" for v in per) + f"  {sum(per):5.2f}")
    print(f"  CPU per accepted signal (flood + drain, {wall:.0f} s)     RSS MB   idle CPU ms/s (before the flood)")
    total_ms = idle_total = 0.0
    for name, pid in pids.items():
        ms = 1000 * (cpu1[name] - cpu0[name]) / max(1, accepted)
        if name != "bench (client)":
            total_ms += ms
            idle_total += idle[name]
        print(f"    {name:<16} {ms:7.2f} ms   {proc_rss_mb(pid) or float('nan'):6.0f}   {idle[name]:7.1f}")
    print(f"    {'all services':<16} {total_ms:7.2f} ms            {idle_total:7.1f}   (the bench client not counted)")
    print("  NATS messages per accepted signal, by connection (published to the server / delivered by it)")
    total_in = total_out = 0.0
    for name in sorted(conns1):
        i0, o0 = conns0.get(name, (0, 0))
        i1, o1 = conns1[name]
        per_in, per_out = (i1 - i0) / max(1, accepted), (o1 - o0) / max(1, accepted)
        if name != "bench":
            total_in, total_out = total_in + per_in, total_out + per_out
        if per_in + per_out >= 0.01:
            print(f"    {name:<28} {per_in:6.2f} in  {per_out:6.2f} out")
    print(f"    {'all services':<28} {total_in:6.2f} in  {total_out:6.2f} out   (the bench connection not counted)")
    if subjects:
        print("  published per accepted signal during the flood, by subject pattern (--subjects)")
        for key, count in sorted(subjects.items(), key=lambda kv: -kv[1])[:25]:
            print(f"    {count / max(1, accepted):6.2f}  {key}")
    marks = [0, len(rss) // 4, len(rss) // 2, 3 * len(rss) // 4, len(rss) - 1]
    print(f"  RSS MB over the flood (start, 1/4, 1/2, 3/4, end): {len(sent.accepted)} signals accepted in all")
    for name in pids:
        print(f"    {name:<16} " + " ".join(f"{rss[i].get(name) or float('nan'):6.0f}" for i in marks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="flood length (default 30)")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--rate", type=float, default=0.0, help="webhooks/s, open loop (default 0: closed loop)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle window before the flood, s (default 5)")
    parser.add_argument("--drain", type=float, default=120.0, help="after the flood, wait at most this (default 120)")
    parser.add_argument("--log-level", default="INFO", help="the services' TRADING_MCP_LOG_LEVEL (default INFO)")
    parser.add_argument("--timeline", type=float, default=0.0, help="print latency per window of this many s")
    parser.add_argument("--subjects", action="store_true", help="count what is published, by subject pattern")
    parser.add_argument(
        "--max-signal-backlog",
        type=int,
        default=1000,
        help="the gateway's TRADING_MCP_MAX_SIGNAL_BACKLOG (default 1000, the product's; 0: no count limit)",
    )
    parser.add_argument(
        "--max-signal-wait-s",
        type=float,
        default=2.0,
        help="the gateway's TRADING_MCP_MAX_SIGNAL_WAIT_S (default 2, the product's; 0: no wait limit)",
    )
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="closed loop: resend at once after a 503 with Retry-After (a hostile flood) instead of waiting",
    )
    parser.add_argument(
        "--execsim-snapshot-every-s",
        type=float,
        default=30.0,
        help="the simulator's TRADING_MCP_EXECSIM_SNAPSHOT_EVERY_SECONDS (default 30, the product's; 0: none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (service logs) and print its path")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    nats_server: EmbeddedNats | None = None
    services: list[Service] = []
    try:
        monitor = free_port()
        nats_server = start_nats_server(tmp / "nats", monitor_port=monitor)
        limits = tmp / "limits.json"
        limits.write_text(json.dumps(LIMITS))
        data = ["--data-dir", str(tmp / "data")]
        secret = signing.new_secret()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_MCP_")}
        env.update(
            NATS_URL=nats_server.url,
            TRADING_MCP_LOG_LEVEL=args.log_level,
            TRADING_MCP_WEBHOOK_SECRET=secret,
            TRADING_MCP_MAX_SIGNAL_BACKLOG=str(args.max_signal_backlog),
            TRADING_MCP_MAX_SIGNAL_WAIT_S=str(args.max_signal_wait_s),
            TRADING_MCP_EXECSIM_SNAPSHOT_EVERY_SECONDS=str(args.execsim_snapshot_every_s),
            **{authority_key.ENV: secrets.token_urlsafe(32)},
        )
        services = [
            Service("execsim", ["execsim", *data], tmp / "execsim.log"),
            Service("authority", ["authority", *data, "--risk-limits-file", str(limits)], tmp / "authority.log"),
            Service(
                "bridge",
                ["serve", "--transport", "streamable-http", "--bridge", "--bridge-mode", "follow", *data],
                tmp / "bridge.log",
            ),
            Service("gateway", ["gateway", *data], tmp / "gateway.log"),
        ]

        async def start_all() -> None:
            async with httpx.AsyncClient() as http:
                for s in services:  # in `trading-mcp up`'s order
                    s.start(env)
                    await s.wait_healthy(http)

        asyncio.run(start_all())
        print(
            f"pipeline vs gateway: {os.cpu_count()} cores, load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at start; symbols {', '.join(SYMBOLS)}; "
            f"follow mode, limits off but max_position; services log at {args.log_level}"
        )
        asyncio.run(run(args, nats_server, services, secret, monitor))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the services", file=sys.stderr)
    finally:
        for s in reversed(services):
            with contextlib.suppress(Exception):
                s.stop()
        if nats_server is not None:
            with contextlib.suppress(Exception):
                nats_server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
