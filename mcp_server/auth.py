"""Who is calling, and what they may do: the principal and scopes of an MCP request, the OAuth settings.

The HTTP guard (mcp_server.transports) authenticates each request (a static bearer token or an OAuth JWT)
and leaves a `Principal` in the ASGI scope and in a context variable; tools read it through `principal_of`,
`scopes_of`, `acting_account` and `held_accounts`. stdio and in-memory clients have no principal: they are
`"local"`, with every scope, acting on the server's account and holding every account.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcp_server.settings import ConfigError
from schemas.common import DEFAULT_ACCOUNT

SCOPE_READ = "trading:read"
SCOPE_TRADE = "trading:trade"
SCOPE_ADMIN = "trading:admin"
SCOPES_SUPPORTED = (SCOPE_READ, SCOPE_TRADE, SCOPE_ADMIN)

TRADE_TOOLS = frozenset({"place_order", "cancel_order", "confirm_order_ticket"})
"""The tools that need `trading:trade`: refused over HTTP (403) and left out of tools/list without it."""

LOCAL = "local"
STATIC_TOKEN_PRINCIPAL = "token"
SCOPE_KEY = "trading_mcp.principal"
"""Where the guard puts the `Principal` in the ASGI scope."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: `subject` is the JWT `sub` (or "token", or the tokens file entry's name);
    `scopes` None means every scope; `accounts` are the accounts it holds, the one it acts on first."""

    subject: str
    scopes: frozenset[str] | None = None
    accounts: tuple[str, ...] = ()

    def may(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    @property
    def acting(self) -> str | None:
        """The account this caller's requests act on (the first it holds)."""
        return self.accounts[0] if self.accounts else None


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "trading_mcp_principal", default=None
)
"""Set by the guard around each HTTP request; the SDK carries it into the handlers of that request's messages."""


def _principal(ctx: Any) -> Principal | None:
    try:
        request = ctx.request_context.request
    except (AttributeError, ValueError):  # no request context: a direct call outside a session
        request = None
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict) and isinstance(found := scope.get(SCOPE_KEY), Principal):
        return found
    return current_principal.get()


def principal_of(ctx: Any) -> str:
    """The authenticated principal of the current MCP request: the JWT `sub`, "token" for the static bearer
    token, or "local" for stdio, in-memory and unauthenticated loopback clients."""
    found = _principal(ctx)
    return found.subject if found is not None else LOCAL


def scopes_of(ctx: Any) -> frozenset[str] | None:
    """The granted OAuth scopes of the current MCP request, or None when no OAuth is in force (all allowed)."""
    found = _principal(ctx)
    return found.scopes if found is not None else None


def held_accounts(ctx: Any) -> tuple[str, ...] | None:
    """The accounts the caller of the current MCP request holds (may see), the acting one first; None for a
    local caller (stdio, in-memory, unauthenticated loopback), which holds every account of the accounts file."""
    found = _principal(ctx)
    return found.accounts if found is not None and found.accounts else None


def acting_account(ctx: Any) -> str:
    """The account the current MCP request acts on: the caller's first account, or for a local caller the
    server's account (its lifespan's account view)."""
    found = _principal(ctx)
    if found is not None and found.acting is not None:
        return found.acting
    try:
        state = ctx.request_context.lifespan_context
    except (AttributeError, ValueError):
        state = None
    account = getattr(state, "account_id", None)
    return account if isinstance(account, str) else DEFAULT_ACCOUNT


def current_scopes() -> frozenset[str] | None:
    """scopes_of for code that has no Context (the server's tools/list): the caller of the running request."""
    found = current_principal.get()
    return found.scopes if found is not None else None


def visible_tool(name: str, scopes: frozenset[str] | None) -> bool:
    """Whether a caller with `scopes` may see and call the tool `name`."""
    return scopes is None or name not in TRADE_TOOLS or SCOPE_TRADE in scopes


class OAuthSettings(BaseSettings):
    """OAuth 2.1 resource server: tokens are JWTs from `issuer`, checked against its JWKS. On when issuer is set."""

    model_config = SettingsConfigDict(env_prefix="TRADING_MCP_OAUTH_", extra="ignore")

    issuer: str | None = Field(default=None, description="The authorization server's issuer (the `iss` of tokens)")
    jwks_url: str | None = Field(default=None, description="Where the issuer publishes its signing keys (JWKS)")
    resource_url: str | None = Field(
        default=None, description="This server's public MCP URL, e.g. https://mcp.example.org/mcp (RFC 9728 resource)"
    )
    audience: str | None = Field(default=None, description="The `aud` tokens must carry; resource_url if unset")
    leeway_seconds: float = Field(default=30.0, ge=0, le=300, description="Clock skew allowed on exp / nbf")
    jwks_ttl_seconds: float = Field(default=600.0, gt=0, description="How long fetched keys are trusted")
    jwks_min_refresh_seconds: float = Field(
        default=30.0, ge=0, description="An unknown kid refetches the JWKS at most this often"
    )
    accounts_claim: str = Field(
        default="trading_accounts",
        min_length=1,
        description="The claim naming the token's accounts (a list or a space-separated string; it acts on the "
        "first); a token without it is refused (no_account)",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)

    @property
    def expected_audience(self) -> str:
        return self.audience or self.resource_url or ""

    def check(self) -> None:
        """With an issuer set, the JWKS and the resource URL are needed too; refuse to start otherwise."""
        if not self.enabled:
            return
        missing = [
            env
            for env, value in (
                ("TRADING_MCP_OAUTH_JWKS_URL", self.jwks_url),
                ("TRADING_MCP_OAUTH_RESOURCE_URL", self.resource_url),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"OAuth is on (TRADING_MCP_OAUTH_ISSUER is set) but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: set the issuer's JWKS URL and this server's public "
                "MCP URL (e.g. https://mcp.example.org/mcp); see docs/OAUTH.md"
            )
        for env, value in (
            ("TRADING_MCP_OAUTH_JWKS_URL", self.jwks_url),
            ("TRADING_MCP_OAUTH_RESOURCE_URL", self.resource_url),
        ):
            if not str(value).startswith(("https://", "http://")):
                raise ConfigError(f"{env} must be an http(s) URL, got {value!r}")
