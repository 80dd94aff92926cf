"""The composition root for `serve` and `agent`: one account view, the MCP server and, when asked, a decision mode
in the same process. Applications never import each other; this is where they meet."""

from __future__ import annotations

import asyncio
import contextlib
import signal as signals

from bus.account_view import AppState, open_account_view
from bus.accounts import load_accounts
from decisions.agent.settings import AgentSettings
from decisions.settings import ConfigError, DecisionSettings
from mcp_server import service as mcp
from mcp_server.server import TradingServer, build_server
from mcp_server.settings import ServeSettings
from mcp_server.tooling import ToolOptions
from observability import runtime
from schemas.accounts import AccountsFile


def agent_server(state: AppState, settings: AgentSettings) -> TradingServer:
    """The MCP server the agent's model works through: the same tools over the same account view. No order
    ticket (app-only tools are not for models); `--dry-run` builds it read-only."""
    options = ToolOptions(
        confirmation=settings.confirmation,
        confirmation_ttl_seconds=settings.confirmation_ttl_seconds,
        apps=False,
        origin="agent",
    )
    return build_server(state, toolsets_enabled=settings.toolset_names(), read_only=settings.dry_run, options=options)


def decides(decision: DecisionSettings, accounts: AccountsFile) -> bool:
    """Whether the decision modes have anything to check or run here: a bridge runs, or a strategy mode is
    configured (its strategies are checked even without a bridge). When not, `serve` never imports them: the
    strategy mode brings in the backtester's sizing (numpy), the agent the MCP client; a stdio server for a
    desktop client needs neither before its first answer."""
    modes = {decision.bridge_mode, *(account.mode for account in accounts.accounts)}
    return decision.bridge or "strategy" in modes


async def run_serve(settings: ServeSettings, decision: DecisionSettings) -> None:
    mcp.check(settings)
    accounts = load_accounts(settings.data_dir, settings.accounts_file)
    if accounts.get(settings.account) is None:
        raise ConfigError(
            f"account {settings.account!r} is not in the accounts file ({', '.join(accounts.ids)}): "
            "set TRADING_MCP_ACCOUNT / --account to one of them"
        )
    if decides(decision, accounts):
        from decisions import service as decisions

        decisions.check(decision, accounts)
    tokens = mcp.load_tokens(settings)
    if settings.transport == "stdio" and not decision.bridge:
        await serve_stdio_while_folding(settings)
        return
    served = mcp.served_accounts(settings, tokens, accounts.ids)
    async with (
        open_account_view(settings.nats_url, settings.data_dir, account=settings.account) as state,
        contextlib.AsyncExitStack() as stack,
    ):
        views = {settings.account: state}  # one view per account, shared by its MCP server and its decision mode

        async def view(account: str) -> AppState:
            if account not in views:
                views[account] = await stack.enter_async_context(state.sibling(account))
            return views[account]

        stop = asyncio.Event()
        tasks = []
        if decision.bridge:  # each account's own decision mode, side by side in this process
            from decisions import service as decisions

            for config in accounts.accounts:
                task = decisions.start(await view(config.id), decision, stop, agent_server, config)
                if task is not None:
                    tasks.append(task)
        try:
            await mcp.serve(settings, {account: await view(account) for account in served}, tokens)
        finally:
            stop.set()
            if tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 3)


async def serve_stdio_while_folding(settings: ServeSettings) -> None:
    """A stdio server with no decision mode: connected and the streams there before anything is answered (a bus
    that cannot be reached fails the start), then the client's initialize and tools/list are answered while the
    account is folded from the journal (snapshot, then the entries after it); every tool call and resource read
    waits for the fold to catch up (TradingServer.answer_after). A fold that fails stops the server, as a failed
    `open_account_view` would have stopped it before it served."""
    async with open_account_view(settings.nats_url, settings.data_dir, account=settings.account, wait=False) as state:
        folding = state.folding
        assert folding is not None
        serving = asyncio.create_task(mcp.serve(settings, {settings.account: state}, caught_up=folding))
        try:
            await asyncio.wait({folding, serving}, return_when=asyncio.FIRST_COMPLETED)
            if folding.done() and not folding.cancelled() and folding.exception() is not None:
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
                raise folding.exception()  # type: ignore[misc]
            await serving
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)


def serve_main(settings: ServeSettings, decision: DecisionSettings) -> None:
    runtime.run(run_serve(settings, decision))


async def run_agent(settings: AgentSettings, stop: asyncio.Event | None = None) -> None:
    """`trading-mcp agent`: its own view of the account (folded from the authority's journal); every order the
    model places is decided by the account authority."""
    from decisions.agent.service import run_agent_worker

    settings.check()
    stop = stop or asyncio.Event()
    async with open_account_view(settings.nats_url, settings.data_dir, "agent") as state:
        try:
            await run_agent_worker(state, settings, stop, agent_server(state, settings))
        finally:
            stop.set()


def agent_main(settings: AgentSettings) -> None:
    settings.check()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(asyncio.CancelledError):
            await run_agent(settings, stop)

    runtime.run(run())
