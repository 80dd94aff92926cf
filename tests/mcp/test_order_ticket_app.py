"""The order ticket's own script, run in Node against a minimal MCP Apps host: it shows what preview_order
returned, and Confirm asks the host to call confirm_order_ticket with exactly the previewed order — which the
server then places. Cancel and a denied preview post no call at all."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client import advertise

from bus.embedded import EmbeddedNats
from mcp_server.server import build_server
from mcp_server.tooling import ToolOptions
from mcp_server.toolsets.order_ticket import TICKET_HTML
from schemas.subjects import Subject
from tests.conftest import stream_count
from tests.mcp.helpers import live_account, publish_signal

HOST = Path(__file__).with_name("ticket_host.js")
APPS = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "4", "order_type": "limit", "limit_price": "99.5"}
NODE = shutil.which("node")


def run_ticket(tmp_path: Path, tool_result: dict[str, Any], press: str) -> dict[str, Any]:
    assert NODE is not None, "Node.js 20+ is a prerequisite of `make test` (README)"
    page, result = tmp_path / "ticket.html", tmp_path / "result.json"
    page.write_text(TICKET_HTML)
    result.write_text(json.dumps(tool_result))
    done = subprocess.run([NODE, str(HOST), str(page), str(result), press], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def as_host_sends(result: Any) -> dict[str, Any]:
    """A CallToolResult as a host forwards it to the app (the wire shape: structuredContent, content)."""
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[no-any-return]


async def test_confirm_in_the_ticket_places_exactly_the_previewed_order(nats_server: EmbeddedNats, tmp_path: Path):
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")
        server = build_server(acct.state, options=ToolOptions(confirmation="human"))
        async with Client(server, extensions=[APPS]) as client:
            preview = await client.call_tool("preview_order", ORDER)
            app = run_ticket(tmp_path, as_host_sends(preview), "confirm")
            (call,) = [m for m in app["posted"] if m["method"] == "tools/call"]
            placed = await client.call_tool(call["params"]["name"], call["params"]["arguments"])
        order = acct.state.orders[placed.structured_content["client_order_id"]]
        intents = await stream_count(acct.state.js, "DECISIONS", Subject.ORDER_INTENT.value)
    assert app["confirmEnabled"] is True
    for fact in ("buy 4 AAPL", "limit 99.5", "would approve", "ACTIVE", "Valid until"):
        assert fact in app["shown"], (fact, app["shown"])
    assert "limit limit" not in app["shown"]
    assert call["params"]["name"] == "confirm_order_ticket"
    sent = call["params"]["arguments"]
    assert {k: sent[k] for k in ORDER} == ORDER and sent["confirmation_token"].startswith("ct2:")
    assert not placed.is_error, placed
    assert (order.confirmed_by, order.quantity, order.limit_price) == ("order_ticket", 4, 99.5)
    assert intents == 1 and app["status"] == "Placed (simulated)"


@pytest.mark.parametrize("case", ["cancel", "denied"])
async def test_cancel_or_a_denied_preview_posts_no_call(nats_server: EmbeddedNats, tmp_path: Path, case: str):
    async with live_account(nats_server.url) as acct:
        await publish_signal(acct.state, 1, price="100")
        async with Client(build_server(acct.state), extensions=[APPS]) as client:
            order = ORDER if case == "cancel" else {**ORDER, "quantity": "1000"}  # max_position is 100
            preview = await client.call_tool("preview_order", order)
            app = run_ticket(tmp_path, as_host_sends(preview), "cancel" if case == "cancel" else "confirm")
        intents = await stream_count(acct.state.js, "DECISIONS", Subject.ORDER_INTENT.value)
    assert not [m for m in app["posted"] if m["method"] == "tools/call"] and intents == 0
    if case == "cancel":
        assert app["confirmEnabled"] is True and app["status"] == "Cancelled: nothing was placed."
    else:
        assert app["confirmEnabled"] is False and "would DENY (max_position)" in app["shown"]
