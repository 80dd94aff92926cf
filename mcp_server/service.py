"""Run the MCP server (any transport) over account views. What else runs in the process (a decision mode) is
the CLI's choice (cli/serve.py); this module serves MCP and nothing else.

stdio serves the primary account (`--account`). HTTP serves one MCP server per account some credential maps to
(plus the primary one), and routes each request to the server of its credential's account (mcp_server.transports).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import structlog

from bus.account_view import AppState
from mcp_server import toolsets
from mcp_server.auth import OAuthSettings
from mcp_server.server import TradingServer, build_server
from mcp_server.settings import ConfigError, ServeSettings
from mcp_server.tooling import ToolOptions
from mcp_server.toolsets.confirmation import load_key
from tools.rate_limit import TokenBucket

if TYPE_CHECKING:  # the HTTP side (tokens, JWT, Starlette app, uvicorn) loads where it runs: stdio needs none of it
    from mcp_server.credentials_map import Credential

log = structlog.get_logger("mcp_server")


def build_for(settings: ServeSettings, state: AppState, limiter: TokenBucket | None = None) -> TradingServer:
    """The MCP server over one account's view; `limiter` shared by the servers of one process (all clients)."""
    limiter = limiter or TokenBucket.per_minute(settings.rate_limit_per_minute, settings.rate_limit_burst)
    key = settings.confirmation_key
    options = ToolOptions(
        confirmation=settings.confirmation,
        confirmation_ttl_seconds=settings.confirmation_ttl_seconds,
        price_band_bps=settings.price_band_bps,
        elicitation_timeout_seconds=settings.elicitation_timeout_seconds,
        confirmation_key=bytes.fromhex(key.get_secret_value()) if key else load_key(settings.data_dir),
    )
    return build_server(
        state,
        toolsets_enabled=settings.toolset_names(),
        read_only=settings.read_only,
        limiter=limiter,
        options=options,
    )


def check(settings: ServeSettings) -> None:
    """Refuse a bad configuration before anything starts (exposure without a token, unknown toolsets)."""
    if settings.auth_tokens_file is None or settings.auth_token is not None:
        settings.check_exposure()  # else the tokens file is the credential, checked as it loads
    settings.check_confirmation()
    try:
        toolsets.select(settings.toolset_names(), read_only=settings.read_only)
    except toolsets.UnknownToolset as exc:
        raise ConfigError(str(exc)) from exc


def load_tokens(settings: ServeSettings) -> list[Credential]:
    """The tokens file's credentials (none without TRADING_MCP_AUTH_TOKENS_FILE); TokensFileError if it is wrong."""
    if settings.auth_tokens_file is None:
        return []
    from mcp_server.credentials_map import load_tokens_file

    return load_tokens_file(settings.auth_tokens_file)


def served_accounts(
    settings: ServeSettings, tokens: Sequence[Credential], known: Sequence[str], oauth: OAuthSettings | None = None
) -> list[str]:
    """The accounts this process serves MCP for, the primary (`--account`) first: over HTTP, every account of the
    accounts file (`known`) a static token holds, or all of them under OAuth (a token's claim may name any)."""
    if settings.transport == "stdio":
        return [settings.account]
    oauth = oauth if oauth is not None else OAuthSettings()
    held = {a for credential in tokens for a in credential.principal.accounts}
    unknown = sorted(held - set(known))
    if unknown:
        log.warning(
            "the tokens file names accounts that are not in the accounts file: their credentials are refused (403)",
            accounts=unknown,
            entries=sorted(c.principal.subject for c in tokens if set(c.principal.accounts) & set(unknown)),
        )
    wanted = set(known) if oauth.enabled else held
    return [settings.account, *(a for a in known if a in wanted and a != settings.account)]


async def serve(
    settings: ServeSettings,
    states: Mapping[str, AppState],
    tokens: Sequence[Credential] = (),
    caught_up: asyncio.Future[None] | None = None,
) -> None:
    """Serve MCP over the account views `states` (by account id; the primary one, `settings.account`, among them)
    on the configured transport until stopped (SIGTERM/SIGINT on stdio). `caught_up` (stdio): the primary view is
    still being folded; tool calls and resource reads wait for it (TradingServer.answer_after)."""
    limiter = TokenBucket.per_minute(settings.rate_limit_per_minute, settings.rate_limit_burst)
    if settings.transport == "stdio":
        server = build_for(settings, states[settings.account], limiter)
        if caught_up is not None:
            server.answer_after(caught_up)
        await _run_stdio(server)
    else:
        servers = {account: build_for(settings, state, limiter) for account, state in states.items()}
        await _run_http(servers, settings, states, tokens)


async def _run_stdio(server: TradingServer) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await server.run_stdio_async()


async def _run_http(
    servers: Mapping[str, TradingServer],
    settings: ServeSettings,
    states: Mapping[str, AppState],
    tokens: Sequence[Credential],
) -> None:
    import uvicorn

    from mcp_server.transports import accounts_http_app
    from observability.http import OpsServer

    async def ready() -> dict[str, bool]:
        return {"nats": all(state.nc.is_connected for state in states.values())}

    if settings.transport == "sse":
        log.warning("SSE transport deprecated: it stays for old clients; use --transport streamable-http (/mcp)")
    log.info("serving MCP over HTTP", accounts=list(servers), primary=settings.account)
    app = accounts_http_app(servers, settings, ready, tokens=tokens)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None)
    await OpsServer(config).serve()  # a SIGTERM ends serving; the caller still stops its bridges and connections
