"""The HTTP transports (streamable HTTP at /mcp, SSE at /sse) with their guards, plus /healthz /readyz /metrics.

- Host and Origin headers are checked on every MCP request (DNS-rebinding protection): loopback
  names always, plus the bind host and what TRADING_MCP_ALLOWED_HOSTS / _ORIGINS add. /metrics checks
  the Host too (421) when no bearer credential guards it (with one, a rebound page cannot read it, and
  Prometheus scrapes by service name); /healthz and /readyz answer probes under any Host.
- With a bearer credential (TRADING_MCP_AUTH_TOKEN, the tokens file TRADING_MCP_AUTH_TOKENS_FILE) and/or OAuth
  (TRADING_MCP_OAUTH_*, docs/OAUTH.md) configured, every route but /healthz, /readyz and the protected-resource
  metadata needs `Authorization: Bearer ...`: a static token, or a JWT of the configured issuer with
  `trading:read`; the order tools (auth.TRADE_TOOLS) also need `trading:trade`. Refusals are problem+json with
  a stable code (docs/ERROR_CATALOG.md).
- Accounts: one MCP server per served account, each with its own sessions. After the guard, `AccountRouter`
  sends each request to the server of the account its credential acts on (the first it holds); a request
  without a principal (open paths, unauthenticated loopback) goes to the primary account's (`--account`).
  A session of one account's server is unknown to every other account's server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

import structlog
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    TransportSecurityMiddleware,
    TransportSecuritySettings,
)
from mcp.shared.auth import ProtectedResourceMetadata
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_server.auth import (
    SCOPE_KEY,
    SCOPE_READ,
    SCOPE_TRADE,
    SCOPES_SUPPORTED,
    TRADE_TOOLS,
    OAuthSettings,
    Principal,
    current_principal,
)
from mcp_server.credentials_map import Credential, StaticCredentials, accounts_claim, single_token, verified_claims
from mcp_server.oauth_tokens import KeysUnavailable, TokenRejected, TokenValidator
from mcp_server.settings import ServeSettings
from observability.http import ops_routes
from tools.clock import Clock, LiveClock

log = structlog.get_logger("mcp_server.auth")

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
METADATA_PATH = "/.well-known/oauth-protected-resource"
ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://trading-mcp.dev/errors/"
# code -> (HTTP status, title); docs/ERROR_CATALOG.md, section "MCP over HTTP"
AUTH_CODES: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "Authentication required"),
    "invalid_token": (401, "The bearer token is not valid"),
    "insufficient_scope": (403, "The token lacks a scope this request needs"),
    "no_account": (403, "The token names no account"),
    "account_not_served": (403, "This server does not serve the credential's account"),
    "payload_too_large": (413, "The body is larger than the limit"),
    "auth_unavailable": (503, "The token could not be checked; retry later"),
}


def security_settings(settings: ServeSettings) -> TransportSecuritySettings:
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.host_patterns(),
        allowed_origins=settings.origin_patterns(),
    )


def problem(code: str, detail: str, www_authenticate: str | None = None) -> Response:
    status, title = AUTH_CODES[code]
    body = {"type": TYPE_BASE + code, "title": title, "status": status, "code": code, "detail": detail}
    headers = {"WWW-Authenticate": www_authenticate} if www_authenticate else {}
    if code == "auth_unavailable":
        headers["Retry-After"] = "5"
    return Response(json.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


class AuthGuard:
    """Refuse HTTP requests without an accepted credential: a static bearer token (sha256 digests compared in
    constant time) or, with OAuth on, a valid JWT with `trading:read` that names its accounts (and `trading:trade`
    for a tools/call of an order tool). The accepted caller goes into the ASGI scope (`auth.SCOPE_KEY`, and `user`
    for the SDK's session binding) and into `auth.current_principal` for the handlers of the request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        static: StaticCredentials | None = None,
        validator: TokenValidator | None = None,
        metadata_url: str | None = None,
        open_paths: frozenset[str] = OPEN_PATHS,
        accounts_claim: str = "trading_accounts",
        claimless_account: str | None = None,
    ) -> None:
        self.app = app
        self._static = static if static else None
        self._validator = validator
        self._metadata_url = metadata_url
        self._open_paths = open_paths
        self._claim = accounts_claim
        self._claimless_account = claimless_account

    def _challenge(self, **params: str) -> str:
        if self._validator is None:
            return 'Bearer realm="trading-mcp"'
        if self._metadata_url:
            params["resource_metadata"] = self._metadata_url
        return "Bearer " + ", ".join(f'{k}="{v}"' for k, v in params.items())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open_paths:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        refusal, principal = await self._authenticate(given)
        if principal is not None and refusal is None and not principal.may(SCOPE_TRADE) and scope["method"] == "POST":
            refusal, receive = await self._check_tool_call(principal, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        assert principal is not None
        scopes = sorted(principal.scopes or ())
        user = AuthenticatedUser(
            AccessToken(token="", client_id=principal.subject, scopes=scopes, subject=principal.subject)
        )
        scope = {**scope, SCOPE_KEY: principal, "user": user, "auth": AuthCredentials(scopes)}
        reset = current_principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            current_principal.reset(reset)

    async def _authenticate(self, given: bytes) -> tuple[Response | None, Principal | None]:
        if self._static is not None and (principal := self._static.match(given)) is not None:
            return self._check_read(principal), principal
        if self._validator is None:
            detail = "missing or wrong bearer token: send `Authorization: Bearer <your token>`"
            return problem("unauthorized", detail, self._challenge()), None
        scheme, _, credentials = given.partition(b" ")
        if scheme.lower() != b"bearer" or not credentials.strip():
            detail = "this server needs `Authorization: Bearer <access token>`; get one from the authorization server"
            detail += f" named in {self._metadata_url}" if self._metadata_url else ""
            return problem("unauthorized", detail, self._challenge()), None
        try:
            token = credentials.strip().decode("ascii")
            principal = await self._validator.validate(token)
        except (TokenRejected, UnicodeDecodeError) as exc:
            reason = str(exc) if isinstance(exc, TokenRejected) else "the bearer token is not a JWT"
            log.info("bearer token refused", code="invalid_token", reason=reason)
            return problem("invalid_token", reason, self._challenge(error="invalid_token")), None
        except KeysUnavailable as exc:
            return problem("auth_unavailable", f"{exc}; retry shortly"), None
        if (refusal := self._check_read(principal)) is not None:
            return refusal, None
        accounts = accounts_claim(verified_claims(token), self._claim)
        if not accounts and self._claimless_account is not None:
            accounts = (self._claimless_account,)
        if not accounts:
            log.info("bearer token refused", code="no_account", sub=principal.subject, claim=self._claim)
            detail = (
                f"the token has no {self._claim} claim naming an account, so it can act on none: ask the "
                f"authorization server to add the claim (a list of account ids, the one to act on first)"
            )
            return problem("no_account", detail, self._challenge(error="insufficient_scope")), None
        return None, replace(principal, accounts=accounts)

    def _check_read(self, principal: Principal) -> Response | None:
        if principal.may(SCOPE_READ):
            return None
        log.info("bearer token refused", code="insufficient_scope", sub=principal.subject, needed=SCOPE_READ)
        detail = f"the token has no {SCOPE_READ} scope, which every request here needs"
        return problem("insufficient_scope", detail, self._challenge(error="insufficient_scope", scope=SCOPE_READ))

    async def _check_tool_call(self, principal: Principal, receive: Receive) -> tuple[Response | None, Receive]:
        """Read the body (the app gets it replayed, unchanged) and refuse a tools/call of an order tool."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, _replay(b"".join(chunks), receive, first=message)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > DEFAULT_MAX_REQUEST_BODY_SIZE:
                limit = DEFAULT_MAX_REQUEST_BODY_SIZE
                return problem("payload_too_large", f"the body is larger than {limit} bytes; send less"), receive
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        tool = _trade_tool_called(body)
        if tool is None:
            return None, _replay(body, receive)
        log.info("tool call refused", code="insufficient_scope", sub=principal.subject, tool=tool, needed=SCOPE_TRADE)
        detail = f"{tool} needs the {SCOPE_TRADE} scope, which this token lacks; ask for a token that has it"
        challenge = self._challenge(error="insufficient_scope", scope=SCOPE_TRADE)
        return problem("insufficient_scope", detail, challenge), _replay(body, receive)


def _trade_tool_called(body: bytes) -> str | None:
    """The order tool a JSON-RPC tools/call (or a batch holding one) names, if any."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None  # not JSON: the transport refuses it
    for message in parsed if isinstance(parsed, list) else [parsed]:
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            continue
        params = message.get("params")
        if isinstance(params, dict) and params.get("name") in TRADE_TOOLS:
            return str(params["name"])
    return None


def _replay(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    """A receive that hands out the buffered body once, then whatever the client sends next."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if first is not None:
        pending.append(first)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def protected_resource_metadata(oauth: OAuthSettings) -> ProtectedResourceMetadata:
    """RFC 9728: this resource, its authorization server, the scopes, and that tokens go in the header."""
    return ProtectedResourceMetadata.model_validate(
        {
            "resource": oauth.resource_url,
            "authorization_servers": [oauth.issuer],
            "scopes_supported": list(SCOPES_SUPPORTED),
            "bearer_methods_supported": ["header"],
            "resource_name": "trading-mcp",
        }
    )


def _metadata_endpoint(metadata: ProtectedResourceMetadata) -> Callable[[Request], Awaitable[Response]]:
    body = metadata.model_dump(mode="json", exclude_none=True)

    async def serve(_: Request) -> Response:
        return JSONResponse(body, headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"})

    return serve


class AccountRouter:
    """Send each request to the app of the account its principal acts on, or to the primary account's app when
    there is no principal (open paths, unauthenticated loopback); refuse an account not served (403). Every app's
    lifespan (its MCP session manager) runs for as long as this one's."""

    def __init__(self, apps: Mapping[str, Starlette], primary: str) -> None:
        assert primary in apps, "the primary account is always served"
        self._apps = dict(apps)
        self._primary = primary

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        principal = scope.get(SCOPE_KEY)
        account = principal.acting if isinstance(principal, Principal) else None
        app = self._apps.get(account or self._primary)
        if app is None:
            subject = principal.subject if isinstance(principal, Principal) else None
            log.info("request refused", code="account_not_served", sub=subject, account=account)
            detail = (
                f"this server does not serve account {account!r}, the one your credential acts on: ask the "
                "operator to serve it here or to map your credential to an account it serves"
            )
            await problem("account_not_served", detail)(scope, receive, send)
            return
        await app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with contextlib.AsyncExitStack() as stack:
            try:
                for app in self._apps.values():
                    await stack.enter_async_context(app.router.lifespan_context(app))
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                raise
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


def http_app(
    server: MCPServer[Any],
    settings: ServeSettings,
    ready: ReadyCheck,
    oauth: OAuthSettings | None = None,
    clock: Clock | None = None,
) -> ASGIApp:
    """One server's ASGI app for `settings.transport`: every credential acts on the server's account (the single
    token, and an OAuth token without the accounts claim, too: one account, nothing else to reach). `serve`
    uses `accounts_http_app`, where the claim is required."""
    account = getattr(server, "account", None) or settings.account
    return accounts_http_app(
        {account: server}, settings, ready, oauth=oauth, clock=clock, primary=account, claimless_account=account
    )


def accounts_http_app(
    servers: Mapping[str, MCPServer[Any]],
    settings: ServeSettings,
    ready: ReadyCheck,
    *,
    oauth: OAuthSettings | None = None,
    clock: Clock | None = None,
    tokens: Iterable[Credential] = (),
    primary: str | None = None,
    claimless_account: str | None = None,
) -> ASGIApp:
    """The ASGI app for `settings.transport` over one server per account (`servers`, by account id): the static
    credentials are `tokens` (the tokens file) plus TRADING_MCP_AUTH_TOKEN acting on `primary` (default
    `settings.account`); OAuth from `oauth` (TRADING_MCP_OAUTH_* when not given)."""
    oauth = oauth if oauth is not None else OAuthSettings()
    oauth.check()
    primary = primary or settings.account
    security = security_settings(settings)
    credentials = list(tokens)
    if settings.auth_token is not None:
        credentials.append(single_token(settings.auth_token.get_secret_value(), primary))
    static = StaticCredentials(credentials)
    # Without a credential in front of it, /metrics is readable by any page a browser was tricked into
    # loading from a rebound name: check its Host like the MCP endpoints.
    hosts = TransportSecurityMiddleware(security) if not static and not oauth.enabled else None
    open_paths = OPEN_PATHS
    validator = metadata_url = None
    extra_routes: dict[str, Callable[[Request], Awaitable[Response]]] = {}
    for route in ops_routes(ready):
        extra_routes[route.path] = _endpoint(route.endpoint, hosts if route.path not in OPEN_PATHS else None)
    if oauth.enabled:
        assert oauth.resource_url is not None
        metadata_url = str(build_resource_metadata_url(oauth.resource_url))  # type: ignore[arg-type]
        paths = {METADATA_PATH, urlparse(metadata_url).path}
        for path in paths:
            extra_routes[path] = _metadata_endpoint(protected_resource_metadata(oauth))
        open_paths = open_paths | paths
        validator = TokenValidator(oauth, clock or LiveClock())
    apps: dict[str, Starlette] = {}
    for account, server in servers.items():
        for path, endpoint in extra_routes.items():  # every account's app answers the ops routes
            server.custom_route(path, methods=["GET"], include_in_schema=False)(endpoint)
        if settings.transport == "sse":
            apps[account] = server.sse_app(transport_security=security, host=settings.host)
        else:
            apps[account] = server.streamable_http_app(
                streamable_http_path="/mcp", transport_security=security, host=settings.host
            )
    app: ASGIApp = AccountRouter(apps, primary)
    if static or validator is not None:
        app = AuthGuard(
            app,
            static=static,
            validator=validator,
            metadata_url=metadata_url,
            open_paths=open_paths,
            accounts_claim=oauth.accounts_claim,
            claimless_account=claimless_account,
        )
    return app


def _endpoint(
    endpoint: Callable[[Request], Awaitable[Response]], hosts: TransportSecurityMiddleware | None
) -> Callable[[Request], Awaitable[Response]]:
    """An ops route; with `hosts`, behind the MCP endpoints' Host check (a rebound name gets 421)."""

    async def call(request: Request) -> Response:
        if hosts is not None and not hosts._validate_host(request.headers.get("host")):  # noqa: SLF001
            return Response("Invalid Host header", status_code=421)
        return await endpoint(request)

    return call
