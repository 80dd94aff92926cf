"""On a NATS JetStream cluster: NATS_URL as a seed list, replicas and placement of every stream and bucket we
create, and acknowledged messages surviving the SIGKILL of a stream leader mid-publish (three real
nats-server processes, tests/cluster.py)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from nats.errors import NoRespondersError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError

from authority import control
from bus import cluster as cluster_module
from bus.cluster import (
    InvalidClusterSetting,
    InvalidNatsUrl,
    cluster_settings,
    create_key_value,
    kv_config,
    parse_servers,
    replicas_and_placement,
    stream_config,
)
from bus.credentials import connect_with_credentials
from bus.embedded import EXTRA_STREAMS, KV_BUCKETS, provision
from bus.jetstream import MSG_ID, connect, ensure_streams, publish_bytes
from bus.journal import ensure_journal
from gateway import replay
from schemas.account import ACCOUNT_STREAM
from schemas.subjects import STREAMS, Subject
from tests.cluster import NatsCluster, nats_cluster  # noqa: F401  (the fixture)

CLUSTER_ENV = ["TRADING_MCP_NATS_REPLICAS", "TRADING_MCP_NATS_PLACEMENT_CLUSTER", "TRADING_MCP_NATS_PLACEMENT_TAGS"]
NATS_ENV = [f"NATS_{kind}{suffix}" for kind in ("CREDS", "USER", "PASSWORD", "TOKEN") for suffix in ("", "_ADMIN")]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The cluster is unlocked: no credentials from the environment; replicas only where a test sets them."""
    for name in [*CLUSTER_ENV, *NATS_ENV]:
        monkeypatch.delenv(name, raising=False)
    yield


# ----------------------------------------------------------------------------------- the seed list


def test_one_url_is_a_list_of_one() -> None:
    assert parse_servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]


def test_a_comma_separated_seed_list_is_split_and_trimmed() -> None:
    assert parse_servers("nats://a:4222, nats://b:4222 ,tls://c:4223") == [
        "nats://a:4222",
        "nats://b:4222",
        "tls://c:4223",
    ]
    assert parse_servers(["nats://a:4222", "b:4222", "c"]) == ["nats://a:4222", "b:4222", "c"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "NATS_URL is empty"),
        ("nats://a:4222,,nats://c:4222", "entry 2 of 3 is empty (a stray comma?)"),
        ("nats://a:4222,", "entry 2 of 2 is empty"),
        ("nats://a:4222,nats://b:42x2", "entry 2 of 2 ('nats://b:42x2') is not a NATS server URL: the port"),
        ("nats://a:4222,nats://b:99999", "the port is not a number from 1 to 65535"),
        ("http://a:4222", "unknown scheme 'http'"),
        ("nats://a:4222/path", "path, query or fragment"),
        ("nats://:4222", "no host"),
        ("nats://a:4222 nats://b:4222", "whitespace"),
        ("nats://a:4222,ws://b:8080", "mixes websocket"),
    ],
)
def test_a_bad_entry_in_the_seed_list_is_named_in_a_clear_error(url: str, says: str) -> None:
    with pytest.raises(InvalidNatsUrl, match=None) as caught:
        parse_servers(url)
    assert says in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_the_error_masks_a_password_in_the_url() -> None:
    with pytest.raises(InvalidNatsUrl) as caught:
        parse_servers("nats://a:4222,nats://svc:hunter2@b:42x2")
    assert "hunter2" not in str(caught.value) and "svc:***@b:42x2" in str(caught.value)


async def test_connect_refuses_a_bad_seed_list_before_touching_the_network() -> None:
    with pytest.raises(InvalidNatsUrl, match="entry 3 of 3"):
        await asyncio.wait_for(connect("nats://127.0.0.1:1,nats://127.0.0.1:2,nats://:x", "t"), 2)
    with pytest.raises(InvalidNatsUrl):
        await asyncio.wait_for(connect_with_credentials("nats://a:1,", role=None, data_dir=None), 2)


# ----------------------------------------------------------------------------------- replicas and placement


def test_one_replica_and_no_placement_by_default() -> None:
    assert replicas_and_placement({}) == (1, None)
    assert replicas_and_placement({"TRADING_MCP_NATS_REPLICAS": " "}) == (1, None)


