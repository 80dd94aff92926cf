"""The simulator takes order intents and cancels only from the order authority: signed with its key
(`bus.authority_key`). Unsigned or wrongly signed ones are ignored, counted and acked; the restart rebuild
skips them too."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from pydantic import BaseModel

from bus import authority_key
from bus.embedded import EmbeddedNats
from bus.jetstream import publish
from execsim.engine import Engine, EngineConfig
from execsim.service import DURABLE, MARKET_DURABLE, ExecSimService, rebuild, start_consumers
from schemas.orders import OrderCancel, OrderIntent
from schemas.subjects import Subject
from tests.conftest import stream_count, wait_for
from tests.execsim.process_helpers import Service, outcomes, publish_signed, services, signal
from tools.clock import LiveClock

D = Decimal
KEY = b"the-authority-key-for-these-tests"


def _intent(coid: str, limit: str | None = None) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        symbol="AAPL",
        side="buy",
        quantity=D(2),
        order_type="limit" if limit else "market",
        limit_price=D(limit) if limit else None,
        time_in_force="GTC",
        reference_price=D(100),
        origin="mcp",
        created_at=datetime.now(UTC),
        correlation_id=f"corr-{coid}",
    )


def _cancel(coid: str) -> OrderCancel:
    return OrderCancel(
        client_order_id=coid, origin="mcp", created_at=datetime.now(UTC), correlation_id=f"corr-cancel-{coid}"
    )


def _unsigned(subject: str) -> float:
    return REGISTRY.get_sample_value("exec_sim_unsigned_commands_total", {"subject": subject}) or 0.0


async def _publish_unsigned(js: JetStreamContext, subject: Subject, message: BaseModel, msg_id: str) -> None:
    await publish(js, subject, message, msg_id=msg_id, correlation_id=msg_id)


async def _publish_wrongly_signed(js: JetStreamContext, subject: Subject, message: BaseModel, msg_id: str) -> None:
    await publish_signed(js, subject, message, msg_id=msg_id, key=b"not-the-authority-key")


async def _publish_price(js: JetStreamContext, price: str) -> None:
    s = signal("AAPL", price)
    await publish(js, Subject.SIGNALS_NORMALIZED, s, msg_id=s.signal_id, correlation_id=s.correlation_id)


async def _orders_acked(js: JetStreamContext) -> int:
    info = await js.consumer_info("DECISIONS", DURABLE)
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


@contextlib.asynccontextmanager
async def _simulator(js: JetStreamContext, key: bytes | None) -> AsyncIterator[ExecSimService]:
    engine = Engine(LiveClock(), EngineConfig())
    await rebuild(js, engine, MARKET_DURABLE, authority_key=key)
    service = ExecSimService(js, engine, MARKET_DURABLE, authority_key=key)
    stop = asyncio.Event()
    tasks = start_consumers(js, service, stop)
    try:
        yield service
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_unsigned_and_wrongly_signed_intents_are_ignored_counted_and_acked_a_signed_one_fills(
    js: JetStreamContext,
) -> None:
    intent_subject = Subject.ORDER_INTENT.value
    before = _unsigned(intent_subject), _unsigned(Subject.ORDER_CANCEL.value)
    async with _simulator(js, KEY) as service:
        await _publish_price(js, "100")
        await wait_for(lambda: service.engine.last_price("AAPL") == D(100), 10, "the price")
        await _publish_unsigned(js, Subject.ORDER_INTENT, _intent("unsigned"), "unsigned")
        await _publish_wrongly_signed(js, Subject.ORDER_INTENT, _intent("forged"), "forged")
        await publish_signed(js, Subject.ORDER_INTENT, _intent("resting", limit="90"), msg_id="resting", key=KEY)
        await _publish_unsigned(js, Subject.ORDER_CANCEL, _cancel("resting"), "cancel-resting")
        await _publish_wrongly_signed(js, Subject.ORDER_CANCEL, _cancel("resting"), "cancel-resting-2")
        await publish_signed(js, Subject.ORDER_INTENT, _intent("signed"), msg_id="signed", key=KEY)

        async def all_acked() -> bool:
            return await _orders_acked(js) >= await stream_count(js, "DECISIONS")

        await wait_for(all_acked, 10, "every command acked (none left for redelivery)")
        o = await outcomes(js)
        assert {f.client_order_id for f in o.fills} == {"signed"}
        assert {r.client_order_id for r in o.reports} == {"resting"}  # "signed" filled at once: its fill alone
        assert set(o.terminal()) == {"signed"}
        assert service.engine.order("resting").is_open  # type: ignore[union-attr]
        assert not service.engine.knows("unsigned") and not service.engine.knows("forged")
        assert _unsigned(intent_subject) - before[0] == 2
        assert _unsigned(Subject.ORDER_CANCEL.value) - before[1] == 2


async def test_the_restart_rebuild_restores_no_unsigned_intent_and_applies_no_unsigned_cancel(
    js: JetStreamContext,
) -> None:
    # a forged intent under the id of a real order, ahead of it in the stream, and a forged cancel of an
    # order the authority sends later
    await _publish_unsigned(js, Subject.ORDER_INTENT, _intent("real", limit="50"), "forged-real")
    await _publish_unsigned(js, Subject.ORDER_CANCEL, _cancel("later"), "forged-cancel-later")
    async with _simulator(js, KEY) as service:
        await publish_signed(js, Subject.ORDER_INTENT, _intent("real", limit="90"), msg_id="real", key=KEY)
        await wait_for(lambda: service.engine.knows("real"), 10, "the signed intent")

    engine = Engine(LiveClock(), EngineConfig())
    assert await rebuild(js, engine, MARKET_DURABLE, authority_key=KEY) == 1
    restored = engine.order("real")
    assert restored is not None and restored.is_open and restored.intent.limit_price == D(90)
    [accepted] = engine.submit(_intent("later", limit="50"))
    assert accepted.status == "accepted"  # not canceled_before_accepted by the forged cancel

    trusting = Engine(LiveClock(), EngineConfig())  # no key (in-process tests only): takes everything
    await rebuild(js, trusting, MARKET_DURABLE)
    assert trusting.order("real").intent.limit_price == D(50)  # type: ignore[union-attr]


async def test_the_execsim_process_loads_the_key_from_its_data_dir_and_obeys_only_it(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    execsim = Service(
        ["execsim"],
        nats_server.url,
        tmp_path / "execsim.log",
        env={"TRADING_MCP_DATA_DIR": str(data), authority_key.ENV: ""},
    )
    with services(execsim):
        await execsim.start()
        key = (data / authority_key.KEY_FILE).read_bytes().strip()
        assert (data / authority_key.KEY_FILE).stat().st_mode & 0o777 == 0o600
        await _publish_price(js, "100")
        await _publish_unsigned(js, Subject.ORDER_INTENT, _intent("unsigned"), "unsigned")
        await _publish_wrongly_signed(js, Subject.ORDER_INTENT, _intent("forged"), "forged")
        await publish_signed(js, Subject.ORDER_INTENT, _intent("signed"), msg_id="signed", key=key)

        async def answered() -> bool:
            return await stream_count(js, "EXECUTIONS", Subject.EXECUTION_FILL.value) >= 1

        await wait_for(answered, 20, "the signed intent's fill")

        async def all_acked() -> bool:
            return await _orders_acked(js) >= await stream_count(js, "DECISIONS")

        await wait_for(all_acked, 10, "every command acked")
        o = await outcomes(js)
        assert {f.client_order_id for f in o.fills} == {"signed"}
        assert not o.reports and set(o.terminal()) == {"signed"}  # filled at once: its fill alone
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{execsim.port}/metrics")).text
        found = re.search(r'^exec_sim_unsigned_commands_total\{subject="decisions.order_intent"\} (\S+)$', text, re.M)
        assert found is not None and float(found.group(1)) == 2.0
    log = execsim.log.read_text()
    assert "unsigned" in log and "forged" in log and "authority signature" in log
