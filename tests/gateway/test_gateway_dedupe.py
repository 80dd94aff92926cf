"""Deduplication without a claim per webhook: JetStream drops a resent webhook-id (its Nats-Msg-Id), the
gateway reads the stored original to tell a resend from a conflict, and a crash at any point leaves
nothing lost or doubled once the sender resends."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.js import api

from bus.embedded import EmbeddedNats, free_port
from bus.jetstream import DUPLICATE_WINDOW_S
from gateway import replay
from gateway.ingest import BODY_HASH_HEADER, idempotency_claim_key, idempotency_signal_id, webhook_signal_id
from tests.conftest import Webhook, stream_count, wait_for
from tests.gateway.kit import SECRET, Gateway, running_gateway, settings_for, stored_signals
from tests.gateway.test_gateway_standard import SIGNAL, problem

ROOT = Path(__file__).resolve().parents[2]


def _signed(
    gw: Gateway, payload: dict[str, object], msg_id: str, key: str | None = None
) -> tuple[bytes, dict[str, str]]:
    body, headers = gw.webhook().signed(payload, msg_id=msg_id, ts=gw.now())
    if key is not None:
        headers["Idempotency-Key"] = key
    return body, headers


async def _post(gw: Gateway, http: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await http.post(gw.webhook().url, content=body, headers=headers)


async def _keys(js: nats.js.JetStreamContext, bucket: str) -> list[str]:
    kv = await js.key_value(bucket)
    try:
        return list(await kv.keys())
    except nats.js.errors.NoKeysError:
        return []


async def test_a_signed_webhook_is_deduplicated_by_jetstream_and_claims_no_key(gw: Gateway, http, js) -> None:
    first = await gw.send(http, SIGNAL, msg_id="msg_once")
    again = await gw.send(http, SIGNAL, msg_id="msg_once")
    assert again.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
    [(headers, _)] = await stored_signals(js)
    assert headers[BODY_HASH_HEADER] == hashlib.sha256(json.dumps(SIGNAL).encode()).hexdigest()
    assert await _keys(js, replay.SEEN_BUCKET) == []  # one NATS round trip: the publish


async def test_a_replay_with_its_idempotency_key_removed_or_changed_is_the_same_signal(gw: Gateway, http, js) -> None:
    """The Idempotency-Key header is not signed: whoever replays a captured request may drop or change it."""
    body, headers = _signed(gw, SIGNAL, "msg_keyed", key="order-7")
    first = await _post(gw, http, body, headers)
    assert first.status_code == 202 and first.json()["duplicate"] is False
    assert first.json()["signal_id"] == idempotency_signal_id("default", "order-7")
    stripped = {k: v for k, v in headers.items() if k != "Idempotency-Key"}
    for replayed in (stripped, {**headers, "Idempotency-Key": "order-8"}):
        response = await _post(gw, http, body, replayed)
        assert response.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
    [(stored_headers, signal)] = await stored_signals(js)
    assert signal["signal_id"] == first.json()["signal_id"]
    assert stored_headers["Nats-Msg-Id"] == webhook_signal_id("default", "msg_keyed")
    # the key the replay brought now names the same signal: a resend under it publishes nothing
    resend = await _post(gw, http, *_signed(gw, SIGNAL, "msg_keyed_2", key="order-8"))
    assert resend.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
    assert await stream_count(js, "SIGNALS") == 1


async def test_a_reused_webhook_id_with_another_body_is_409_with_or_without_an_idempotency_key(
    gw: Gateway, http, js
) -> None:
    assert (await gw.send(http, SIGNAL, msg_id="msg_reused")).status_code == 202
    other = {**SIGNAL, "quantity": 11}
    problem(await gw.send(http, other, msg_id="msg_reused"), 409, "webhook_id_conflict")
    problem(await _post(gw, http, *_signed(gw, other, "msg_reused", key="k-new")), 409, "webhook_id_conflict")
    assert await stream_count(js, "SIGNALS") == 1


async def test_an_idempotency_record_left_pending_by_a_crash_before_the_publish_stores_the_signal_once(
    gw: Gateway, http, js
) -> None:
    """The gateway died after claiming the key and before publishing: the resend (new webhook-id) stores it,
    under the message id of the first attempt, so a replay of that first request is a duplicate too."""
    body, headers = _signed(gw, SIGNAL, "msg_first_try", key="order-9")
    sid = idempotency_signal_id("default", "order-9")
    first_mid = webhook_signal_id("default", "msg_first_try")
    kv = await js.key_value(replay.IDEMPOTENCY_BUCKET)
    key = idempotency_claim_key("default", "order-9")
    assert await replay.claim(kv, key, replay.Record(hashlib.sha256(body).hexdigest(), sid, msg_id=first_mid)) is None

    resend = await _post(gw, http, *_signed(gw, SIGNAL, "msg_second_try", key="order-9"))
    assert resend.json() == {"signal_id": sid, "duplicate": False}
    first_replayed = await _post(gw, http, body, {k: v for k, v in headers.items() if k != "Idempotency-Key"})
    assert first_replayed.json() == {"signal_id": sid, "duplicate": True}
    [(stored_headers, _)] = await stored_signals(js)
    assert stored_headers["Nats-Msg-Id"] == first_mid
    assert replay.Record.decode((await kv.get(key)).value or b"").stored is True


async def test_an_idempotency_record_left_pending_by_a_crash_after_the_publish_publishes_nothing_more(
    gw: Gateway, http, js
) -> None:
    """The gateway died after the ack and before marking the key stored: the resend is a duplicate."""
    first = await _post(gw, http, *_signed(gw, SIGNAL, "msg_acked", key="order-10"))
    kv = await js.key_value(replay.IDEMPOTENCY_BUCKET)
    key = idempotency_claim_key("default", "order-10")
    record = replay.Record.decode((await kv.get(key)).value or b"")
    await kv.put(key, replay.Record(record.body_hash, record.signal_id, msg_id=record.msg_id).encode())  # pending

    resend = await _post(gw, http, *_signed(gw, SIGNAL, "msg_acked_resend", key="order-10"))
    assert resend.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
    assert await stream_count(js, "SIGNALS") == 1


def test_a_record_written_before_message_ids_were_kept_is_republished_under_its_signal_id() -> None:
    old = json.dumps({"h": "abc", "sid": "sig_1", "stored": False}).encode()
    assert replay.Record.decode(old).message_id == "sig_1"
    kept = replay.Record("abc", "sig_1", msg_id="sig_2")
    assert replay.Record.decode(kept.encode()) == kept and kept.message_id == "sig_2"


async def test_a_signals_stream_with_a_short_duplicate_window_falls_back_to_claiming_webhook_ids(
    nats_server: EmbeddedNats, http
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        short = api.StreamConfig(
            name="SIGNALS", subjects=["signals.>"], storage=api.StorageType.FILE, duplicate_window=60
        )
        await js.add_stream(short)
        assert 60 < 2 * settings_for(nats_server.url).tolerance_s <= DUPLICATE_WINDOW_S
        async with running_gateway(settings_for(nats_server.url)) as gw:
            first = await gw.send(http, SIGNAL, msg_id="msg_short_window")
            again = await gw.send(http, SIGNAL, msg_id="msg_short_window")
            assert again.json() == {"signal_id": first.json()["signal_id"], "duplicate": True}
            problem(
                await gw.send(http, {**SIGNAL, "price": "2"}, msg_id="msg_short_window"), 409, "webhook_id_conflict"
            )
        assert len(await _keys(js, replay.SEEN_BUCKET)) == 1
        assert await stream_count(js, "SIGNALS") == 1
    finally:
        await nc.close()


# ---------------------------------------------------------------------- kill -9 mid-flood

GATEWAY_PROCESS = (
    "import sys\n"
    "from gateway.service import main\n"
    "from gateway.settings import GatewaySettings\n"
    "main(GatewaySettings(nats_url=sys.argv[1], webhook_secret=sys.argv[2], port=int(sys.argv[3])))\n"
)


@pytest.fixture
def gateway_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def _gateway_process(started: list[subprocess.Popen[bytes]], nats_url: str, http: httpx.AsyncClient) -> str:
    port = free_port()
    started.append(
        subprocess.Popen(
            [sys.executable, "-c", GATEWAY_PROCESS, nats_url, SECRET, str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    base = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        try:
            return (await http.get(f"{base}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(ready, 20, "the gateway process to be ready")
    return base


async def test_a_gateway_killed_9_mid_flood_loses_and_doubles_nothing_once_senders_resend(
    nats_server: EmbeddedNats, js, http: httpx.AsyncClient, gateway_processes: list[subprocess.Popen[bytes]]
) -> None:
    n = 300
    base = await _gateway_process(gateway_processes, nats_server.url, http)
    requests = []
    sender = Webhook(f"{base}/webhook", SECRET)
    for i in range(n):
        body, headers = sender.signed({**SIGNAL, "quantity": i + 1}, msg_id=f"msg_flood_{i}")  # now, real clock
        if i % 3 == 0:  # every third also carries an Idempotency-Key (claimed in KV, marked stored after the ack)
            headers["Idempotency-Key"] = f"flood-{i}"
        requests.append((f"{base}/webhook", body, headers))

    answers: dict[int, dict[str, object]] = {}
    gate = asyncio.Semaphore(16)

    async def send(i: int, url: str) -> None:
        _, body, headers = requests[i]
        async with gate:
            try:
                response = await http.post(url, content=body, headers=headers)
            except httpx.TransportError:
                return  # the gateway died mid-request: no answer, the sender resends
        if response.status_code == 202:
            answers[i] = response.json()

    flood = [asyncio.create_task(send(i, f"{base}/webhook")) for i in range(n)]
    await wait_for(lambda: len(answers) >= 60, 30, "60 answers before the kill")
    os.kill(gateway_processes[0].pid, signal.SIGKILL)
    await asyncio.gather(*flood)
    assert 60 <= len(answers) < n

    before = dict(answers)
    base = await _gateway_process(gateway_processes, nats_server.url, http)
    answers.clear()
    await asyncio.gather(*(send(i, f"{base}/webhook") for i in range(n)))
    assert len(answers) == n, "every resend is answered 202"
    for i, first in before.items():
        assert answers[i] == {"signal_id": first["signal_id"], "duplicate": True}
    stored = await stored_signals(js)
    assert len(stored) == n
    assert len({s["signal_id"] for _, s in stored}) == n
    assert {s["signal_id"] for _, s in stored} == {str(a["signal_id"]) for a in answers.values()}
