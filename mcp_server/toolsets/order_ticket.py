"""The order ticket: an MCP App that shows preview_order's order to a person, whose Confirm places exactly it.

Clients that render MCP Apps (Claude Desktop among them) show `ui://trading-mcp/order-ticket.html` next to
preview_order's result: the order as it will be sent, the estimate, the risk verdict, the trading state, and
two buttons. Confirm calls `confirm_order_ticket` — a tool only the app can see (visibility `app`; hosts keep it
from the model) — with the previewed arguments and the preview's token, so it places exactly what was shown,
within the token's life and price band. Cancel places nothing. Clients without Apps get preview_order's text.
"""

from __future__ import annotations

from mcp.server.apps import Apps, client_supports_apps
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from mcp_server.tooling import PLACES_ORDER, ToolFailure, app, options_of
from mcp_server.toolsets.confirmation import TICKET_URI, risk_version
from mcp_server.toolsets.order_args import (
    ClientOrderIdArg,
    LimitPriceArg,
    OrderTypeArg,
    QuantityArg,
    SideArg,
    StopPriceArg,
    SymbolArg,
    TimeInForceArg,
    order_request,
)
from mcp_server.toolsets.orders import confirmations, place_confirmed

TICKET_TOOL = "confirm_order_ticket"

TICKET_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Order ticket</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:12px;color:#111;background:#fff}
 h1{font-size:15px;margin:0 0 8px} table{border-collapse:collapse;width:100%;margin-bottom:10px}
 td{padding:3px 6px;border-bottom:1px solid #eee} td:first-child{color:#555;width:40%}
 .deny{color:#b00020;font-weight:600} .ok{color:#0a7d32;font-weight:600}
 button{font:inherit;padding:6px 14px;margin-right:8px;border-radius:6px;border:1px solid #888;cursor:pointer}
 #confirm{background:#0a7d32;color:#fff;border-color:#0a7d32} button:disabled{opacity:.45;cursor:default}
 #status{margin-top:10px;white-space:pre-wrap}
</style></head>
<body>
<h1>Simulated order — paper account, no real money</h1>
<table id="facts"><tr><td>Waiting for the preview…</td><td></td></tr></table>
<button id="confirm" disabled>Confirm</button><button id="cancel" disabled>Cancel</button>
<div id="status"></div>
<script>
"use strict";
const TOOL = "confirm_order_ticket";
let nextId = 1, ticket = null;
const pending = new Map();
const $ = (id) => document.getElementById(id);

function send(message) { window.parent.postMessage({ jsonrpc: "2.0", ...message }, "*"); }
function request(method, params) {
  const id = nextId++;
  send({ id, method, params });
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
function row(label, value, cls) {
  const tr = document.createElement("tr");
  const a = document.createElement("td"), b = document.createElement("td");
  a.textContent = label; b.textContent = value == null ? "—" : String(value);
  if (cls) b.className = cls;
  tr.append(a, b); return tr;
}
function terms(o) {  // the type with its prices, each written once: "limit 150", "stop 145 limit 150"
  if (o.order_type === "limit") return "limit " + o.limit_price;
  if (o.order_type === "stop") return "stop " + o.stop_price;
  if (o.order_type === "stop_limit") return "stop " + o.stop_price + " limit " + o.limit_price;
  return o.order_type;
}
function show(result) {
  const data = result && (result.structuredContent || result.structured_content);
  if (!data || !data.preview || !data.order) return;
  const p = data.preview, o = data.order, t = $("facts");
  t.replaceChildren(
    row("Order", [o.side, o.quantity, o.symbol].join(" ")),
    row("Type", terms(o)),
    row("Time in force", o.time_in_force),
    row("Estimated price", p.estimated_price),
    row("Estimated notional", p.estimated_notional),
    row("Estimated fee", p.estimated_fee),
    row("Risk verdict", p.approved ? "would approve" : "would DENY (" + p.reason_code + ")",
      p.approved ? "ok" : "deny"),
    row("Trading state", p.trading_state),
    row("Valid until", data.token_expires_at),
  );
  ticket = p.approved && data.confirmation_token ? { ...o, confirmation_token: data.confirmation_token } : null;
  $("confirm").disabled = !ticket; $("cancel").disabled = !ticket;
  $("status").textContent = ticket ? "" : "The risk gate would deny this order: nothing to confirm.";
}
function done(text) { $("confirm").disabled = true; $("cancel").disabled = true; $("status").textContent = text; }

window.addEventListener("message", (event) => {
  const m = event.data;
  if (!m || m.jsonrpc !== "2.0") return;
  if (m.id != null && pending.has(m.id)) {
    const { resolve, reject } = pending.get(m.id); pending.delete(m.id);
    if (m.error) reject(new Error(m.error.message || "error")); else resolve(m.result);
  } else if (m.method === "ui/notifications/tool-result") {
    show(m.params);
  }
});
$("confirm").addEventListener("click", async () => {
  if (!ticket) return;
  const args = Object.fromEntries(Object.entries(ticket).filter(([, v]) => v !== null && v !== undefined));
  done("Placing…");
  try {
    const result = await request("tools/call", { name: TOOL, arguments: args });
    const text = (result.content || []).map((c) => c.text || "").join("\\n");
    done((result.isError ? "Not placed: " : "") + text);
  } catch (error) { done("Not placed: " + error.message); }
});
$("cancel").addEventListener("click", () => done("Cancelled: nothing was placed."));
request("ui/initialize", { appInfo: { name: "trading-mcp order ticket", version: "1" }, appCapabilities: {} })
  .then(() => send({ method: "ui/notifications/initialized", params: {} }))
  .catch(() => {});
</script>
</body></html>
"""


async def confirm_order_ticket(
    ctx: Context,
    symbol: SymbolArg,
    side: SideArg,
    quantity: QuantityArg,
    confirmation_token: str,
    order_type: OrderTypeArg = "market",
    limit_price: LimitPriceArg = None,
    stop_price: StopPriceArg = None,
    time_in_force: TimeInForceArg = "DAY",
    client_order_id: ClientOrderIdArg = None,
) -> CallToolResult:
    """The order ticket's Confirm button: places exactly the previewed order (only the app sees this tool)."""
    if options_of(ctx.mcp_server).confirmation == "human" and not client_supports_apps(ctx):
        raise ToolFailure(
            "confirmation_unavailable", "the order ticket confirms orders only in a client that renders MCP Apps"
        )
    request = order_request(
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit_price,
        stop_price=stop_price,
        time_in_force=time_in_force,
        client_order_id=client_order_id,
    )
    state = app(ctx)
    signature = confirmations(ctx).verify(
        request, confirmation_token, risk_version(state.account), state.account.last_price(request.symbol)
    )
    if request.client_order_id is None:  # one ticket, one order: pressing Confirm twice is the same order
        request = request.model_copy(
            update={"client_order_id": f"{options_of(ctx.mcp_server).origin}-{signature[:24]}"}
        )
    return await place_confirmed(ctx, request, "order_ticket")


def ticket_apps() -> Apps:
    """The Apps extension with the ticket's HTML and its app-only Confirm tool."""
    apps = Apps()
    apps.add_html_resource(
        TICKET_URI,
        TICKET_HTML,
        name="order-ticket",
        title="Order ticket",
        description="Shows a previewed order and places it when the person presses Confirm",
    )
    apps.tool(
        resource_uri=TICKET_URI,
        visibility=["app"],
        name=TICKET_TOOL,
        title="Confirm the order ticket",
        description=(confirm_order_ticket.__doc__ or "").strip(),
        annotations=PLACES_ORDER,
    )(confirm_order_ticket)
    return apps
