"""accounts: compare the accounts the caller holds (return, drawdown, Sharpe, orders, denials over a window).

Which accounts: those the credential holds (`auth.held_accounts`: an HTTP token's or OAuth claim's accounts);
a local caller (stdio) holds every account with a journal. Each account is read from its own journal and
measured by `tools.compare.compare`, so the numbers are the authority's, not this process's guess. Opt-in
(`--toolsets ...,accounts`): most agents trade one account and need none of this.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from bus.account_view import AppState
from bus.journal import journal_accounts, read_journal
from mcp_server.auth import held_accounts
from mcp_server.tooling import READ_ONLY, ToolFailure, add_tools, app, reply
from mcp_server.toolsets import Toolset
from schemas.compare import AccountComparison
from tools.compare import compare

MAX_INTERVAL_MINUTES = 7 * 24 * 60


def _when(name: str, raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ToolFailure(
            "invalid_arguments", f"{name} must be an ISO date like 2026-03-02 or 2026-03-02T09:00Z"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


async def comparison(
    state: AppState,
    held: tuple[str, ...] | None,
    start: datetime | None = None,
    end: datetime | None = None,
    interval: timedelta = timedelta(hours=1),
) -> AccountComparison:
    """The held accounts (every account with a journal when `held` is None) compared over one window."""
    accounts = list(held) if held is not None else await journal_accounts(state.js)
    journals = {account: await read_journal(state.js, account) for account in accounts}
    if not any(journals.values()) and (start is None or end is None):
        raise ToolFailure("no_data", "no account you hold has a journal entry yet: nothing to compare")
    try:
        return compare(journals, start, end, interval)
    except ValueError as exc:
        raise ToolFailure("invalid_arguments", str(exc)) from None


def _line(s: object) -> str:
    from schemas.compare import AccountStats

    assert isinstance(s, AccountStats)
    ret = "n/a" if s.return_pct is None else f"{s.return_pct:+.2f} %"
    sharpe = "n/a" if s.sharpe is None else f"{s.sharpe:.2f}"
    return (
        f"{s.account}: return {ret}, max drawdown {s.max_drawdown_pct:.2f} %, Sharpe {sharpe}, "
        f"{s.orders} order(s), {s.denials} denial(s), {s.fills} fill(s), equity {s.ending_equity:.2f}"
    )


async def compare_accounts(
    ctx: Context,
    start: Annotated[str | None, Field(description="Window start, ISO (default: the first journal entry)")] = None,
    end: Annotated[str | None, Field(description="Window end, ISO (default: the last journal entry)")] = None,
    interval_minutes: Annotated[
        int, Field(ge=1, le=MAX_INTERVAL_MINUTES, description="Equity sampling for the Sharpe ratio")
    ] = 60,
) -> Annotated[CallToolResult, AccountComparison]:
    """Compare the accounts you hold over one window, best return first: return, max drawdown, Sharpe,
    orders, denials, fills. Use it to see which strategy or agent did better on the same signals."""
    result = await comparison(
        app(ctx), held_accounts(ctx), _when("start", start), _when("end", end), timedelta(minutes=interval_minutes)
    )
    head = f"{len(result.accounts)} account(s), {result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC"
    best = f"; best: {result.best}" if result.best else ""
    return reply(result, "\n".join([head + best, *map(_line, result.accounts)]))


def _register(server: MCPServer[AppState], state: AppState) -> None:
    add_tools(server, compare_accounts, annotations=READ_ONLY)

    @server.resource(
        "accounts://comparison",
        name="accounts_comparison",
        title="Accounts compared",
        description="The accounts the caller holds compared over their whole journals, as JSON",
        mime_type="application/json",
    )
    async def comparison_resource() -> str:
        return (await comparison(state, held_accounts(None))).model_dump_json()


TOOLSET = Toolset("accounts", "Compare the accounts you hold (return, drawdown, Sharpe, orders, denials)", _register)