def test_replicas_and_placement_from_the_environment() -> None:
    replicas, placement = replicas_and_placement(
        {
            "TRADING_MCP_NATS_REPLICAS": "3",
            "TRADING_MCP_NATS_PLACEMENT_CLUSTER": "east",
            "TRADING_MCP_NATS_PLACEMENT_TAGS": "ssd, az:1",
        }
    )
    assert replicas == 3
    assert placement == api.Placement(cluster="east", tags=["ssd", "az:1"])
    assert replicas_and_placement({"TRADING_MCP_NATS_PLACEMENT_TAGS": "ssd"})[1] == api.Placement(tags=["ssd"])


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TRADING_MCP_NATS_REPLICAS": "0"}, "out of range: JetStream keeps 1 to 5"),
        ({"TRADING_MCP_NATS_REPLICAS": "-1"}, "out of range"),
        ({"TRADING_MCP_NATS_REPLICAS": "6"}, "out of range"),
        ({"TRADING_MCP_NATS_REPLICAS": "three"}, "TRADING_MCP_NATS_REPLICAS='three' is not a whole number"),
        ({"TRADING_MCP_NATS_REPLICAS": "2.5"}, "is not a whole number"),
        ({"TRADING_MCP_NATS_PLACEMENT_TAGS": "ssd,,az:1"}, "empty tag (a stray comma?)"),
        ({"TRADING_MCP_NATS_PLACEMENT_CLUSTER": "east west"}, "no whitespace"),
    ],
)
def test_an_invalid_setting_is_a_clear_error(env: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidClusterSetting) as caught:
        cluster_settings(env)
    assert says in str(caught.value)


def test_the_settings_apply_to_stream_and_bucket_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_MCP_NATS_REPLICAS", "3")
    monkeypatch.setenv("TRADING_MCP_NATS_PLACEMENT_CLUSTER", "east")
    stream = stream_config(EXTRA_STREAMS[0])
    assert stream.num_replicas == 3 and stream.placement == api.Placement(cluster="east")
    assert stream.name == EXTRA_STREAMS[0].name and stream.subjects == EXTRA_STREAMS[0].subjects
    bucket = kv_config(KV_BUCKETS[0])
    assert bucket.replicas == 3 and bucket.placement == api.Placement(cluster="east")
    assert bucket.history == KV_BUCKETS[0].history
    assert EXTRA_STREAMS[0].num_replicas is None and KV_BUCKETS[0].replicas == 1  # the constants stay as they are


async def test_a_process_with_an_invalid_setting_stops_before_creating_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADING_MCP_NATS_REPLICAS", "-3")

    class NoJetStream:
        async def stream_info(self, name: str) -> None:
            from nats.js.errors import NotFoundError

            raise NotFoundError

        async def add_stream(self, *a: object, **k: object) -> None:
            raise AssertionError("created a stream despite the invalid setting")

    with pytest.raises(InvalidClusterSetting, match="-3"):
        await ensure_streams(NoJetStream())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- on a real cluster


async def _replication(js: JetStreamContext, stream: str) -> tuple[int | None, list[str], api.Placement | None]:
    info = await js.stream_info(stream)
    assert info.cluster is not None
    peers = [info.cluster.leader or "?", *(p.name or "?" for p in info.cluster.replicas or [])]
    return info.config.num_replicas, sorted(peers), info.config.placement


