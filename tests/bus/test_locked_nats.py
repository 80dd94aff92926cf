"""The locked bus, against a real nats-server started by `ensure_embedded` (credentials + permissions)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api

from bus.credentials import (
    AUTH_FILE,
    GATEWAY_BUCKETS,
    ROLES,
    CredentialsRefused,
    ensure_credentials,
    nats_auth,
    server_authorization,
)
from bus.embedded import KV_BUCKETS, STATE_FILE, EmbeddedNats, ensure_embedded, free_port, start_nats_server
from bus.jetstream import Follower, connect, consume, ensure_streams
from gateway import replay, signing
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.conftest import Webhook, serve_uvicorn, stream_count, wait_for

DENIED_TIMEOUT = 0.5  # a denied JetStream publish is dropped by the server: no ack, the publish times out
NATS_ENV = [f"NATS_{kind}{suffix}" for kind in ("CREDS", "USER", "PASSWORD", "TOKEN") for suffix in ("", "_GATEWAY")]


@pytest.fixture(autouse=True)
def _no_nats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NATS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedNats]:
    """The embedded server of a fresh data dir: started locked and provisioned by ensure_embedded (never on 4222)."""
    monkeypatch.setenv("TRADING_MCP_NATS_PORT", str(free_port()))
    server = ensure_embedded(tmp_path / "data")
    assert server.owned and server.port != 4222
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def as_role(server: EmbeddedNats, role: str) -> AsyncIterator[NATS]:
    nc = await connect(server.url, f"test-{role}", role=role, data_dir=server.data_dir)
    try:
        yield nc
    finally:
        await nc.close()


async def count(server: EmbeddedNats, stream: str, subject: str | None = None) -> int:
    async with as_role(server, "admin") as nc:
        return await stream_count(nc.jetstream(), stream, subject)


async def js_publish_allowed(server: EmbeddedNats, role: str, subject: str) -> bool:
    async with as_role(server, role) as nc:
        try:
            await nc.jetstream().publish(subject, b"{}", timeout=DENIED_TIMEOUT)
        except (TimeoutError, nats.errors.TimeoutError):
            return False
        return True


# ------------------------------------------------------------------ who may publish what

STREAM_OF = {"decisions": "DECISIONS", "executions": "EXECUTIONS", "signals": "SIGNALS", "account": "ACCOUNT"}

MATRIX = [
    # (a) only the authority publishes order intents and denials
    ("mcp", "decisions.order_intent", False),
    ("mcp", "decisions.risk_denied", False),
    ("operator", "decisions.order_intent", False),
    ("execsim", "decisions.order_intent", False),
    ("gateway", "decisions.order_intent", False),
    # (b)
    ("authority", "decisions.order_intent", True),
    ("authority", "decisions.risk_denied", True),
    ("authority", "decisions.order_cancel", True),
    ("authority", "account.paper.events", True),
    ("authority", "executions.fill", False),
    # (c) only execsim publishes executions
    ("execsim", "executions.fill", True),
    ("execsim", "executions.report", True),
    ("gateway", "executions.fill", False),
    ("mcp", "executions.fill", False),
    # the gateway publishes signals only
    ("gateway", "signals.normalized", True),
    ("mcp", "signals.normalized", False),
    ("authority", "signals.normalized", False),
    ("mcp", "decisions.agent", True),
    ("mcp", "account.paper.events", False),
]


@pytest.mark.parametrize(("role", "subject", "allowed"), MATRIX)
async def test_jetstream_publish_permissions(locked: EmbeddedNats, role: str, subject: str, allowed: bool) -> None:
    stream = STREAM_OF[subject.split(".")[0]]
    assert await js_publish_allowed(locked, role, subject) is allowed
    assert await count(locked, stream, subject) == (1 if allowed else 0)


# ------------------------------------------------------------------ (d) (e) credentials


async def test_a_client_without_credentials_is_refused_at_once(locked: EmbeddedNats) -> None:
    started = time.monotonic()
    with pytest.raises(CredentialsRefused, match="authorization violation"):
        await connect(locked.url, "anonymous")
    assert time.monotonic() - started < 5  # refused, not retried forever


async def test_a_wrong_password_is_refused(locked: EmbeddedNats, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_USER", "authority")
    monkeypatch.setenv("NATS_PASSWORD", "not-the-password")
    with pytest.raises(CredentialsRefused, match="'authority'"):
        await connect(locked.url, "intruder", role="authority", data_dir=locked.data_dir)


async def test_env_credentials_win_over_the_file(locked: EmbeddedNats, monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = json.loads((locked.data_dir / AUTH_FILE).read_text())
    monkeypatch.setenv("NATS_USER_GATEWAY", "execsim")  # a role-suffixed variable: this process's gateway
    monkeypatch.setenv("NATS_PASSWORD_GATEWAY", passwords["execsim"])
    async with as_role(locked, "gateway") as nc:
        await nc.jetstream().publish("executions.fill", b"{}", timeout=2)  # connected as execsim


def test_the_credentials_file_and_the_server_config_are_private(locked: EmbeddedNats) -> None:
    auth = locked.data_dir / AUTH_FILE
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert stat.S_IMODE((locked.data_dir / "nats" / "nats-server.conf").stat().st_mode) == 0o600
    passwords = json.loads(auth.read_text())
    assert sorted(passwords) == sorted(ROLES)
    assert len(set(passwords.values())) == len(ROLES)


def test_ensure_credentials_is_stable_and_adds_missing_roles(tmp_path: Path) -> None:
    first = ensure_credentials(tmp_path)
    assert ensure_credentials(tmp_path) == first
    (tmp_path / AUTH_FILE).write_text(json.dumps({"admin": first["admin"]}))
    (tmp_path / AUTH_FILE).chmod(0o644)
    again = ensure_credentials(tmp_path)
    assert again["admin"] == first["admin"] and sorted(again) == sorted(ROLES)
    assert stat.S_IMODE((tmp_path / AUTH_FILE).stat().st_mode) == 0o600


def test_nats_auth_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert nats_auth("mcp", None) == {}
    assert nats_auth("mcp", tmp_path) == {}
    passwords = ensure_credentials(tmp_path)
    assert nats_auth("mcp", tmp_path) == {"user": "mcp", "password": passwords["mcp"]}
    monkeypatch.setenv("NATS_TOKEN", "t")
    assert nats_auth("mcp", tmp_path) == {"token": "t"}
    monkeypatch.setenv("NATS_USER", "u")
    monkeypatch.setenv("NATS_PASSWORD", "p")
    assert nats_auth("mcp", tmp_path) == {"user": "u", "password": "p"}
    monkeypatch.setenv("NATS_CREDS", "/etc/nats/mcp.creds")
    assert nats_auth("mcp", tmp_path) == {"user_credentials": "/etc/nats/mcp.creds"}
    monkeypatch.setenv("NATS_CREDS_GATEWAY", "/etc/nats/gateway.creds")
    assert nats_auth("gateway", tmp_path) == {"user_credentials": "/etc/nats/gateway.creds"}
    assert nats_auth("mcp", tmp_path) == {"user_credentials": "/etc/nats/mcp.creds"}
    with pytest.raises(ValueError, match="unknown NATS role"):
        nats_auth("root", tmp_path)


def test_reuse_of_a_running_server_keeps_its_credentials(locked: EmbeddedNats) -> None:
    before = (locked.data_dir / AUTH_FILE).read_text()
    again = ensure_embedded(locked.data_dir)
    assert not again.owned and again.url == locked.url
    assert (locked.data_dir / AUTH_FILE).read_text() == before
    assert json.loads((locked.data_dir / STATE_FILE).read_text())["port"] == locked.port


async def test_role_none_and_roles_still_work_on_an_unlocked_server(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    ensure_credentials(tmp_path)  # an unlocked server ignores credentials it did not ask for
    for role in (None, "mcp"):
        nc = await connect(nats_server.url, "test", role=role, data_dir=tmp_path)
        js = nc.jetstream()
        await ensure_streams(js)
        await js.publish("decisions.order_intent", b"{}", timeout=2)
        await nc.close()


def test_the_gateway_bucket_names_match_the_gateway() -> None:
    assert (replay.SEEN_BUCKET, replay.IDEMPOTENCY_BUCKET) == GATEWAY_BUCKETS


def test_server_authorization_renders_every_role() -> None:
    text = server_authorization({r: f"pw-{r}" for r in ROLES})
    for role in ROLES:
        assert f'user: "{role}", password: "pw-{role}"' in text
    assert text.count("allow_responses: true") == 1  # the authority answers order requests


# ------------------------------------------------------------------ (f) consumers, KV, request/reply


async def test_provisioning_made_the_streams_and_buckets(locked: EmbeddedNats) -> None:
    async with as_role(locked, "mcp") as nc:
        js = nc.jetstream()
        await ensure_streams(js)  # only looks: the streams exist, and mcp may not create them
        for stream in ("SIGNALS", "DECISIONS", "EXECUTIONS", "ACCOUNT"):
            await js.stream_info(stream)
        for bucket in KV_BUCKETS:
            assert bucket.bucket is not None
            status = await (await js.key_value(bucket.bucket)).status()
            assert status.history == bucket.history


async def test_a_durable_pull_consumer_works_for_execsim(locked: EmbeddedNats) -> None:
    async with as_role(locked, "authority") as authority:
        for i in range(3):
            await authority.jetstream().publish("decisions.order_intent", f"{i}".encode(), timeout=2)
    seen: list[bytes] = []
    stop = asyncio.Event()

    async def handle(msg: Msg) -> None:
        seen.append(msg.data)  # consume acks after the handler ($JS.ACK.>)

    async with as_role(locked, "execsim") as nc:
        js = nc.jetstream()
        task = asyncio.create_task(
            consume(
                js,
                stream="DECISIONS",
                durable="execsim-test",
                subject="decisions.order_intent",
                handler=handle,
                stop=stop,
            )
        )
        await wait_for(lambda: len(seen) == 3, 10, "three intents")
        stop.set()
        await task
        info = await js.consumer_info("DECISIONS", "execsim-test")
        assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_ephemeral_and_ordered_consumers_work_for_mcp(locked: EmbeddedNats) -> None:
    async with as_role(locked, "execsim") as execsim:
        await execsim.jetstream().publish("executions.fill", b"1", timeout=2)
    async with as_role(locked, "mcp") as nc:
        js = nc.jetstream()
        applied: list[bytes] = []
        follower = Follower(js, stream="EXECUTIONS", subject="executions.>", handler=lambda m: applied.append(m.data))
        ordered: list[bytes] = []

        async def on_ordered(msg: Msg) -> None:
            ordered.append(msg.data)

        await follower.start()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 5)
            sub = await js.subscribe("executions.>", ordered_consumer=True, cb=on_ordered)
            async with as_role(locked, "execsim") as execsim:
                await execsim.jetstream().publish("executions.report", b"2", timeout=2)
            await wait_for(lambda: applied == [b"1", b"2"] and ordered == [b"1", b"2"], 5, "both consumers")
            await sub.unsubscribe()
        finally:
            await follower.stop()


async def test_kv_get_put_and_watch_for_the_roles_that_own_the_buckets(locked: EmbeddedNats) -> None:
    async with as_role(locked, "mcp") as reader, as_role(locked, "operator") as operator:
        watched = await (await reader.jetstream().key_value("RISK_CONTROL")).watch("limits")
        await (await operator.jetstream().key_value("RISK_CONTROL")).put("limits", b"v1")
        assert (await (await reader.jetstream().key_value("RISK_CONTROL")).get("limits")).value == b"v1"
        update = None
        while update is None or update.value is None:  # the watcher first sends an end-of-initial marker
            update = await watched.updates(timeout=5)
        assert update.value == b"v1"
        await watched.stop()
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):  # mcp may read the limits, not write them
            await (await reader.jetstream(timeout=DENIED_TIMEOUT).key_value("RISK_CONTROL")).put("limits", b"mine")
    async with as_role(locked, "authority") as authority:
        snapshots = await authority.jetstream().key_value("ACCOUNT_SNAPSHOT")
        await snapshots.put("paper", b"snap")
        assert (await snapshots.get("paper")).value == b"snap"
    async with as_role(locked, "execsim") as execsim:
        simulator = await execsim.jetstream().key_value("EXECSIM_SNAPSHOT")
        await simulator.put("paper", b"fold")
        assert (await simulator.get("paper")).value == b"fold"
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):  # the account's snapshot is the authority's
            await (await execsim.jetstream(timeout=DENIED_TIMEOUT).key_value("ACCOUNT_SNAPSHOT")).put("paper", b"x")
    async with as_role(locked, "mcp") as bridge:  # the strategy-mode bridge runs inside an MCP server
        strategies = await bridge.jetstream().key_value("STRATEGY_SNAPSHOT")
        await strategies.put("paper", b"state")
        assert (await strategies.get("paper")).value == b"state"
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):  # the simulator's is not the bridge's
            await (await bridge.jetstream(timeout=DENIED_TIMEOUT).key_value("EXECSIM_SNAPSHOT")).put("paper", b"x")


async def test_the_gateway_creates_and_uses_its_own_buckets_but_no_other_stream(locked: EmbeddedNats) -> None:
    async with as_role(locked, "gateway") as nc:
        js = nc.jetstream(timeout=DENIED_TIMEOUT * 2)
        seen = await replay.open_bucket(js, replay.SEEN_BUCKET, 600)
        idem = await replay.open_bucket(js, replay.IDEMPOTENCY_BUCKET, 3600)
        record = replay.Record("h", "sig-1")
        assert await replay.claim(seen, "k", record) is None
        assert await replay.claim(seen, "k", record) == record
        assert await replay.claim(idem, "k", record) is None
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.add_stream(api.StreamConfig(name="EVIL", subjects=["orders.>"]))
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.create_key_value(api.KeyValueConfig(bucket="other"))


async def test_request_reply_between_mcp_and_the_authority(locked: EmbeddedNats) -> None:
    async with as_role(locked, "authority") as authority, as_role(locked, "mcp") as mcp:

        async def answer(msg: Msg) -> None:
            await msg.respond(b"accepted:" + msg.data)

        await authority.subscribe("orders.request.*", queue="authority", cb=answer)
        await authority.flush()
        reply = await mcp.request("orders.request.paper", b"buy 1", timeout=2)
        assert reply.data == b"accepted:buy 1"


async def test_the_gateway_starts_and_publishes_under_the_lock(locked: EmbeddedNats) -> None:
    secret = signing.new_secret()
    settings = GatewaySettings(nats_url=locked.url, webhook_secret=secret, data_dir=locked.data_dir)
    async with serve_uvicorn(create_app(settings), free_port()) as base, httpx.AsyncClient() as http:
        hook = Webhook(f"{base}/webhook", secret)
        response = await hook.send(http, {"symbol": "AAPL", "price": "190.25", "action": "buy", "quantity": 10})
        assert response.status_code == 202, response.text
        assert (await http.get(f"{base}/readyz")).status_code == 200
    assert await count(locked, "SIGNALS") == 1


# ------------------------------------------------------------------ (g) only the admin changes streams


async def test_mcp_cannot_purge_delete_or_change_a_stream(locked: EmbeddedNats) -> None:
    async with as_role(locked, "authority") as authority:
        await authority.jetstream().publish("decisions.order_intent", b"{}", timeout=2)
    async with as_role(locked, "mcp") as nc:
        js = nc.jetstream(timeout=DENIED_TIMEOUT)
        attempts = [
            js.purge_stream("DECISIONS"),
            js.delete_stream("DECISIONS"),
            js.delete_msg("DECISIONS", 1),
            js.update_stream(api.StreamConfig(name="DECISIONS", subjects=["decisions.>"], max_msgs=0)),
            js.add_stream(api.StreamConfig(name="SHADOW", subjects=["orders.>"])),
        ]
        for attempt in attempts:
            with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
                await attempt
    assert await count(locked, "DECISIONS") == 1
    async with as_role(locked, "admin") as admin:  # the admin can (trading-mcp reset)
        await admin.jetstream().purge_stream("DECISIONS")
    assert await count(locked, "DECISIONS") == 0


def test_start_nats_server_without_authorization_stays_unlocked(tmp_path: Path) -> None:
    server = start_nats_server(tmp_path / "nats")
    try:
        assert "authorization" not in (tmp_path / "nats" / "nats-server.conf").read_text()
    finally:
        server.stop()
