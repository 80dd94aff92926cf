"""Live pipeline throughput with history behind it: the bridge's decided signals/s during a steady
300 signals/s run of several minutes, its backlog, and how many signals the authority refused as stale.
Prints numbers; asserts nothing (never a test).

Real processes against a fresh, unlocked nats-server (`bus.embedded.start_nats_server`):
`trading-mcp execsim`, `trading-mcp authority` (every order asked of it over request/reply, decisions
journaled to stream ACCOUNT) and `trading-mcp serve --transport streamable-http --bridge` (follow mode:
each signal with an action becomes an order request). The authority gets a limits file that switches
off every limit but `max_position` (set to 1e9), so the run measures throughput, not denials. The
signal-age limit stays at its default (5 s): a stale refusal is the honest measure of falling behind.

Phases:
1. history: `--history N` signals published closed-loop (at most `--window` undecided at a time, each
   `fired_at` = its publish time) and waited for until every one is decided. Its rate is the
   pipeline's closed-loop capacity.
2. timed: `--rate` signals/s (default 300) for `--seconds`, paced with asyncio, published with
   Nats-Msg-Id in small concurrent batches. Every 10 s a line; then a summary, latency from the
   streams (decision time − fired_at), the services' /metrics over the timed run, and each process's
   RSS and CPU.

Run: .venv/bin/python bench/bridge_throughput.py [--seconds 180] [--history 10000] [--rate 300]
(quick: --seconds 30 --history 2000). Logs of the services are kept only with --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal as os_signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import nats  # noqa: E402
from nats.js import JetStreamContext, api  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bus import authority_key  # noqa: E402
from bus.embedded import EmbeddedNats, free_port, start_nats_server  # noqa: E402
from schemas.signals import NormalizedSignal  # noqa: E402

EXE = str(Path(sys.executable).parent / "trading-mcp")
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
SUBJECT = "signals.normalized"
INTENT, DENIED = "decisions.order_intent", "decisions.risk_denied"
REPORT_EVERY_S = 10.0
EDGE_S = 30.0  # early / late window of the summary
LIMITS = {  # every limit off but max_position: the bench measures throughput, not denials
    "max_position": "1000000000",
    "max_order_notional": None,
    "max_gross_exposure": None,
    "max_open_orders": None,
    "max_orders_per_window": None,
    "daily_loss_limit": None,
    "max_drawdown": None,
}


# ---------------------------------------------------------------------- processes


@dataclass
class Service:
    name: str
    args: list[str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [EXE, *self.args, "--port", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops the services in order
            )

    async def wait_healthy(self, http: httpx.AsyncClient, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} not healthy within {timeout:g} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(os_signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def proc_rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of `pid` in seconds."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


# ---------------------------------------------------------------------- metrics


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: httpx.AsyncClient, port: int) -> Samples:
    out: Samples = {}
    with contextlib.suppress(httpx.HTTPError):
        text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, lab), v in samples.items():
        if n == name:
            key = dict(lab).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def window_mean_ms(before: Samples, after: Samples, name: str) -> float:
    count = total(after, f"{name}_count") - total(before, f"{name}_count")
    return 1000 * (total(after, f"{name}_sum") - total(before, f"{name}_sum")) / count if count > 0 else float("nan")


def histogram_line(before: Samples, after: Samples, name: str, **labels: str) -> str:
    """count, mean and bucket-bound p50 / p95 / p99 of a histogram between two scrapes."""
    count = total(after, f"{name}_count", **labels) - total(before, f"{name}_count", **labels)
    if count <= 0:
        return f"{name:<42} no observations"
    mean = (total(after, f"{name}_sum", **labels) - total(before, f"{name}_sum", **labels)) / count
    buckets: dict[float, float] = {}
    for (n, lab), v in after.items():
        d = dict(lab)
        if n == f"{name}_bucket" and all(d.get(k) == w for k, w in labels.items()):
            le = float(d["le"])
            buckets[le] = buckets.get(le, 0.0) + v - before.get((n, lab), 0.0)

    def q(p: float) -> str:
        for le in sorted(buckets):
            if buckets[le] >= p * count:
                return "> 2.5 s" if le == float("inf") else f"<= {le * 1000:g} ms"
        return "?"

    return (
        f"{name:<42} n={count:>8.0f}  mean {mean * 1000:8.3f} ms  "
        f"p50 {q(0.5):>12}  p95 {q(0.95):>12}  p99 {q(0.99):>12}  busy {count * mean:7.1f} s"
    )


# ---------------------------------------------------------------------- the bus


@dataclass
class Counts:
    intents: int
    denials: int
    pending: int  # bridge durable: not yet delivered
    ack_pending: int  # delivered to the bridge, not yet acked
    acked: int  # the bridge durable's ack floor (stream sequence)
    journal: int

    @property
    def decided(self) -> int:
        return self.intents + self.denials

    @property
    def backlog(self) -> int:
        return self.pending + self.ack_pending


async def counts(js: JetStreamContext) -> Counts:
    info = await js.stream_info("DECISIONS", subjects_filter="decisions.>")
    subjects = info.state.subjects or {}
    c = await js.consumer_info("SIGNALS", "bridge")
    journal = (await js.stream_info("ACCOUNT")).state.messages
    return Counts(
        subjects.get(INTENT, 0),
        subjects.get(DENIED, 0),
        c.num_pending or 0,
        c.num_ack_pending or 0,
        c.ack_floor.stream_seq if c.ack_floor else 0,
        journal,
    )


class Signals:
    """Buy / sell alternating, quantity 1, a few symbols, prices wandering; fired_at = now."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.prices = {s: 100.0 + 10 * i for i, s in enumerate(SYMBOLS)}
        self.n = 0
        self.fired: dict[str, float] = {}  # signal_id -> fired_at (epoch seconds)

    def next(self) -> tuple[str, bytes]:
        self.n += 1
        symbol = SYMBOLS[self.n % len(SYMBOLS)]
        p = max(1.0, self.prices[symbol] * (1 + self.rng.gauss(0, 0.001)))
        self.prices[symbol] = p
        now = datetime.now(UTC)
        sid = f"bench-{self.n:08d}-{secrets.token_hex(3)}"
        signal = NormalizedSignal(
            signal_id=sid,
            source="bench",
            symbol=symbol,
            price=Decimal(f"{p:.4f}"),
            action="buy" if self.n % 2 else "sell",
            quantity=Decimal(1),
            received_at=now,
            fired_at=now,
            correlation_id=f"corr-{sid}",
        )
        self.fired[sid] = now.timestamp()
        return sid, signal.model_dump_json().encode()