@pytest.mark.parametrize("placed", [False, True], ids=["replicas", "replicas+placement"])
async def test_every_stream_and_bucket_we_create_is_r3_on_the_cluster(
    nats_cluster: NatsCluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    placed: bool,
) -> None:
    monkeypatch.setenv("TRADING_MCP_NATS_REPLICAS", "3")
    if placed:  # the test cluster's name and its nodes' server tag
        monkeypatch.setenv("TRADING_MCP_NATS_PLACEMENT_CLUSTER", nats_cluster.name)
        monkeypatch.setenv("TRADING_MCP_NATS_PLACEMENT_TAGS", ",".join(nats_cluster.tags))
    nc = await connect(nats_cluster.seeds, "test")
    try:
        # a fresh cluster on a busy machine may take longer than the 5 s default to create an R3 stream (its raft
        # group elects a leader first): CI timed out here once
        js = nc.jetstream(timeout=30)
        await ensure_streams(js)
        await ensure_journal(js)
        await provision(nats_cluster.seeds, None)  # EXTRA_STREAMS and KV_BUCKETS (the streams exist by now)
        await replay.open_bucket(js, replay.SEEN_BUCKET, 600)
        await replay.open_bucket(js, replay.IDEMPOTENCY_BUCKET, 86400)
        await control.bucket(js)
        expected = [
            *(s.name for s in STREAMS),
            ACCOUNT_STREAM,
            *(f"KV_{b.bucket}" for b in KV_BUCKETS),
            f"KV_{replay.SEEN_BUCKET}",
            f"KV_{replay.IDEMPOTENCY_BUCKET}",
            f"KV_{control.BUCKET}",
        ]
        assert sorted(str(s.config.name) for s in await js.streams_info()) == sorted(set(expected))
        for stream in expected:
            replicas, peers, placement = await _replication(js, stream)
            assert replicas == 3, stream
            assert peers == nats_cluster.names(), f"{stream} lives on {peers}"
            if placed:
                assert placement == api.Placement(cluster=nats_cluster.name, tags=list(nats_cluster.tags)), stream
            else:
                assert placement is None, stream
    finally:
        await nc.close()


