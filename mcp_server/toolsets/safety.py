"""get_safety_status (a tool, and the `safety://status` resource): what protects this account from this client.

Always registered, whatever the toolsets or read-only mode: the confirmation policy in force for the calling
client and why, which tools are hidden from it and why (read-only mode, toolsets not chosen, OAuth scope),
the limits in force, that the account is paper only, and whether the order authority answers right now.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from bus.account_view import AppState, AuthorityUnavailable
from mcp_server import toolsets
from mcp_server.auth import SCOPE_TRADE, TRADE_TOOLS, principal_of, scopes_of
from mcp_server.tooling import READ_ONLY, add_tools, app, options_of, reply
from mcp_server.toolsets.orders import choice_for
from schemas.account import OrderCommand
from tools.risk import RiskLimits

PROBE_TIMEOUT_S = 2.0


class Confirmation(BaseModel):
    policy: str = Field(description="The server's setting: best, human, token or auto")
    method: str = Field(description="What place_order does for this client: elicitation, order_ticket, token, ...")
    why: str


class HiddenTool(BaseModel):
    tool: str
    why: str


class SafetyStatus(BaseModel):
    paper_only: bool = Field(description="Always true: orders go to a simulator, no real money moves")
    principal: str
    confirmation: Confirmation
    hidden_tools: list[HiddenTool]
    trading_state: str
    limits: RiskLimits
    authority_reachable: bool
    authority: str


Hidden = Callable[[], list[HiddenTool]]


def hidden_by_configuration(chosen: list[toolsets.Toolset], read_only: bool, state: AppState) -> Hidden:
    """The tools this server's configuration leaves out (toolsets not chosen, read-only mode), and why: worked out
    on first use (it imports and registers every other toolset on a scratch server to learn its tool names, which a
    server need not do before its first answer), then kept."""
    return functools.cache(lambda: _hidden_by_configuration(chosen, read_only, state))


def _hidden_by_configuration(chosen: list[toolsets.Toolset], read_only: bool, state: AppState) -> list[HiddenTool]:
    picked = {t.name for t in chosen}
    out: list[HiddenTool] = []
    for name, toolset in toolsets.available().items():
        if name in picked:
            continue
        scratch: MCPServer[AppState] = MCPServer(name="scratch")  # only to learn the names it would register
        toolset.register(scratch, state)
        if read_only and not toolset.read_only:
            why = "read-only mode: no tool that can change the account is registered"
        else:
            why = f"the {name} toolset is not enabled here (TRADING_MCP_TOOLSETS; `all` enables every one)"
        out += [HiddenTool(tool=t.name, why=why) for t in scratch._tool_manager.list_tools()]
    return out


def _hidden(ctx: Context, configured: Hidden) -> list[HiddenTool]:
    registered = {t.name for t in ctx.mcp_server._tool_manager.list_tools()}
    out = list(configured())
    scopes = scopes_of(ctx)
    if scopes is not None and SCOPE_TRADE not in scopes:
        out += [HiddenTool(tool=t, why=f"your access token lacks the {SCOPE_TRADE} scope") for t in TRADE_TOOLS]
    return sorted((h for h in out if h.tool not in registered or h.why.startswith("your")), key=lambda h: h.tool)


async def _probe(state: AppState) -> tuple[bool, str]:
    """Ask the authority a question it answers without journaling (a check of an empty order)."""
    try:
        await asyncio.wait_for(state.ask(OrderCommand(kind="check"), fold=False), PROBE_TIMEOUT_S)
    except (AuthorityUnavailable, TimeoutError) as exc:
        return False, f"no answer: {exc or 'timed out'} — orders cannot be placed or cancelled now"
    return True, "answering"


async def safety_status(ctx: Context, configured: Hidden) -> SafetyStatus:
    state = app(ctx)
    options = options_of(ctx.mcp_server)
    choice = choice_for(ctx, options)
    reachable, authority = await _probe(state)
    return SafetyStatus(
        paper_only=True,
        principal=principal_of(ctx),
        confirmation=Confirmation(policy=options.confirmation, method=choice.method, why=choice.why),
        hidden_tools=_hidden(ctx, configured),
        trading_state=state.gate.state.value,
        limits=state.gate.limits,
        authority_reachable=reachable,
        authority=authority,
    )


async def server_status(server: MCPServer[AppState], state: AppState, configured: Hidden) -> SafetyStatus:
    """The same, for no particular client (a resource read carries no client): the method depends on it."""
    options = options_of(server)
    reachable, authority = await _probe(state)
    why = {
        "best": "a person where the client can (elicitation, else the order ticket), else the preview token",
        "human": "a person always (elicitation or the order ticket); clients with neither cannot place orders",
        "token": "the preview token, for every client",
        "auto": "no confirmation (agent loop, allowed by the operator)",
    }[options.confirmation]
    return SafetyStatus(
        paper_only=True,
        principal="any",
        confirmation=Confirmation(policy=options.confirmation, method="depends on the client", why=why),
        hidden_tools=sorted(configured(), key=lambda h: h.tool),
        trading_state=state.gate.state.value,
        limits=state.gate.limits,
        authority_reachable=reachable,
        authority=authority,
    )


def register(server: MCPServer[AppState], state: AppState, configured: Hidden) -> None:
    """Add the tool and the resource; `configured` is `hidden_by_configuration` of the server's build."""

    async def get_safety_status(ctx: Context) -> Annotated[CallToolResult, SafetyStatus]:
        """What keeps this paper account safe from this client: how orders get confirmed here and why, which
        tools are hidden and why, the limits and trading state, and whether the order authority answers."""
        status = await safety_status(ctx, configured)
        hidden = "; ".join(f"{h.tool} ({h.why})" for h in status.hidden_tools) or "none"
        lines = [
            "Paper trading only: orders go to a simulator, no real money moves.",
            f"Confirmation: policy {status.confirmation.policy}, for you {status.confirmation.method} — "
            f"{status.confirmation.why}.",
            f"Hidden tools: {hidden}.",
            f"Trading state {status.trading_state}; get_risk_status shows every limit and its headroom.",
            f"Order authority: {status.authority}.",
        ]
        return reply(status, "\n".join(lines))

    add_tools(server, get_safety_status, annotations=READ_ONLY)

    @server.resource(
        "safety://status",
        name="safety_status",
        title="Safety status",
        description="Confirmation policy, hidden tools, limits and authority reachability, as JSON",
        mime_type="application/json",
    )
    async def safety_resource() -> str:
        return (await server_status(server, state, configured)).model_dump_json()
