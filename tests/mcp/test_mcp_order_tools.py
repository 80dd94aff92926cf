"""The order tools on a real account: preview -> confirmation token -> place -> fill from the execution simulator,
with the risk gate on every order and every error path a tool error that changes nothing."""

from __future__ import annotations

from decimal import Decimal

from mcp import Client
from mcp.client import advertise

from bus.embedded import EmbeddedNats
from mcp_server.server import build_server
from mcp_server.tooling import ToolOptions
from schemas.orders import OrderIntent, RiskDenied
from schemas.subjects import Subject
from tests.conftest import stream_count, wait_for
from tests.mcp.helpers import (
    ACCOUNTS_TOOLS,
    APP_TOOLS,
    ORDER_TOOLS,
    READ_ONLY_TOOLS,
    STRATEGY_TOOLS,
    live_account,
    offline_state,
    operator_sets,
    publish_signal,
)
from tools.risk import RiskLimits, TradingState

ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "5"}
APPS = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
SHARED_ARGS = {
    "symbol",
    "side",
    "quantity",
    "order_type",
    "limit_price",
    "stop_price",
    "time_in_force",
    "client_order_id",
}


def _text(result) -> str:  # type: ignore[no-untyped-def]
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.content[0].text


async def _intents(state) -> int:  # type: ignore[no-untyped-def]
    return await stream_count(state.js, "DECISIONS", Subject.ORDER_INTENT.value)


async def _denials(state) -> int:  # type: ignore[no-untyped-def]
    return await stream_count(state.js, "DECISIONS", Subject.RISK_DENIED.value)


async def test_tools_list_shows_truthful_annotations_output_schemas_and_one_order_argument_set() -> None:
    server = build_server(offline_state(), toolsets_enabled=["all"])
    async with Client(server) as client, Client(server, extensions=[APPS]) as renders_apps:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        with_apps = {t.name: t for t in (await renders_apps.list_tools()).tools}
    assert tools.keys() == READ_ONLY_TOOLS | STRATEGY_TOOLS | ORDER_TOOLS | ACCOUNTS_TOOLS, (
        "app-only tools are not for models"
    )
    assert with_apps.keys() == tools.keys() | APP_TOOLS
    assert with_apps["confirm_order_ticket"].meta["ui"]["visibility"] == ["app"]
    assert tools["preview_order"].meta["ui"]["resourceUri"] == "ui://trading-mcp/order-ticket.html"
    place, cancel = tools["place_order"].annotations, tools["cancel_order"].annotations
    assert (place.read_only_hint, place.destructive_hint, place.idempotent_hint) == (False, True, False)
    assert (cancel.read_only_hint, cancel.destructive_hint, cancel.idempotent_hint) == (False, True, True)
    for name in ("preview_order", "list_orders", "get_order", "check_order"):
        assert tools[name].annotations.read_only_hint is True, name
    for name in ("check_order", "preview_order", "place_order"):
        props = tools[name].input_schema["properties"]
        assert props.keys() >= SHARED_ARGS, name
        assert tools[name].input_schema["required"] == ["symbol", "side", "quantity"]
        assert "stop_limit" in str(props["order_type"]) and "FOK" in str(props["time_in_force"])
    assert set(tools["place_order"].input_schema["properties"]) == SHARED_ARGS | {"confirmation_token"}
    for name in ORDER_TOOLS:
        assert tools[name].output_schema["type"] == "object" and len(tools[name].description) > 60