async def test_a_placement_no_server_matches_is_refused_by_the_cluster(
    nats_cluster: NatsCluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The placement really reaches the server, for buckets too (nats-py's create_key_value drops it)."""
    monkeypatch.setenv("TRADING_MCP_NATS_REPLICAS", "3")
    monkeypatch.setenv("TRADING_MCP_NATS_PLACEMENT_TAGS", "no-such-tag")
    nc = await connect(nats_cluster.urls, "test")
    try:
        js = nc.jetstream()
        with pytest.raises(APIError, match="(?i)no suitable peers"):
            await ensure_streams(js)
        with pytest.raises(APIError, match="(?i)no suitable peers"):
            await create_key_value(js, KV_BUCKETS[0])
        assert "add_stream" not in vars(js)  # the bucket's placement hook is gone again
    finally:
        await nc.close()


async def test_acknowledged_messages_survive_a_sigkill_of_the_stream_leader_mid_publish(
    nats_cluster: NatsCluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four publishers through our connect (the seed list) and publish_bytes, each retrying a failed publish
    with the same Nats-Msg-Id; the SIGNALS leader is killed -9 after the first acks. Every id ends acknowledged
    and stored exactly once, a new leader is elected, and the killed node rejoins with every message."""
    monkeypatch.setenv("TRADING_MCP_NATS_REPLICAS", "3")
    total, kill_after, lanes = 2000, 400, 4
    nc = await connect(nats_cluster.seeds, "publisher")
    probe = await connect(nats_cluster.seeds, "probe")
    try:
        js, probe_js = nc.jetstream(), probe.jetstream(timeout=0.5)
        await ensure_streams(js)
        old = await nats_cluster.wait_stream_leader(js, "SIGNALS")
        old_name = nats_cluster.names()[old]

        acked: dict[str, int] = {}  # msg id -> stream sequence
        duplicates = failures = 0
        next_id = 0
        killed_at: float | None = None
        first_ack_after_kill: float | None = None
        new_leader_at: float | None = None

        async def publisher() -> None:
            nonlocal next_id, duplicates, failures, first_ack_after_kill
            while next_id < total:
                msg_id = f"sig-{next_id:05d}"
                next_id += 1
                deadline = time.monotonic() + 30
                while True:
                    attempt_started = time.monotonic()
                    try:
                        ack = await publish_bytes(
                            js,
                            Subject.SIGNALS_NORMALIZED,
                            msg_id.encode(),
                            msg_id=msg_id,
                            correlation_id=msg_id,
                            timeout=1.0,
                        )
                    except Exception:
                        failures += 1
                        assert time.monotonic() < deadline, f"{msg_id} not acknowledged within 30 s"
                        await asyncio.sleep(0.05)
                        continue
                    break
                acked[msg_id] = ack.seq
                duplicates += bool(ack.duplicate)
                if killed_at is not None and attempt_started > killed_at and first_ack_after_kill is None:
                    first_ack_after_kill = time.monotonic()  # the first publish begun after the kill, acknowledged

        async def killer() -> None:
            nonlocal killed_at, new_leader_at
            while len(acked) < kill_after:
                await asyncio.sleep(0.005)
            nats_cluster.kill(old)  # publishes of every lane are in flight now
            killed_at = time.monotonic()
            while new_leader_at is None:
                try:
                    info = await probe_js.stream_info("SIGNALS")
                    if info.cluster and info.cluster.leader and info.cluster.leader != old_name:
                        new_leader_at = time.monotonic()
                except Exception:
                    pass
                await asyncio.sleep(0.02)

        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(killer(), *(publisher() for _ in range(lanes))), 120)
        elapsed = time.monotonic() - started
        assert killed_at is not None and new_leader_at is not None and first_ack_after_kill is not None

        # every acknowledged message is in the stream exactly once. The killed node may have led the JetStream
        # meta group too: stream info and consumer creation answer only once a new meta leader is elected.
        await asyncio.to_thread(nats_cluster.wait_meta_leader)
        assert len(acked) == total
        assert len(set(acked.values())) == total, "two ids acknowledged at one sequence"
        info = await js.stream_info("SIGNALS")
        assert info.state.messages == total and info.state.last_seq == total
        stored = await _message_ids(js, total)
        assert Counter(stored) == Counter({i: 1 for i in acked})
        assert all(stored[seq - 1] == msg_id for msg_id, seq in acked.items())

        # a retry of an acknowledged id is a no-op
        for msg_id in list(acked)[:: total // 10]:
            ack = await publish_bytes(js, Subject.SIGNALS_NORMALIZED, b"again", msg_id=msg_id, correlation_id=msg_id)
            assert ack.duplicate is True and ack.seq == acked[msg_id]
        assert (await js.stream_info("SIGNALS")).state.messages == total

        # a new leader, among the two left
        new = await nats_cluster.leader_of("SIGNALS")
        assert new != old
        print(
            f"\nleader {old_name} killed after {kill_after} acks: {len(acked)} acknowledged, {len(stored)} stored "
            f"(each once), {failures} failed attempts retried, {duplicates} retries answered duplicate; "
            f"new leader {nats_cluster.names()[new]} seen after {new_leader_at - killed_at:.2f} s, first ack of a "
            f"publish begun after the kill {first_ack_after_kill - killed_at:.2f} s; {elapsed:.1f} s for all"
        )

        # the killed node comes back, catches up and holds every message itself
        await asyncio.to_thread(nats_cluster.restart, old)
        await nats_cluster.wait_stream_leader(js, "SIGNALS")
        _, peers, _ = await _replication(js, "SIGNALS")
        assert peers == nats_cluster.names()
        assert nats_cluster.stream_messages_on(old, "SIGNALS") == total
    finally:
        await probe.close()
        await nc.close()


async def _message_ids(js: JetStreamContext, count: int) -> list[str]:
    """The Nats-Msg-Id of every message of SIGNALS, in stream order. Creating the reading consumer is retried
    for up to 30 s: right after a node kill the cluster may still be electing the leaders that answer it."""
    deadline = time.monotonic() + 30
    while True:
        try:
            sub = await js.pull_subscribe(
                Subject.SIGNALS_NORMALIZED.value,
                stream="SIGNALS",
                config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL),
            )
            break
        except (TimeoutError, NoRespondersError, APIError):  # nats' TimeoutError is the builtin's subclass
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    ids: list[str] = []
    try:
        while len(ids) < count:
            try:
                msgs = await sub.fetch(500, timeout=2)
            except TimeoutError:
                break
            ids += [(m.headers or {}).get(MSG_ID, "") for m in msgs]
    finally:
        await sub.unsubscribe()
    return ids


async def test_a_creation_is_tried_again_while_a_peer_is_offline_and_only_then(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded CI machine once saw a node miss its heartbeats while R3 buckets were created: the cluster answered
    "no suitable peers for placement, peer offline". That is tried again; any other refusal is not."""
    monkeypatch.setattr(cluster_module, "PEER_OFFLINE_RETRY_S", 5.0)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise APIError(code=400, err_code=10005, description="no suitable peers for placement, peer offline")
        return "created"

    assert await cluster_module.while_peers_offline(flaky) == "created"
    assert len(calls) == 3

    async def unmatched() -> str:
        calls.append(1)
        raise APIError(code=400, err_code=10005, description="no suitable peers for placement, tags not matched")

    calls.clear()
    with pytest.raises(APIError, match="tags not matched"):
        await cluster_module.while_peers_offline(unmatched)
    assert len(calls) == 1
