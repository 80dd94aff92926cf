"""Real processes and stream reads for the crash tests.

Every process gets `TRADING_MCP_AUTHORITY_KEY` = `AUTHORITY_KEY`, and `publish_all` signs the order intents
and cancels it publishes with it, as the order authority does: the simulator ignores unsigned ones."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal as os_signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from nats.js import JetStreamContext, api
from pydantic import BaseModel

from bus import authority_key
from bus.embedded import free_port
from bus.jetstream import CORRELATION_ID, MSG_ID, publish
from schemas.orders import TERMINAL_STATUSES, Fill, OrderEvent, OrderIntent, RiskDenied
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tests.conftest import wait_for
from tools.portfolio import Portfolio

EXE = str(Path(sys.executable).parent / "trading-mcp")
AUTHORITY_KEY = secrets.token_urlsafe(32)
SIGNED_SUBJECTS = (Subject.ORDER_INTENT, Subject.ORDER_CANCEL)


@dataclass
class Service:
    args: list[str]
    nats_url: str
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # on top of the defaults below

    async def start(self) -> None:
        env = {
            **os.environ,
            "NATS_URL": self.nats_url,
            "TRADING_MCP_LOG_LEVEL": "WARNING",
            authority_key.ENV: AUTHORITY_KEY,
            **self.env,
        }
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([EXE, *self.args, "--port", str(self.port)], env=env, stdout=out, stderr=out)
        out.close()
        async with httpx.AsyncClient() as http:

            async def healthy() -> bool:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)).status_code == 200
                return False

            await wait_for(healthy, 60, f"{self.args[0]} to be healthy")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(os_signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(os_signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def services(*items: Service) -> Iterator[None]:
    try:
        yield
    finally:
        for s in items:
            s.stop()


async def read_stream(
    js: JetStreamContext, stream: str, subject: str, timeout: float = 20.0
) -> list[tuple[str, bytes]]:
    """Every message of `subject` in `stream` as the stream holds it when called, in order, as (subject, data).
    A fetch that times out (a loaded machine, a cluster electing a leader) is retried, never taken for the end:
    the read ends once it has every message the consumer counted at its creation, or fails after `timeout`."""
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, inactive_threshold=30.0
    )
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    out: list[tuple[str, bytes]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        expected = (await sub.consumer_info()).num_pending
        while len(out) < expected:
            try:
                msgs = await sub.fetch(min(512, expected - len(out)), timeout=1.0)
            except TimeoutError:
                msgs = []
            out.extend((m.subject, m.data) for m in msgs)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"read {len(out)} of {expected} messages of {stream}/{subject} in {timeout:g} s")
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


@dataclass
class Outcomes:
    intents: dict[str, OrderIntent]
    denials: list[RiskDenied]
    reports: list[OrderEvent]
    fills: list[Fill]

    def terminal(self) -> dict[str, list[str]]:
        """Each order's final states: its terminal reports, and `filled` once its fills reach its quantity (the fill
        completing an order finishes it; no `filled` report follows it, `schemas.orders.superseded_reports`)."""
        out: dict[str, list[str]] = {}
        for r in self.reports:
            if r.status in TERMINAL_STATUSES and r.reason != "duplicate_client_order_id":
                out.setdefault(r.client_order_id, []).append(r.status)
        for coid, quantity in self.filled().items():
            intent = self.intents.get(coid)
            if intent is not None and quantity >= intent.quantity:
                out.setdefault(coid, []).append("filled")
        return out

    def filled(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for f in self.fills:
            total[f.client_order_id] += f.quantity  # type: ignore[assignment]
        return total

    def portfolio(self) -> Portfolio:
        p = Portfolio()
        for f in self.fills:
            p.apply(f)
        return p


async def outcomes(js: JetStreamContext) -> Outcomes:
    decisions = await read_stream(js, "DECISIONS", "decisions.>")
    executions = await read_stream(js, "EXECUTIONS", "executions.>")
    intents = {}
    denials = []
    for subject, data in decisions:
        if subject == Subject.ORDER_INTENT.value:
            i = OrderIntent.model_validate_json(data)
            intents[i.client_order_id] = i
        elif subject == Subject.RISK_DENIED.value:
            denials.append(RiskDenied.model_validate_json(data))
    reports = [OrderEvent.model_validate_json(d) for s, d in executions if s == Subject.EXECUTION_REPORT.value]
    fills = [Fill.model_validate_json(d) for s, d in executions if s == Subject.EXECUTION_FILL.value]
    return Outcomes(intents, denials, reports, fills)


def assert_every_intent_has_exactly_one_outcome(o: Outcomes, expect_open: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    terminal = o.terminal()
    filled = o.filled()
    assert len({f.fill_id for f in o.fills}) == len(o.fills), "a fill was published twice"
    for coid, intent in o.intents.items():
        if coid in expect_open:
            assert coid not in terminal, (coid, [r for r in o.reports if r.client_order_id == coid])
            continue
        assert len(terminal.get(coid, [])) == 1, f"{coid}: terminal reports {terminal.get(coid)}"
        if terminal[coid] == ["filled"]:
            assert filled[coid] == intent.quantity, f"{coid}: filled {filled[coid]} of {intent.quantity}"
        else:
            assert filled[coid] < intent.quantity


def signal(
    symbol: str, price: str, action: str | None = None, quantity: int | None = None, **ohlc: str
) -> NormalizedSignal:
    sid = f"sig_{uuid.uuid4().hex[:16]}"
    return NormalizedSignal(
        signal_id=sid,
        source="test",
        symbol=symbol,
        price=Decimal(price),
        action=action,  # type: ignore[arg-type]
        quantity=Decimal(quantity) if quantity else None,
        received_at=datetime.now(UTC),
        correlation_id=f"corr-{sid}",
        **{k: Decimal(v) for k, v in ohlc.items()},
    )


async def publish_signed(
    js: JetStreamContext, subject: Subject, message: BaseModel, *, msg_id: str, key: str | bytes = AUTHORITY_KEY
) -> None:
    """Publish an order intent or cancel as the order authority does: signed with `key`."""
    data = message.model_dump_json().encode()
    raw = key.encode() if isinstance(key, str) else key
    headers = {MSG_ID: msg_id, CORRELATION_ID: msg_id, authority_key.HEADER: authority_key.sign(raw, data)}
    await js.publish(subject.value, data, headers=headers, timeout=2.0)


async def publish_all(js: JetStreamContext, subject: Subject, messages: list, ids: list[str]) -> None:  # type: ignore[type-arg]
    """Publish with retries (NATS may be restarting); a retry is deduplicated by its id. Order intents and
    cancels are signed with `AUTHORITY_KEY`."""

    def one(m: BaseModel, i: str):  # type: ignore[no-untyped-def]
        if subject in SIGNED_SUBJECTS:
            return publish_signed(js, subject, m, msg_id=i)
        return publish(js, subject, m, msg_id=i, correlation_id=i)

    for start in range(0, len(messages), 50):
        chunk = list(zip(messages[start : start + 50], ids[start : start + 50], strict=True))
        for _attempt in range(200):
            results = await asyncio.gather(*(one(m, i) for m, i in chunk), return_exceptions=True)
            failed = [(m, i) for (m, i), r in zip(chunk, results, strict=True) if isinstance(r, BaseException)]
            if not failed:
                break
            chunk = failed
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("could not publish")
