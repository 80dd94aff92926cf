"""bus.jetstream.Acks against a real nats-server: every publish ends in its PubAck, the stream's refusal, "no
stream", or a timeout at its own deadline; and the frames it writes itself are the bytes nats-py would write."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from bus.jetstream import CORRELATION_ID, MSG_ID, SWEEP_S, Acks, acks_of, hpub_frame, publish_bytes, refusal
from bus.journal import EXPECTED_LAST_SEQ
from schemas.subjects import Subject


async def recorded_frames(nc: NATS, publish: Any) -> list[bytes]:
    """The commands a publish hands to the connection's write buffer (nothing reaches the server)."""
    sent: list[bytes] = []
    real = nc._send_command

    async def record(cmd: bytes, priority: bool = False) -> None:
        sent.append(bytes(cmd))

    nc._send_command = record  # type: ignore[method-assign]
    try:
        await publish()
    finally:
        nc._send_command = real  # type: ignore[method-assign]
    return sent


HEADERS = [
    {MSG_ID: "sig_0123456789abcdef01234567", CORRELATION_ID: "0f" * 16, "Gateway-Body-Sha256": "ab" * 32},
    {MSG_ID: "acct-1:fill-ord_9:1", "Trading-Account": "acct-1", "X-Authority-Signature": "v1=abc/+=="},
    {"Nats-Msg-Id": "ünïcödé ïd with spaces inside"},
    {},
]


@pytest.mark.parametrize("headers", HEADERS)
async def test_the_frame_written_directly_is_the_frame_nats_py_writes(js: JetStreamContext, headers: dict) -> None:
    nc = js._nc
    data = b'{"signal_id":"sig_1","price":"190.25"}'
    ours = hpub_frame("signals.normalized", "_INBOX.abc.17", headers, data)
    theirs = await recorded_frames(nc, lambda: nc.publish("signals.normalized", data, "_INBOX.abc.17", headers))
    assert ours is not None and [ours] == theirs


@pytest.mark.parametrize(
    ("subject", "headers"),
    [
        ("signals.normalized", {MSG_ID: "id\r\nPUB evil 4\r\nboom"}),  # a header injecting a command
        ("signals.normalized", {MSG_ID: " padded "}),
        ("signals.normalized", {MSG_ID: "tab\there"}),
        ("signals.normalized", {MSG_ID: ""}),
        ("signals.normalized", {"Bad Name": "x"}),
        ("signals.normalized", {" Nats-Msg-Id": "x"}),
        ("signals normalized", {MSG_ID: "x"}),
        ("", {MSG_ID: "x"}),
    ],
)
def test_a_header_or_subject_nats_py_would_clean_or_refuse_is_left_to_nats_py(subject: str, headers: dict) -> None:
    assert hpub_frame(subject, "_INBOX.abc.1", headers, b"{}") is None


async def test_a_header_with_a_line_break_is_published_cleaned_by_nats_py_not_injected(js: JetStreamContext) -> None:
    ack = await publish_bytes(
        js, Subject.SIGNALS_NORMALIZED, b"{}", msg_id="inj-1", correlation_id="c1", headers={"X-Note": "a\r\nb"}
    )
    stored = await js.get_msg("SIGNALS", ack.seq)
    assert stored.headers is not None and stored.headers["X-Note"] == "a  b"
    assert (await js.stream_info("SIGNALS")).state.messages == 1  # no second message smuggled in


async def test_publishes_in_flight_each_get_their_own_ack_in_order_and_a_resend_is_a_duplicate(
    js: JetStreamContext,
) -> None:
    acks = await asyncio.gather(
        *(
            publish_bytes(js, Subject.SIGNALS_NORMALIZED, b"{}", msg_id=f"m-{i}", correlation_id=f"c-{i}")
            for i in range(200)
        )
    )
    assert [a.seq for a in acks] == list(range(1, 201))
    assert {a.stream for a in acks} == {"SIGNALS"} and not any(a.duplicate for a in acks)
    again = await publish_bytes(js, Subject.SIGNALS_NORMALIZED, b"{}", msg_id="m-7", correlation_id="c")
    assert again.duplicate is True and again.seq == 8  # m-7 was the eighth
    assert not acks_of(js).futures  # every reply popped its waiter