async def publish_batch(js: JetStreamContext, batch: list[tuple[str, bytes]]) -> int:
    """Concurrent JetStream publishes with Nats-Msg-Id; a failed one is retried (deduplicated by its id)."""
    todo = batch
    for _ in range(20):
        results = await asyncio.gather(
            *(
                js.publish(SUBJECT, data, timeout=5.0, headers={"Nats-Msg-Id": sid, "X-Correlation-ID": f"corr-{sid}"})
                for sid, data in todo
            ),
            return_exceptions=True,
        )
        todo = [m for m, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
        if not todo:
            return len(batch)
        await asyncio.sleep(0.1)
    return len(batch) - len(todo)


async def read_decisions(js: JetStreamContext, start_seq: int) -> list[tuple[str, dict[str, object]]]:
    """DECISIONS from `start_seq` on, as (subject, parsed json)."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start_seq),
        inactive_threshold=30.0,
    )
    sub = await js.pull_subscribe("decisions.>", stream="DECISIONS", config=config)
    out: list[tuple[str, dict[str, object]]] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(1024, timeout=2.0)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            out.extend((m.subject, json.loads(m.data)) for m in msgs)
            if msgs and msgs[-1].metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ts(value: object) -> float:
    return datetime.fromisoformat(str(value)).timestamp()


# ---------------------------------------------------------------------- the run


@dataclass
class Bench:
    args: argparse.Namespace
    nats_server: EmbeddedNats
    services: list[Service]
    gen: Signals = field(default_factory=Signals)

    @property
    def by_name(self) -> dict[str, Service]:
        return {s.name: s for s in self.services}

    def pids(self) -> dict[str, int]:
        out = {s.name: s.proc.pid for s in self.services if s.proc is not None}
        if self.nats_server.process is not None:
            out["nats-server"] = self.nats_server.process.pid
        out["bench (publisher)"] = os.getpid()
        return out

    def cpu(self) -> dict[str, float]:
        return {n: c for n, p in self.pids().items() if (c := proc_cpu_s(p)) is not None}

    async def run(self) -> None:
        nc = await nats.connect(self.nats_server.url, name="bench")
        js = nc.jetstream()
        try:
            async with httpx.AsyncClient() as http:
                await self._run(nc, js, http)
        finally:
            await nc.close()

    async def _run(self, nc: nats.NATS, js: JetStreamContext, http: httpx.AsyncClient) -> None:
        a = self.args
        # ---------------- history, closed loop
        if a.history:
            print(f"\nhistory: {a.history} signals, at most {a.window} undecided at a time ...", flush=True)
            t0 = time.monotonic()
            published = 0
            last_print = t0
            while True:
                c = await counts(js)
                if published < a.history and published - c.decided < a.window:
                    n = min(a.window - (published - c.decided), a.history - published, 100)
                    published += await publish_batch(js, [self.gen.next() for _ in range(n)])
                    continue
                if c.decided >= a.history and c.backlog == 0:
                    break
                if time.monotonic() - last_print >= REPORT_EVERY_S:
                    last_print = time.monotonic()
                    print(f"  {last_print - t0:6.1f} s  published {published}  decided {c.decided}", flush=True)
                await asyncio.sleep(0.05)
            took = time.monotonic() - t0
            authority = await scrape(http, self.by_name["authority"].port)
            stale = total(authority, "authority_requests_total", code="stale_signal")
            print(
                f"history decided: {c.decided} in {took:.1f} s = {c.decided / took:.0f} decided/s closed-loop "
                f"(intents {c.intents}, denials {c.denials}, of which stale {stale:.0f}); journal {c.journal} entries",
                flush=True,
            )
            bridge = await scrape(http, self.by_name["bridge"].port)
            kinds = {
                k: int(v) for k, v in sorted(by_label(authority, "authority_journal_appends_total", "kind").items())
            }
            print(
                f"history per signal: bridge {window_mean_ms({}, bridge, 'mcp_processing_duration_seconds'):.2f} ms, "
                f"authority decision {window_mean_ms({}, authority, 'authority_decision_seconds'):.2f} ms, "
                f"journal append {window_mean_ms({}, authority, 'authority_journal_append_seconds'):.2f} ms; "
                f"appends by kind {kinds}",
                flush=True,
            )
            await asyncio.sleep(2)  # let the last fills and reports settle before the clock starts

        # ---------------- timed, open loop at a steady rate
        start = await counts(js)
        decisions_seq = (await js.stream_info("DECISIONS")).state.last_seq + 1
        scrapes_before = {s.name: await scrape(http, s.port) for s in self.services}
        cpu_before = self.cpu()
        stale_before = total(scrapes_before["authority"], "authority_requests_total", code="stale_signal")
        first_timed = self.gen.n + 1
        print(
            f"\ntimed: {a.rate:g} signals/s for {a.seconds:g} s (journal {start.journal} entries at the start)",
            flush=True,
        )
        print(
            f"{'elapsed':>7} {'published':>9} {'pub/s':>6} {'decided':>8} {'dec/s':>6} {'backlog':>7} "
            f"{'(pending+ackpend)':>17} {'stale':>6} {'journal':>8} {'brg ms':>6} {'auth ms':>7} {'app ms':>6}"
            "  cpu% auth/bridge/execsim/nats/bench",
            flush=True,
        )
        stop = asyncio.Event()
        pub = {"n": 0, "t_end": 0.0}
        t0 = time.monotonic()

        async def publisher() -> None:
            tick = 1.0 / max(1.0, a.rate / a.batch)
            while not stop.is_set():
                elapsed = time.monotonic() - t0
                if elapsed >= a.seconds:
                    break
                due = int(a.rate * elapsed) - pub["n"]
                while due > 0:
                    k = min(due, a.batch)
                    pub["n"] += await publish_batch(js, [self.gen.next() for _ in range(k)])
                    due -= k
                await asyncio.sleep(tick)
            pub["t_end"] = time.monotonic() - t0
            with contextlib.suppress(Exception):
                at_end = await counts(js)
                self._backlog_at_end = f"{at_end.backlog} ({at_end.pending}+{at_end.ack_pending})"
                pub["decided"] = at_end.decided - start.decided

        task = asyncio.create_task(publisher())
        rows: list[tuple[float, int, int]] = [(0.0, 0, 0)]  # (elapsed, published, decided) since start
        max_backlog = 0
        last_cpu, last_t = cpu_before, t0
        last_bridge, last_authority = scrapes_before["bridge"], scrapes_before["authority"]
        try:
            next_report = REPORT_EVERY_S
            while True:
                await asyncio.sleep(max(0.0, next_report - (time.monotonic() - t0)))
                now = time.monotonic()
                elapsed = now - t0
                c = await counts(js)
                authority = await scrape(http, self.by_name["authority"].port)
                bridge = await scrape(http, self.by_name["bridge"].port)
                stale = total(authority, "authority_requests_total", code="stale_signal") - stale_before
                brg_ms = window_mean_ms(last_bridge, bridge, "mcp_processing_duration_seconds")
                auth_ms = window_mean_ms(last_authority, authority, "authority_decision_seconds")
                app_ms = window_mean_ms(last_authority, authority, "authority_journal_append_seconds")
                last_bridge, last_authority = bridge, authority
                decided = c.decided - start.decided
                max_backlog = max(max_backlog, c.backlog)
                _, _, prev_decided = rows[-1]
                window = elapsed - rows[-1][0]
                rows.append((elapsed, pub["n"], decided))
                cpu = self.cpu()
                share = {n: 100 * (cpu.get(n, 0) - last_cpu.get(n, 0)) / (now - last_t) for n in cpu}
                last_cpu, last_t = cpu, now
                cpu_text = "/".join(
                    f"{share.get(n, 0):.0f}"
                    for n in ("authority", "bridge", "execsim", "nats-server", "bench (publisher)")
                )
                print(
                    f"{elapsed:6.1f}s {pub['n']:>9} {pub['n'] / elapsed:>6.0f} {decided:>8} "
                    f"{(decided - prev_decided) / window:>6.0f} {c.backlog:>7} "
                    f"{f'({c.pending}+{c.ack_pending})':>17} {stale:>6.0f} {c.journal:>8} "
                    f"{brg_ms:>6.2f} {auth_ms:>7.2f} {app_ms:>6.2f}  {cpu_text}",
                    flush=True,
                )
                next_report += REPORT_EVERY_S
                if task.done() and (c.backlog == 0 or elapsed > a.seconds + a.drain):
                    break
        finally:
            stop.set()
            await task
        end = await counts(js)
        scrapes_after = {s.name: await scrape(http, s.port) for s in self.services}
        cpu_after = self.cpu()
        wall = time.monotonic() - t0
        self._summary(rows, pub, end, start, max_backlog, scrapes_before, scrapes_after, cpu_before, cpu_after, wall)
        await self._latency(js, decisions_seq, first_timed)
        self._bottleneck(scrapes_before, scrapes_after)

    def _summary(  # noqa: PLR0913
        self, rows, pub, end, start, max_backlog, before, after, cpu_before, cpu_after, wall
    ) -> None:  # type: ignore[no-untyped-def]
        a = self.args

        def rate_between(t_from: float, t_to: float) -> float:
            inside = [r for r in rows if t_from - 1 <= r[0] <= t_to + 1]
            if len(inside) < 2:
                return float("nan")
            return (inside[-1][2] - inside[0][2]) / (inside[-1][0] - inside[0][0])

        timed_rows = [r for r in rows if r[0] <= a.seconds + REPORT_EVERY_S / 2]
        last = timed_rows[-1][0]
        stale = total(after["authority"], "authority_requests_total", code="stale_signal") - total(
            before["authority"], "authority_requests_total", code="stale_signal"
        )
        decided_in_run = int(pub.get("decided", timed_rows[-1][2]))
        last = pub["t_end"] or last
        print("\nsummary")
        print(
            f"  published          {pub['n']} in {pub['t_end']:.1f} s = {pub['n'] / pub['t_end']:.1f} signals/s "
            f"(target {a.rate:g})"
        )
        print(
            f"  decided            {decided_in_run} during the {last:.0f} s of publishing = "
            f"{decided_in_run / last:.1f} decided/s; {end.decided - start.decided} in all after "
            f"{wall:.0f} s (intents {end.intents - start.intents}, denials {end.denials - start.denials})"
        )
        print(f"  early decided/s    {rate_between(0, EDGE_S):.1f}  (first {EDGE_S:g} s)")
        print(f"  late decided/s     {rate_between(last - EDGE_S, last):.1f}  (last {EDGE_S:g} s of publishing)")
        print(
            f"  max backlog        {max_backlog} signals (bridge durable num_pending + num_ack_pending); "
            f"at the end of publishing {self._backlog_at_end}"
        )
        print(f"  stale refusals     {stale:.0f} (authority answer stale_signal, age > 5 s since fired_at)")
        print(
            f"  journal (ACCOUNT)  {start.journal} -> {end.journal} entries "
            f"(+{end.journal - start.journal}, "
            f"{(end.journal - start.journal) / max(1, end.decided - start.decided):.2f} per decided signal)"
        )
        print("  process            RSS MB    CPU s in run   CPU % of one core")
        for name, pid in self.pids().items():
            rss = proc_rss_mb(pid)
            cpu = cpu_after.get(name, 0) - cpu_before.get(name, 0)
            print(
                f"  {name:<18} {rss if rss is not None else float('nan'):6.0f}    {cpu:10.1f}   {100 * cpu / wall:8.0f}"
            )

    _backlog_at_end: str = "n/a"

    async def _latency(self, js: JetStreamContext, start_seq: int, first_timed: int) -> None:
        t = time.monotonic()
        decisions = await read_decisions(js, start_seq)
        fired = self.gen.fired
        lat: list[tuple[float, float, str]] = []  # (fired_at, latency, outcome)
        for subject, d in decisions:
            sid = str(d.get("signal_id") or "")
            if sid not in fired or int(sid.split("-")[1]) < first_timed:
                continue
            if subject == INTENT:
                lat.append((fired[sid], ts(d["created_at"]) - fired[sid], "intent"))
            elif subject == DENIED:
                lat.append((fired[sid], ts(d["ts"]) - fired[sid], str(d.get("reason_code"))))
        if not lat:
            print("\nlatency: no decisions of the timed run found")
            return
        t_first = min(f for f, _, _ in lat)
        values = [x for _, x, _ in lat]
        print(
            f"\nsignal -> decision latency (intent.created_at / denial.ts - fired_at; {len(lat)} decisions, "
            f"read in {time.monotonic() - t:.1f} s)"
        )
        print(
            f"  all                p50 {pct(values, 0.5) * 1000:9.1f} ms   p95 {pct(values, 0.95) * 1000:9.1f} ms   "
            f"max {max(values) * 1000:9.1f} ms"
        )
        span = max(f for f, _, _ in lat) - t_first
        for label, lo, hi in (("first 30 s fired", 0, EDGE_S), ("last 30 s fired", span - EDGE_S, span + 1)):
            part = [x for f, x, _ in lat if lo <= f - t_first <= hi]
            if part:
                print(
                    f"  {label:<18} p50 {pct(part, 0.5) * 1000:9.1f} ms   p95 {pct(part, 0.95) * 1000:9.1f} ms   "
                    f"n={len(part)}"
                )
        outcomes: dict[str, int] = {}
        for _, _, o in lat:
            outcomes[o] = outcomes.get(o, 0) + 1
        print(f"  outcomes           {outcomes}")

    def _bottleneck(self, before: dict[str, Samples], after: dict[str, Samples]) -> None:
        print("\nwhere the time goes (service /metrics, deltas over the timed run incl. drain)")
        au, br, ex = after["authority"], after["bridge"], after["execsim"]
        b_au, b_br, b_ex = before["authority"], before["bridge"], before["execsim"]
        print(" authority:")
        print("  " + histogram_line(b_au, au, "authority_decision_seconds"))
        print("  " + histogram_line(b_au, au, "authority_journal_append_seconds"))
        appends = {
            k: v - by_label(b_au, "authority_journal_appends_total", "kind").get(k, 0)
            for k, v in by_label(au, "authority_journal_appends_total", "kind").items()
        }
        print(f"  journal appends by kind: { {k: int(v) for k, v in sorted(appends.items()) if v} }")
        codes = {
            k: v - by_label(b_au, "authority_requests_total", "code").get(k, 0)
            for k, v in by_label(au, "authority_requests_total", "code").items()
        }
        print(f"  requests by answer code: { {k: int(v) for k, v in sorted(codes.items()) if v} }")
        delta = {
            n: total(au, f"authority_{m}_total") - total(b_au, f"authority_{m}_total")
            for n, m in (
                ("conflicts", "journal_conflicts"),
                ("republished", "republished"),
                ("marks refused", "marks_refused"),
            )
        }
        print("  " + "  ".join(f"{n} {v:.0f}" for n, v in delta.items()))
        print(" bridge (serve --bridge):")
        print("  " + histogram_line(b_br, br, "mcp_processing_duration_seconds"))
        outcomes = {
            k: v - by_label(b_br, "mcp_decisions_generated_total", "outcome").get(k, 0)
            for k, v in by_label(br, "mcp_decisions_generated_total", "outcome").items()
        }
        print(f"  decisions by outcome: { {k: int(v) for k, v in sorted(outcomes.items()) if v} }")
        brg = window_mean_ms(b_br, br, "mcp_processing_duration_seconds")
        dec = window_mean_ms(b_au, au, "authority_decision_seconds")
        print(
            f"  per signal: bridge {brg:.2f} ms = authority decision {dec:.2f} ms + {brg - dec:.2f} ms outside it "
            "(request/reply hops, the bridge's wait for its journal fold, the bridge's own CPU); "
            f"serial ceiling ~{1000 / brg:.0f} signals/s"
        )
        print(" execsim:")
        print("  " + histogram_line(b_ex, ex, "exec_sim_simulation_duration_seconds"))
        for subj in ("executions.report", "executions.fill"):
            line = histogram_line(b_ex, ex, "jetstream_publish_duration_seconds", subject=subj)
            if "no observations" not in line:
                print("  " + line.replace("jetstream_publish_duration_seconds", f"publish {subj}"))
        recv = total(ex, "exec_sim_orders_received_total") - total(b_ex, "exec_sim_orders_received_total")
        fills = total(ex, "exec_sim_fills_generated_total") - total(b_ex, "exec_sim_fills_generated_total")
        print(
            f"  orders received {recv:.0f}  fills {fills:.0f}  open orders now {total(ex, 'exec_sim_open_orders'):.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="timed run length (default 180)")
    parser.add_argument("--history", type=int, default=10_000, help="signals decided before the clock starts")
    parser.add_argument("--rate", type=float, default=300.0, help="signals/s in the timed run (default 300)")
    parser.add_argument("--batch", type=int, default=10, help="concurrent publishes per batch (default 10)")
    parser.add_argument("--window", type=int, default=200, help="history: undecided signals at most (default 200)")
    parser.add_argument("--drain", type=float, default=60.0, help="after publishing, wait at most this for the backlog")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (service logs) and print its path")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    nats_server: EmbeddedNats | None = None
    services: list[Service] = []
    try:
        nats_server = start_nats_server(tmp / "nats")
        limits = tmp / "limits.json"
        limits.write_text(json.dumps(LIMITS))
        data = ["--data-dir", str(tmp / "data")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_MCP_")}
        env.update(
            NATS_URL=nats_server.url,
            TRADING_MCP_LOG_LEVEL="WARNING",
            **{authority_key.ENV: secrets.token_urlsafe(32)},
        )
        services = [
            Service("execsim", ["execsim", *data], tmp / "execsim.log"),
            Service("authority", ["authority", *data, "--risk-limits-file", str(limits)], tmp / "authority.log"),
            Service("bridge", ["serve", "--transport", "streamable-http", "--bridge", *data], tmp / "bridge.log"),
        ]
        cores = os.cpu_count()
        load = os.getloadavg()
        print(
            f"bridge throughput bench: {cores} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start; "
            "the machine is shared with other work, so read the numbers as orders of size and repeat runs"
        )
        print(
            f"limits: every limit off but max_position=1e9 ({limits.name}); signal-age limit: the default 5 s; "
            f"symbols {', '.join(SYMBOLS)}; buy/sell alternating, quantity 1; market orders, follow mode"
        )

        async def start_all() -> None:
            async with httpx.AsyncClient() as http:
                for s in services:  # execsim and the authority first: the bridge asks the authority
                    s.start(env)
                    await s.wait_healthy(http)

        asyncio.run(start_all())
        bench = Bench(args, nats_server, services)
        asyncio.run(bench.run())
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
