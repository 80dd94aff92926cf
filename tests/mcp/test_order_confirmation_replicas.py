"""Two MCP server replicas on one data dir: a 2026-07-28 client asked to confirm by one replica can answer through
the other (the sealed request state and the tokens use the data dir's confirmation key), and a replica with
another key refuses the answer and places nothing. Real processes: execsim, the authority, three servers."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, InputRequiredResult

from bus.embedded import EmbeddedNats
from schemas.subjects import Subject
from tests.conftest import stream_count, wait_for
from tests.execsim.process_helpers import Service, outcomes, publish_all, services, signal

ORDER = {"symbol": "RPL", "side": "buy", "quantity": "3", "client_order_id": "replica-1"}
MODE = "2026-07-28"


async def never_asked(context: Any, params: ElicitRequestParams) -> ElicitResult:
    raise AssertionError("this test answers the question itself, through another replica")


def _client(port: int) -> Client:
    # the callback declares form elicitation; the test drives the InputRequiredResult rounds by hand
    return Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp"), mode=MODE, elicitation_callback=never_asked)


async def test_a_confirmation_asked_by_one_replica_is_answered_through_another_but_not_with_another_key(
    nats_server: EmbeddedNats, js, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    env = {"TRADING_MCP_MAX_SIGNAL_AGE_SECONDS": "3600"}
    execsim = Service(["execsim"], nats_server.url, tmp_path / "execsim.log")
    authority = Service(["authority", *data], nats_server.url, tmp_path / "authority.log", env=env)
    serve = ["serve", "--transport", "streamable-http", *data]
    first = Service(serve, nats_server.url, tmp_path / "a.log", env=env)
    second = Service(serve, nats_server.url, tmp_path / "b.log", env=env)
    stranger = Service(
        serve, nats_server.url, tmp_path / "c.log", env={**env, "TRADING_MCP_CONFIRMATION_KEY": secrets.token_hex(32)}
    )
    with services(first, second, stranger, authority, execsim):
        for s in (execsim, authority, first, second, stranger):
            await s.start()
        price = signal("RPL", "20")
        await publish_all(js, Subject.SIGNALS_NORMALIZED, [price], [price.signal_id])
        await wait_for(lambda: _priced(js), 15, "the authority's mark")

        async with _client(first.port) as a:
            asked = await a.session.call_tool("place_order", ORDER, allow_input_required=True)
        assert isinstance(asked, InputRequiredResult), asked
        ((key, question),) = asked.input_requests.items()
        assert "BUY 3 RPL market DAY" in question.params.message
        yes = {key: ElicitResult(action="accept", content={"confirm": True})}

        async with _client(stranger.port) as c:
            refused = await _answer(c, asked, yes)
        assert await stream_count(js, "DECISIONS", Subject.ORDER_INTENT.value) == 0, "another key places nothing"

        async with _client(second.port) as b:
            placed = await _answer(b, asked, yes)
        assert isinstance(placed, CallToolResult) and not placed.is_error, placed
        await wait_for(lambda: _intents(js), 15, "the intent")
        o = await outcomes(js)
    assert not isinstance(refused, CallToolResult) or refused.is_error, refused
    assert [(i.client_order_id, i.confirmed_by) for i in o.intents.values()] == [("replica-1", "elicitation")]


async def _answer(client: Client, asked: InputRequiredResult, answers: dict[str, ElicitResult]) -> Any:
    try:
        return await client.session.call_tool(
            "place_order",
            ORDER,
            input_responses=answers,
            request_state=asked.request_state,
            allow_input_required=True,
        )
    except Exception as exc:  # a replica that cannot unseal the state refuses the call as a protocol error
        return exc


async def _priced(js) -> bool:  # type: ignore[no-untyped-def]
    return await stream_count(js, "ACCOUNT") >= 2


async def _intents(js) -> bool:  # type: ignore[no-untyped-def]
    return await stream_count(js, "DECISIONS", Subject.ORDER_INTENT.value) >= 1
