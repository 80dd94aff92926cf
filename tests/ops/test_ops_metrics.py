"""The operator metrics added for issue 7 move with real traffic and are read back from /metrics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from starlette.applications import Starlette

from bus.embedded import EmbeddedNats, free_port
from bus.jetstream import connect, publish
from observability.consumer_lag import stop_watching, watch_consumer_lag
from observability.http import ops_routes
from schemas.subjects import Subject
from tests.conftest import Pipeline, Webhook, serve_uvicorn, stream_count, wait_for


async def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{base}/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Probe(BaseModel):
    probe: int = 1


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def metrics_url() -> AsyncIterator[str]:
    """/metrics of this process (the registry every in-process service writes to)."""

    async def ready() -> dict[str, bool]:
        return {}

    async with serve_uvicorn(Starlette(routes=ops_routes(ready)), free_port()) as base:
        yield base


async def test_a_signal_through_the_pipeline_shows_publish_latency_per_subject_and_the_webhook_outcome(
    gateway: Webhook, pipeline: Pipeline, metrics_url: str
) -> None:
    before = await scrape(metrics_url)
    async with httpx.AsyncClient() as client:
        accepted = await gateway.send(client, {"symbol": "MTRX", "price": "10", "action": "buy", "quantity": 2})
        refused = await gateway.send(client, {"symbol": "MTRX", "price": "10"}, secret="whsec_" + "A" * 32)
    assert accepted.status_code == 202 and refused.status_code == 401
    await wait_for(lambda: stream_count(pipeline.state.js, "EXECUTIONS", "executions.fill"), 10, "the fill")
    after = await scrape(metrics_url)
    count = "jetstream_publish_duration_seconds_count"
    for subject in ("signals.normalized", "decisions.order_intent", "executions.fill"):
        assert value(after, count, subject=subject) == value(before, count, subject=subject) + 1, subject
    received = "gateway_webhooks_received_total"
    for outcome in ("accepted", "invalid_signature"):
        assert value(after, received, source="default", outcome=outcome) == (
            value(before, received, source="default", outcome=outcome) + 1
        )


async def test_a_publish_that_jetstream_refuses_counts_as_a_publish_error_for_its_subject(
    nats_server: EmbeddedNats, metrics_url: str
) -> None:
    nc = await connect(nats_server.url, "no-streams")  # no ensure_streams: nothing stores executions.*
    try:
        before = await scrape(metrics_url)
        with pytest.raises(nats.errors.Error):
            await publish(
                nc.jetstream(),
                Subject.EXECUTION_REPORT,
                Probe(),
                msg_id=uuid.uuid4().hex,
                correlation_id="c",
                timeout=0.5,
            )
        after = await scrape(metrics_url)
    finally:
        await nc.close()
    errors = "jetstream_publish_errors_total"
    assert value(after, errors, subject="executions.report") == value(before, errors, subject="executions.report") + 1


async def test_consumer_lag_rises_with_unread_messages_and_falls_to_zero_once_they_are_acked(
    js: nats.js.JetStreamContext, metrics_url: str
) -> None:
    durable = f"lag{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(
        Subject.ORDER_INTENT.value,
        durable=durable,
        stream="DECISIONS",
        config=nats.js.api.ConsumerConfig(ack_policy=nats.js.api.AckPolicy.EXPLICIT),
    )
    for i in range(3):
        await js.publish(Subject.ORDER_INTENT.value, b"{}", headers={"Nats-Msg-Id": f"{durable}-{i}"})
    watcher = watch_consumer_lag(js, [("DECISIONS", durable), ("DECISIONS", "not-created-yet")], interval=0.05)
    try:

        async def pending(expected: float) -> bool:
            samples = await scrape(metrics_url)
            return (
                value(samples, "jetstream_consumer_pending_messages", stream="DECISIONS", durable=durable) == expected
            )

        await wait_for(lambda: pending(3), 10, "3 pending")
        msgs = await sub.fetch(3, timeout=2)
        await wait_for(lambda: _ack_pending(metrics_url, durable, 3), 10, "3 delivered and unacked")
        for msg in msgs:
            await msg.ack_sync()
        await wait_for(lambda: pending(0), 10, "0 pending")
        await wait_for(lambda: _ack_pending(metrics_url, durable, 0), 10, "0 unacked")
        samples = await scrape(metrics_url)
        missing = (
            "jetstream_consumer_pending_messages",
            frozenset({("stream", "DECISIONS"), ("durable", "not-created-yet")}),
        )
        assert missing not in samples, "a consumer that does not exist must not be reported"
    finally:
        await stop_watching(watcher)
        await sub.unsubscribe()
    assert watcher.cancelled()


async def _ack_pending(base: str, durable: str, expected: float) -> bool:
    samples = await scrape(base)
    return value(samples, "jetstream_consumer_ack_pending_messages", stream="DECISIONS", durable=durable) == expected
