"""A person, not the model, says yes: place_order asks the client's user (elicitation) on both protocol paths,
the order ticket's Confirm places exactly the preview, a client with neither gets the token flow, and under the
`human` policy a model alone can place nothing. Every refusal places nothing; every order records who said yes."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from mcp import Client
from mcp.client import advertise
from mcp.types import ElicitRequestParams, ElicitResult

from bus.embedded import EmbeddedNats
from mcp_server.server import build_server
from mcp_server.tooling import ToolOptions
from schemas.orders import OrderIntent
from schemas.subjects import Subject
from tests.conftest import stream_count, wait_for
from tests.mcp.helpers import live_account, offline_state, publish_signal

ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "5"}
APPS = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
# legacy: initialize handshake, the question is a mid-call elicitation/create request;
# 2026-07-28: no session, the question comes back as an InputRequiredResult and the client retries with the answer
PROTOCOLS = ["legacy", "2026-07-28"]


class Person:
    """The user behind the client: answers the confirmation form the way the test says, and remembers it."""

    def __init__(self, action: str, confirm: bool = True, hold: asyncio.Event | None = None) -> None:
        self.action = action
        self.confirm = confirm
        self.hold = hold
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        if self.hold is not None:
            await self.hold.wait()
        if self.action == "accept":
            return ElicitResult(action="accept", content={"confirm": self.confirm})
        return ElicitResult(action=self.action)  # type: ignore[arg-type]


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


async def _intents(acct: Any) -> list[OrderIntent]:
    if not await stream_count(acct.state.js, "DECISIONS", Subject.ORDER_INTENT.value):
        return []
    msg = await acct.state.js.get_last_msg("DECISIONS", Subject.ORDER_INTENT.value)
    return [OrderIntent.model_validate_json(msg.data)]


@pytest.mark.parametrize("mode", PROTOCOLS)
async def test_an_accepted_confirmation_form_places_the_order_and_records_the_person(
    nats_server: EmbeddedNats, mode: str
) -> None:
    person = Person("accept")
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="190.25")
        async with Client(build_server(acct.state), mode=mode, elicitation_callback=person) as client:
            preview = await client.call_tool("preview_order", ORDER)
            placed = await client.call_tool("place_order", ORDER)  # no token: the person is asked
            assert not placed.is_error, _text(placed)
            coid = placed.structured_content["client_order_id"]
            order = await client.call_tool("get_order", {"client_order_id": coid})
            await wait_for(lambda: acct.state.portfolio.quantity("AAPL") == 5, 10, "the fill")
        intents = await _intents(acct)
    assert preview.structured_content["confirm_with"] == "elicitation"
    assert "the user is asked to confirm in a form" in _text(preview)
    assert len(person.asked) == 1
    question = person.asked[0]
    for fact in ("SIMULATED", "BUY 5 AAPL market DAY", "Estimated price 190.25", "notional 951.25", "would approve"):
        assert fact in question, (fact, question)
    assert "trading state ACTIVE" in question
    assert order.structured_content["order"]["confirmed_by"] == "elicitation"
    assert order.structured_content["order"]["principal"] == "local"
    assert "confirmed by elicitation (local)" in _text(order)
    assert [(i.client_order_id, i.confirmed_by, i.principal) for i in intents] == [(coid, "elicitation", "local")]


@pytest.mark.parametrize("mode", PROTOCOLS)
@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (Person("decline"), "confirmation_declined"),
        (Person("cancel"), "confirmation_cancelled"),
        (Person("accept", confirm=False), "confirmation_declined"),
    ],
    ids=["declined", "cancelled", "accepted-unticked"],
)
async def test_a_declined_cancelled_or_unticked_form_places_nothing(
    nats_server: EmbeddedNats, mode: str, answer: Person, code: str
) -> None:
    answer.asked.clear()
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")
        async with Client(build_server(acct.state), mode=mode, elicitation_callback=answer) as client:
            refused = await client.call_tool("place_order", {**ORDER, "client_order_id": "no-1"})
            # a token from a preview does not get around the person either
            token = (await client.call_tool("preview_order", ORDER)).structured_content["confirmation_token"]
            with_token = await client.call_tool("place_order", {**ORDER, "confirmation_token": token})
        intents = await _intents(acct)
    assert refused.is_error and _text(refused).startswith(f"{code}: "), _text(refused)
    assert "nothing was placed" in _text(refused)
    assert with_token.is_error and _text(with_token).startswith(f"{code}: ")
    assert len(answer.asked) == 2 and intents == [] and acct.state.orders == {}


async def test_no_answer_within_the_timeout_places_nothing_on_the_mid_call_path(nats_server: EmbeddedNats) -> None:
    never = asyncio.Event()
    person = Person("accept", hold=never)  # looks at the form and never answers
    options = ToolOptions(elicitation_timeout_seconds=0.5)
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")
        async with Client(
            build_server(acct.state, options=options), mode="legacy", elicitation_callback=person
        ) as client:
            timed_out = await asyncio.wait_for(client.call_tool("place_order", ORDER), 10)
            never.set()  # the late yes arrives after the server gave up: it changes nothing
        intents = await _intents(acct)
    assert _text(timed_out).startswith("confirmation_timeout: no answer from the user within 0.5 s")
    assert len(person.asked) == 1 and intents == [] and acct.state.orders == {}


async def test_a_yes_that_comes_too_late_by_the_account_clock_places_nothing(nats_server: EmbeddedNats) -> None:
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")

        async def slow(context: Any, params: ElicitRequestParams) -> ElicitResult:
            acct.clock.advance(121)  # the person took two minutes by the account's clock
            return ElicitResult(action="accept", content={"confirm": True})

        async with Client(build_server(acct.state), mode="legacy", elicitation_callback=slow) as client:
            late = await client.call_tool("place_order", ORDER)
        intents = await _intents(acct)
    assert _text(late).startswith("confirmation_timeout: the user answered after 121 s")
    assert intents == []


async def test_an_answer_after_the_sealed_state_expired_places_nothing_on_the_input_required_path(
    nats_server: EmbeddedNats,
) -> None:
    options = ToolOptions(elicitation_timeout_seconds=0.3)
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")

        async def slow(context: Any, params: ElicitRequestParams) -> ElicitResult:
            await asyncio.sleep(0.6)  # the person answers after the server's 0.3 s
            return ElicitResult(action="accept", content={"confirm": True})

        async with Client(
            build_server(acct.state, options=options), mode="2026-07-28", elicitation_callback=slow
        ) as client:
            try:
                late = await client.call_tool("place_order", ORDER)
                outcome = _text(late) if late.is_error else "placed"
            except Exception as exc:  # the SDK refuses an expired request_state as a protocol error
                outcome = str(exc)
        intents = await _intents(acct)
    assert outcome != "placed" and intents == [] and acct.state.orders == {}, outcome


async def test_the_person_is_not_asked_about_an_order_the_gate_would_deny(nats_server: EmbeddedNats) -> None:
    person = Person("accept")
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")
        async with Client(build_server(acct.state), mode="legacy", elicitation_callback=person) as client:
            over = await client.call_tool("place_order", {**ORDER, "quantity": "101"})  # max_position 100
    assert _text(over).startswith("risk_denied: max_position: ")
    assert "the user was not asked" in _text(over)
    assert person.asked == []


async def test_a_client_without_elicitation_or_apps_uses_the_token_and_the_order_says_so(
    nats_server: EmbeddedNats,
) -> None:
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")
        async with Client(build_server(acct.state)) as client:
            preview = await client.call_tool("preview_order", ORDER)
            body = preview.structured_content
            placed = await client.call_tool("place_order", {**ORDER, "confirmation_token": body["confirmation_token"]})
        intents = await _intents(acct)
    assert body["confirm_with"] == "token" and body["confirmation_token"].startswith("ct2:")
    assert not placed.is_error, _text(placed)
    assert placed.structured_content["order"]["confirmed_by"] == "token"
    assert [i.confirmed_by for i in intents] == ["token"]


async def test_under_the_human_policy_a_model_with_a_token_cannot_place_without_a_person(
    nats_server: EmbeddedNats,
) -> None:
    options = ToolOptions(confirmation="human")
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")
        async with Client(build_server(acct.state, options=options)) as model_only:
            preview = await model_only.call_tool("preview_order", ORDER)
            token = preview.structured_content["confirmation_token"]
            with_token = await model_only.call_tool("place_order", {**ORDER, "confirmation_token": token})
            # the ticket's tool is for a client that renders the ticket; a model-only client cannot use it
            ticket = await model_only.call_tool(
                "confirm_order_ticket", {**preview.structured_content["order"], "confirmation_token": token}
            )
            safety = await model_only.call_tool("get_safety_status", {})
        intents = await _intents(acct)
    assert preview.structured_content["confirm_with"] == "unavailable"
    assert _text(with_token).startswith("confirmation_unavailable: nothing was placed: policy human")
    assert _text(ticket).startswith("confirmation_unavailable: ")
    assert intents == [] and acct.state.orders == {}
    status = safety.structured_content
    assert status["confirmation"]["policy"] == "human" and status["confirmation"]["method"] == "unavailable"


async def test_the_order_ticket_confirms_exactly_the_previewed_order_for_an_apps_client(
    nats_server: EmbeddedNats,
) -> None:
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")
        async with Client(build_server(acct.state, options=ToolOptions(confirmation="human")), extensions=[APPS]) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            html = await c.read_resource("ui://trading-mcp/order-ticket.html")
            preview = await c.call_tool("preview_order", {**ORDER, "order_type": "limit", "limit_price": "99.5"})
            body = preview.structured_content
            by_model = await c.call_tool(
                "place_order", {**body["order"], "confirmation_token": body["confirmation_token"]}
            )
            token = body["confirmation_token"]
            changed = await c.call_tool(
                "confirm_order_ticket", {**body["order"], "quantity": "50", "confirmation_token": token}
            )
            confirm = await c.call_tool(
                "confirm_order_ticket", {**body["order"], "confirmation_token": body["confirmation_token"]}
            )
            pressed_twice = await c.call_tool(
                "confirm_order_ticket", {**body["order"], "confirmation_token": body["confirmation_token"]}
            )
        intents = await _intents(acct)
    assert tools["preview_order"].meta["ui"]["resourceUri"] == "ui://trading-mcp/order-ticket.html"
    assert tools["confirm_order_ticket"].meta["ui"]["visibility"] == ["app"]
    page = html.contents[0]
    assert page.mime_type == "text/html;profile=mcp-app" and "confirm_order_ticket" in page.text
    assert body["confirm_with"] == "order_ticket" and "order ticket" in _text(preview)
    assert _text(by_model).startswith("confirmation_in_ticket: ")
    assert _text(changed).startswith("confirmation_mismatch: ")
    assert not confirm.is_error, _text(confirm)
    assert pressed_twice.structured_content["duplicate"] is True
    assert len(intents) == 1
    placed = intents[0]
    assert (placed.order_type, placed.limit_price, placed.quantity) == ("limit", Decimal("99.5"), Decimal(5))
    assert placed.confirmed_by == "order_ticket"


async def test_safety_status_says_how_this_client_confirms_what_is_hidden_and_whether_the_authority_answers(
    nats_server: EmbeddedNats,
) -> None:
    async with (
        live_account(nats_server.url) as acct,
        Client(build_server(acct.state), mode="legacy", elicitation_callback=Person("accept")) as asks,
    ):
        live = (await asks.call_tool("get_safety_status", {})).structured_content
        resource = json.loads((await asks.read_resource("safety://status")).contents[0].text)
    async with Client(build_server(offline_state(), read_only=True)) as read_only:
        offline = await read_only.call_tool("get_safety_status", {})
    assert live["paper_only"] is True and live["authority_reachable"] is True
    assert live["confirmation"] == {
        "policy": "best",
        "method": "elicitation",
        "why": "this client can ask its user with a confirmation form (elicitation)",
    }
    assert live["limits"]["max_position"] == "100" and live["trading_state"] == "ACTIVE"
    assert {h["tool"] for h in live["hidden_tools"]} >= {"check_order", "run_backtest"}  # opt-in toolsets
    assert resource["confirmation"]["method"] == "depends on the client" and resource["authority_reachable"] is True
    body = offline.structured_content
    hidden = {h["tool"]: h["why"] for h in body["hidden_tools"]}
    assert hidden["place_order"].startswith("read-only mode") and hidden["preview_order"].startswith("read-only")
    assert body["authority_reachable"] is False
    assert "Paper trading only" in _text(offline) and "Order authority: no answer" in _text(offline)
