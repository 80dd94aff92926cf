"""Fixtures: a real nats-server per test on a free port, a real uvicorn gateway, in-process services."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import uvicorn
from hypothesis import settings

from bus.account_view import AppState
from bus.embedded import EmbeddedNats, free_port, start_nats_server
from bus.jetstream import connect, consume, ensure_streams
from decisions.bridge import Bridge
from execsim.engine import Engine, EngineConfig
from execsim.service import DURABLE as EXECSIM_DURABLE
from execsim.service import ExecSimService
from gateway import signing
from gateway.app import create_app
from gateway.settings import GatewaySettings
from schemas.subjects import Subject
from tools.clock import LiveClock
from tools.risk import RiskLimits

SECRET = signing.new_secret()

# CI replays the same examples every run (no flaky discoveries in a gate); locally Hypothesis explores.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# --- The `slow` marker, given by rule (registered in pyproject.toml; `make test-fast` deselects it) ---------
# A test is slow when it starts a process: a nats-server per test (the `nats_server` fixture and every
# fixture built on it), `trading-mcp` services, the MCP Inspector, pip or promtool. It is found in the source
# of the test, of the fixtures it uses and of the helpers they call (functions and classes of tests/ and of
# bus.embedded, followed by name), so a test moved to another file keeps its mark. Tests that start nothing
# but run for seconds (measured with --durations) are named below.
STARTS_A_PROCESS = re.compile(
    r"\bsubprocess\.|create_subprocess_exec|\bPopen\(|start_nats_server\(|ensure_embedded\(|stdio_client\("
    r"|StdioServerParameters\(|\bINSPECTOR\b|\bmcp-inspector\b"
)
SLOW_WITHOUT_A_PROCESS = frozenset(
    {
        "test_every_third_party_import_of_the_product_comes_with_a_runtime_dependency",  # parses every module: ~6 s
    }
)
TESTS = Path(__file__).resolve().parent


def _is_test_helper(obj: object) -> bool:
    """A function or class defined under tests/ (test modules, helpers, conftest) or in bus.embedded."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return False
    if obj.__module__ == "bus.embedded":
        return True
    try:
        return TESTS in Path(inspect.getfile(obj)).resolve().parents
    except TypeError:
        return False


@functools.cache
def _starts_a_process(obj: Any, depth: int = 0) -> bool:
    """True when `obj`'s source, or that of a helper it names (followed 3 calls deep), starts a process."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return False
    if STARTS_A_PROCESS.search(source):
        return True
    if depth >= 3:
        return False
    namespace = vars(inspect.getmodule(obj) or object())
    for name in set(re.findall(r"\b([A-Za-z_]\w*)\b", source)):
        helper = namespace.get(name)
        if helper is not obj and _is_test_helper(helper) and _starts_a_process(helper, depth + 1):
            return True
    return False


def _is_slow(item: pytest.Function) -> bool:
    if item.originalname in SLOW_WITHOUT_A_PROCESS or _starts_a_process(item.function):
        return True
    for name in item.fixturenames:
        for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
            if _starts_a_process(fixturedef.func):
                return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and _is_slow(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = start_nats_server(tmp_path / "nats")
    yield server
    server.stop()


@pytest.fixture
async def js(nats_server: EmbeddedNats) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await connect(nats_server.url, "test")
    jsc = nc.jetstream()
    await ensure_streams(jsc)
    yield jsc
    await nc.close()


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = "") -> None:
    """Poll a condition with a bound (no bare sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def stream_count(jsc: nats.js.JetStreamContext, stream: str, subject: str | None = None) -> int:
    info = await jsc.stream_info(stream, subjects_filter=subject) if subject else await jsc.stream_info(stream)
    if subject:
        return int((info.state.subjects or {}).get(subject, 0))
    return int(info.state.messages)


@dataclass
class Webhook:
    url: str
    secret: str

    def signed(
        self,
        payload: dict[str, object] | bytes,
        *,
        msg_id: str | None = None,
        ts: int | None = None,
        secret: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        ts = int(time.time()) if ts is None else ts
        return body, {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signing.sign(secret or self.secret, msg_id, ts, body),
        }

    async def send(self, client: httpx.AsyncClient, payload: dict[str, object] | bytes, **kw: object) -> httpx.Response:
        body, headers = self.signed(payload, **kw)  # type: ignore[arg-type]
        return await client.post(self.url, content=body, headers=headers)


@contextlib.asynccontextmanager
async def serve_uvicorn(app: object, port: int) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started, 10, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def gateway(nats_server: EmbeddedNats) -> AsyncIterator[Webhook]:
    settings = GatewaySettings(nats_url=nats_server.url, webhook_secret=SECRET)
    async with serve_uvicorn(create_app(settings), free_port()) as base:
        yield Webhook(f"{base}/webhook", SECRET)


@dataclass
class Pipeline:
    state: AppState
    engine: Engine
    stop: asyncio.Event


@pytest.fixture
async def pipeline(nats_server: EmbeddedNats) -> AsyncIterator[Pipeline]:
    """execsim consumer + the account authority + the folded state + bridge, in this process, on the real
    nats-server."""
    from authority.service import Authority
    from bus.journal import ensure_journal

    nc = await connect(nats_server.url, "pipeline")
    jsc = nc.jetstream()
    await ensure_streams(jsc)
    await ensure_journal(jsc)
    engine = Engine(LiveClock(), EngineConfig(slippage_bps=Decimal(0)))
    service = ExecSimService(jsc, engine)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            consume(
                jsc,
                stream="DECISIONS",
                durable=EXECSIM_DURABLE,
                subject=Subject.ORDER_INTENT.value,
                handler=service.handle,
                stop=stop,
            )
        )
    ]
    authority = Authority(nc, jsc, key=b"pipeline", limits=RiskLimits(max_position=Decimal(100)))
    await authority.start()
    tasks += authority.tasks(stop)
    state = AppState(nc, jsc)
    await state.start()
    bridge = Bridge(state)
    tasks.append(asyncio.create_task(bridge.run(stop)))
    yield Pipeline(state, engine, stop)
    stop.set()
    await authority.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await state.stop()
    await nc.close()