async def test_read_only_mode_registers_no_order_tool_at_all() -> None:
    async with Client(build_server(offline_state(), read_only=True)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        place = await client.call_tool("place_order", ORDER)
    assert names == READ_ONLY_TOOLS and not names & ORDER_TOOLS
    assert _text(place).startswith("unknown_tool: there is no tool 'place_order'")


async def test_preview_then_place_with_its_token_gets_a_fill_from_the_simulator(nats_server: EmbeddedNats) -> None:
    async with live_account(nats_server.url) as acct, Client(build_server(acct.state)) as client:
        await publish_signal(acct.state, 1, price="190.25")
        preview = await client.call_tool("preview_order", ORDER)
        body = preview.structured_content
        assert body["preview"]["approved"] is True and body["confirmation_required"] is True
        assert (body["preview"]["estimated_price"], body["preview"]["estimated_notional"]) == ("190.25", "951.25")
        token = body["confirmation_token"]
        assert token.startswith("ct2:") and f"confirmation_token={token}" in _text(preview)
        assert await _intents(acct.state) == 0, "a preview places nothing"

        placed = await client.call_tool("place_order", {**ORDER, "confirmation_token": token})
        assert not placed.is_error, _text(placed)
        coid = placed.structured_content["client_order_id"]
        assert placed.structured_content["submitted"] is True and "Placed (simulated)" in _text(placed)
        await wait_for(lambda: acct.state.portfolio.quantity("AAPL") == 5, 10, "the simulated fill")
        await wait_for(lambda: acct.state.orders.get(coid).status == "filled", 10, "the filled report")
        order = await client.call_tool("get_order", {"client_order_id": coid})
        listed = await client.call_tool("list_orders", {"status": "all"})
        still_open = await client.call_tool("list_orders", {})
        positions = await client.call_tool("get_positions", {})
        msg = await acct.state.js.get_last_msg("DECISIONS", Subject.ORDER_INTENT.value)
    assert order.structured_content["order"]["status"] == "filled"
    assert Decimal(order.structured_content["order"]["avg_fill_price"]) == Decimal("190.25")
    assert [o["client_order_id"] for o in listed.structured_content["orders"]] == [coid]
    assert still_open.structured_content["orders"] == [] and _text(still_open) == "No open orders."
    assert "AAPL long 5" in _text(positions)
    intent = OrderIntent.model_validate_json(msg.data)
    assert (intent.client_order_id, intent.origin, intent.quantity) == (coid, "mcp", Decimal(5))


async def test_retrying_place_with_the_same_token_or_client_order_id_never_places_twice(
    nats_server: EmbeddedNats,
) -> None:
    async with live_account(nats_server.url) as acct, Client(build_server(acct.state)) as client:
        await publish_signal(acct.state, 1, price="100")
        token = (await client.call_tool("preview_order", ORDER)).structured_content["confirmation_token"]
        first = await client.call_tool("place_order", {**ORDER, "confirmation_token": token})
        again = await client.call_tool("place_order", {**ORDER, "confirmation_token": token})
        named = {**ORDER, "client_order_id": "my-order-1"}
        named_token = (await client.call_tool("preview_order", named)).structured_content["confirmation_token"]
        once = await client.call_tool("place_order", {**named, "confirmation_token": named_token})
        twice = await client.call_tool("place_order", {**named, "confirmation_token": named_token})
        other = {**named, "quantity": "6"}
        other_token = (await client.call_tool("preview_order", other)).structured_content["confirmation_token"]
        reused = await client.call_tool("place_order", {**other, "confirmation_token": other_token})
        await wait_for(lambda: acct.state.portfolio.quantity("AAPL") == 10, 10, "two fills")
        assert await _intents(acct.state) == 2
    assert again.structured_content["duplicate"] is True and again.structured_content["submitted"] is False
    assert again.structured_content["client_order_id"] == first.structured_content["client_order_id"]
    assert "Already placed earlier" in _text(again)
    assert once.structured_content["client_order_id"] == "my-order-1" and twice.structured_content["duplicate"]
    assert _text(reused) == (
        "duplicate_client_order_id: client_order_id my-order-1 was already used for a different order; "
        "choose a new client_order_id"
    )


async def test_place_without_a_valid_matching_unexpired_token_is_refused_and_sends_nothing(
    nats_server: EmbeddedNats,
) -> None:
    async with live_account(nats_server.url) as acct, Client(build_server(acct.state)) as client:
        await publish_signal(acct.state, 1, price="100")
        token = (await client.call_tool("preview_order", ORDER)).structured_content["confirmation_token"]
        missing = await client.call_tool("place_order", ORDER)
        forged = await client.call_tool("place_order", {**ORDER, "confirmation_token": "ct2:9999999999:0-ACTIVE:1:ab"})
        tampered_expiry = token.split(":")
        tampered_expiry[1] = str(int(tampered_expiry[1]) + 3600)
        tampered = await client.call_tool("place_order", {**ORDER, "confirmation_token": ":".join(tampered_expiry)})
        bigger = await client.call_tool("place_order", {**ORDER, "quantity": "50", "confirmation_token": token})
        as_limit = await client.call_tool(
            "place_order", {**ORDER, "order_type": "limit", "limit_price": "99", "confirmation_token": token}
        )
        acct.clock.advance(61)  # tokens last 60 s by default
        expired = await client.call_tool("place_order", {**ORDER, "confirmation_token": token})
        assert await _intents(acct.state) == 0 and acct.state.orders == {}
    assert _text(missing).startswith("confirmation_required: placing an order needs the confirmation_token")
    assert _text(forged).startswith("confirmation_invalid: ")
    assert _text(tampered).startswith("confirmation_mismatch: ")
    assert _text(bigger).startswith("confirmation_mismatch: confirmation_token was issued for a different order")
    assert _text(as_limit).startswith("confirmation_mismatch: ")
    assert _text(expired).startswith("confirmation_expired: confirmation_token expired at ")
    assert "call preview_order again" in _text(expired)


async def test_a_risk_denial_is_a_tool_error_with_the_reason_code_published_on_risk_denied_and_no_intent(
    nats_server: EmbeddedNats,
) -> None:
    limits = RiskLimits(max_position=Decimal(10))
    async with live_account(nats_server.url, limits) as acct, Client(build_server(acct.state)) as client:
        await publish_signal(acct.state, 1, price="100")
        over = {**ORDER, "quantity": "11"}
        preview = await client.call_tool("preview_order", over)
        six_a, six_b = (
            {**ORDER, "quantity": "6", "client_order_id": "a"},
            {**ORDER, "quantity": "6", "client_order_id": "b"},
        )
        token_a = (await client.call_tool("preview_order", six_a)).structured_content["confirmation_token"]
        token_b = (await client.call_tool("preview_order", six_b)).structured_content["confirmation_token"]
        no_price = await client.call_tool("preview_order", {**ORDER, "symbol": "TSLA"})
        placed = await client.call_tool("place_order", {**six_a, "confirmation_token": token_a})
        denied = await client.call_tool("place_order", {**six_b, "confirmation_token": token_b})  # checked again
        await wait_for(lambda: _denials(acct.state), 10, "the denial on decisions.risk_denied")
        assert await _intents(acct.state) == 1
        msg = await acct.state.js.get_last_msg("DECISIONS", Subject.RISK_DENIED.value)
    body = preview.structured_content
    assert body["preview"]["approved"] is False and body["preview"]["reason_code"] == "max_position"
    assert body["confirmation_token"] is None and "would DENY (max_position:" in _text(preview)
    assert not placed.is_error and denied.is_error
    assert _text(denied).startswith("risk_denied: max_position: buy 6 AAPL could make the position 12")
    assert _text(no_price).startswith("no_price: no price is known for TSLA yet")
    record = RiskDenied.model_validate_json(msg.data)
    assert (record.reason_code, record.origin, record.symbol, record.quantity) == (
        "max_position",
        "mcp",
        "AAPL",
        Decimal(6),
    )


async def test_a_token_dies_when_the_trading_state_changes_or_the_market_moves_past_the_band(
    nats_server: EmbeddedNats,
) -> None:
    async with live_account(nats_server.url) as acct, Client(build_server(acct.state)) as client:
        await publish_signal(acct.state, 1, price="100")
        before_halt = (await client.call_tool("preview_order", ORDER)).structured_content["confirmation_token"]
        await operator_sets(acct, state=TradingState.REDUCING, reason="operator: wind down")
        stale = await client.call_tool("place_order", {**ORDER, "confirmation_token": before_halt})
        await operator_sets(acct, state=TradingState.ACTIVE, reason="operator: resume")
        inside_args, moved_args = {**ORDER, "client_order_id": "in"}, {**ORDER, "client_order_id": "out"}
        inside_token = (await client.call_tool("preview_order", inside_args)).structured_content["confirmation_token"]
        moved_token = (await client.call_tool("preview_order", moved_args)).structured_content["confirmation_token"]
        await publish_signal(acct.state, 2, price="100.40")  # 40 bps from the previews at 100: inside the band
        await wait_for(lambda: acct.state.account.last_price("AAPL") == Decimal("100.40"), 10, "the new price")
        inside = await client.call_tool("place_order", {**inside_args, "confirmation_token": inside_token})
        await publish_signal(acct.state, 3, price="101")  # 100 bps from the previews
        await wait_for(lambda: acct.state.account.last_price("AAPL") == Decimal("101"), 10, "the jump")
        moved = await client.call_tool("place_order", {**moved_args, "confirmation_token": moved_token})
        intents = await _intents(acct.state)
    assert _text(stale).startswith("confirmation_stale: the risk limits or the trading state changed")
    assert not inside.is_error, _text(inside)
    assert _text(moved).startswith("confirmation_price_moved: AAPL moved 100 bps since the preview")
    assert intents == 1, "only the order inside the band was placed"


async def test_with_confirmation_off_place_needs_no_token_but_still_passes_the_gate(nats_server: EmbeddedNats) -> None:
    limits = RiskLimits(max_position=Decimal(10))
    options = ToolOptions(confirmation="auto")  # what the agent loop gets when the operator allows it
    async with live_account(nats_server.url, limits) as acct, Client(build_server(acct.state, options=options)) as c:
        await publish_signal(acct.state, 1, price="100")
        placed = await c.call_tool("place_order", {**ORDER, "client_order_id": "direct-1"})
        over = await c.call_tool("place_order", {**ORDER, "quantity": "6", "client_order_id": "direct-2"})
        preview = await c.call_tool("preview_order", ORDER)
        await wait_for(lambda: acct.state.portfolio.quantity("AAPL") == 5, 10, "the fill")
        assert await _intents(acct.state) == 1 and await _denials(acct.state) == 1
    assert placed.structured_content["submitted"] is True
    assert _text(over).startswith("risk_denied: max_position: buy 6 AAPL could make the position 11")
    assert preview.structured_content["confirmation_required"] is False


async def test_cancel_an_open_order_and_the_error_paths_of_cancel_and_get(nats_server: EmbeddedNats) -> None:
    async with live_account(nats_server.url) as acct, Client(build_server(acct.state)) as client:
        await publish_signal(acct.state, 1, price="100", engine=acct.engine)
        resting = {**ORDER, "order_type": "limit", "limit_price": "50", "time_in_force": "gtc", "client_order_id": "l1"}
        token = (await client.call_tool("preview_order", resting)).structured_content["confirmation_token"]
        placed = await client.call_tool("place_order", {**resting, "confirmation_token": token})
        assert placed.structured_content["order"]["time_in_force"] == "GTC"
        await wait_for(lambda: acct.state.orders.get("l1").status != "submitted", 10, "the simulator to answer")
        assert acct.state.orders.get("l1").status == "accepted", (
            acct.state.orders.get("l1").status,
            acct.state.orders.get("l1").reason,
        )
        open_orders = await client.call_tool("list_orders", {"symbol": "AAPL"})
        canceled = await client.call_tool("cancel_order", {"client_order_id": "l1"})
        await wait_for(lambda: acct.state.orders.get("l1").status == "canceled", 10, "the cancel report")
        again = await client.call_tool("cancel_order", {"client_order_id": "l1"})
        unknown = await client.call_tool("cancel_order", {"client_order_id": "nope"})
        missing = await client.call_tool("get_order", {"client_order_id": "nope"})
        bad_id = await client.call_tool("get_order", {"client_order_id": "no spaces allowed"})
    assert [o["client_order_id"] for o in open_orders.structured_content["orders"]] == ["l1"]
    assert canceled.structured_content["cancel_requested"] is True and "Cancel requested for l1" in _text(canceled)
    assert _text(again) == "order_not_open: order l1 is already canceled; get_order shows its status"
    assert _text(unknown) == "unknown_order: no order nope; list_orders shows the orders and their ids"
    assert _text(missing) == _text(unknown)
    assert _text(bad_id).startswith("invalid_arguments: get_order: client_order_id: String should match pattern")


async def test_order_arguments_that_do_not_fit_together_are_invalid_arguments() -> None:
    async with Client(build_server(offline_state())) as client:
        no_limit = await client.call_tool("preview_order", {**ORDER, "order_type": "limit"})
        stray_stop = await client.call_tool("preview_order", {**ORDER, "stop_price": "10"})
        negative = await client.call_tool("place_order", {**ORDER, "quantity": "-1"})
        side = await client.call_tool("preview_order", {**ORDER, "side": "hold"})
        no_price = await client.call_tool("preview_order", ORDER)
    assert _text(no_limit) == "invalid_arguments: a limit order needs limit_price. Fix the order and call again."
    assert _text(stray_stop).startswith("invalid_arguments: a market order takes no stop_price")
    assert _text(negative).startswith("invalid_arguments: place_order: quantity: Input should be greater than 0")
    assert _text(side).startswith("invalid_arguments: preview_order: side: Input should be 'buy' or 'sell'")
    assert _text(no_price).startswith("authority_unavailable: this server has no connection to the bus")