async def test_a_refusal_completes_the_publish_with_the_streams_api_error(js: JetStreamContext) -> None:
    await publish_bytes(js, Subject.SIGNALS_NORMALIZED, b"{}", msg_id="first", correlation_id="c")
    started = time.monotonic()
    with pytest.raises(APIError) as refused:
        await publish_bytes(
            js,
            Subject.SIGNALS_NORMALIZED,
            b"{}",
            msg_id="second",
            correlation_id="c",
            headers={EXPECTED_LAST_SEQ: "5"},  # the stream's last is 1
            timeout=10,
        )
    assert refused.value.err_code == 10071  # wrong last sequence
    assert time.monotonic() - started < 5  # answered, not timed out
    assert (await js.stream_info("SIGNALS")).state.messages == 1


async def test_a_subject_no_stream_takes_fails_at_once_with_no_stream_response(js: JetStreamContext) -> None:
    started = time.monotonic()
    pending = await acks_of(js).send("nobody.listens.here", b"{}", {MSG_ID: "x"}, 10)
    with pytest.raises(NoStreamResponseError):
        await pending
    assert time.monotonic() - started < 5


async def test_each_publish_times_out_at_its_own_deadline_and_leaves_nothing_behind(js: JetStreamContext) -> None:
    nc = js._nc

    async def silent(_msg: object) -> None:  # takes the request, never answers
        return None

    await nc.subscribe("silent.subject", cb=silent)
    acks = acks_of(js)
    long = await acks.send("silent.subject", b"{}", {MSG_ID: "long"}, 3.0)
    started = time.monotonic()
    short = await acks.send("silent.subject", b"{}", {MSG_ID: "short"}, 0.3)  # sent later, due earlier
    with pytest.raises(nats.errors.TimeoutError):
        await short
    assert 0.25 < time.monotonic() - started < 2.0
    assert not long.done()
    with pytest.raises(nats.errors.TimeoutError):
        await long
    assert 2.5 < time.monotonic() - started < 6.0
    assert not acks.futures and not acks.deadlines and acks.timer is None


async def test_a_publish_while_the_connection_is_closed_fails_with_nats_pys_error(js: JetStreamContext) -> None:
    nc = js._nc
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await publish_bytes(js, Subject.SIGNALS_NORMALIZED, b"{}", msg_id="late", correlation_id="c")


def test_an_error_reply_of_any_shape_becomes_a_refusal() -> None:
    assert refusal({"code": 400, "err_code": 10071, "description": "wrong last sequence: 1"}).err_code == 10071
    assert isinstance(refusal({"code": 503, "description": "no leader"}), ServiceUnavailableError)
    odd = refusal({"code": 400, "unexpected": "member"})
    assert isinstance(odd, APIError) and "unexpected" in str(odd.description)
    assert "oops" in str(refusal("oops").description)


async def test_deadlines_close_together_are_swept_together(js: JetStreamContext, monkeypatch) -> None:
    nc = js._nc

    async def silent(_msg: object) -> None:
        return None

    await nc.subscribe("silent.sweep", cb=silent)
    acks = acks_of(js)
    sweeps = 0
    expire = Acks._expire

    def counted(self: Acks, loop: asyncio.AbstractEventLoop) -> None:
        nonlocal sweeps
        sweeps += 1
        expire(self, loop)

    monkeypatch.setattr(Acks, "_expire", counted)
    pending = []
    for i in range(40):  # deadlines spread over ~80 ms
        pending.append((time.monotonic() + 0.3, await acks.send("silent.sweep", b"{}", {MSG_ID: f"s{i}"}, 0.3)))
        await asyncio.sleep(0.002)
    for deadline, future in pending:
        with pytest.raises(nats.errors.TimeoutError):
            await future
        assert time.monotonic() - deadline < SWEEP_S + 0.5  # late by at most a sweep (and a busy machine)
    assert sweeps <= 3  # one timer for them all, not one firing per publish
    assert not acks.futures and not acks.deadlines
