"""OAuth 2.1 resource server over the real HTTP transports: a local issuer (real RSA / EC keys, its JWKS on a real
uvicorn), the SDK's clients with the token in the header, real JWT validation (no mock of it anywhere)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bus.embedded import free_port
from mcp_server.auth import TRADE_TOOLS, OAuthSettings, principal_of, scopes_of
from mcp_server.server import build_server
from mcp_server.settings import ConfigError, ServeSettings
from mcp_server.transports import AUTH_CODES, http_app
from tests.conftest import serve_uvicorn
from tests.mcp.helpers import add_fill, offline_state
from tools.clock import TestClock

ROOT = Path(__file__).resolve().parents[2]
STATIC_TOKEN = "static-t0ken-for-tests-0123456789"
READ_TRADE = "trading:read trading:trade"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@dataclass
class Issuer:
    """A local authorization server: key pairs made here, the JWKS served over loopback, tokens minted here."""

    url: str
    clock: TestClock
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    published: list[str] = field(default_factory=list)  # kids in the served JWKS
    jwks_requests: int = 0
    audience: str = ""

    def add_key(self, kid: str, kind: str = "RSA", *, publish: bool = True) -> None:
        self.keys[kid] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "RSA"
            else ec.generate_private_key(ec.SECP256R1())
        )
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            private = self.keys[kid]
            algorithm = (
                jwt.algorithms.RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
            )
            jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(
        self,
        sub: str = "alice",
        scope: str = READ_TRADE,
        *,
        kid: str = "rsa-1",
        signer: str | None = None,
        lifetime: float = 300,
        **claims: Any,
    ) -> str:
        now = self.clock.now()
        payload = {
            "iss": self.url,
            "sub": sub,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=lifetime)).timestamp()),
            "scope": scope,
            **claims,
        }
        private = self.keys[signer or kid]
        alg = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid})


@contextlib.asynccontextmanager
async def local_issuer() -> AsyncIterator[Issuer]:
    port = free_port()
    issuer = Issuer(url=f"http://127.0.0.1:{port}", clock=TestClock())
    issuer.add_key("rsa-1")

    async def jwks(_: Request) -> Response:
        issuer.jwks_requests += 1
        return JSONResponse(issuer.jwks())

    async with serve_uvicorn(Starlette(routes=[Route("/jwks", jwks)]), port):
        yield issuer


@dataclass
class Served:
    base: str
    issuer: Issuer

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/oauth-protected-resource/mcp"


async def whoami(ctx: Context) -> str:
    """Test-only tool: the caller as auth.principal_of and auth.scopes_of see it."""
    scopes = scopes_of(ctx)
    return f"{principal_of(ctx)}|{' '.join(sorted(scopes)) if scopes is not None else '-'}"


@contextlib.asynccontextmanager
async def served(transport: str = "streamable-http", **overrides: Any) -> AsyncIterator[Served]:
    async with local_issuer() as issuer:
        state = offline_state()
        add_fill(state, 1, "buy", "10", "190.25")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        resource = f"{base}/mcp" if transport == "streamable-http" else f"{base}/sse"
        issuer.audience = resource
        oauth_fields = {"issuer": issuer.url, "jwks_url": f"{issuer.url}/jwks", "resource_url": resource}
        oauth_fields |= {"jwks_min_refresh_seconds": 0}
        oauth_fields |= {k: overrides.pop(k) for k in list(overrides) if k in OAuthSettings.model_fields}
        oauth = OAuthSettings(**oauth_fields)
        settings = ServeSettings(data_dir=Path("."), port=port, transport=transport, **overrides)  # type: ignore[arg-type]
        server = build_server(state)
        server.add_tool(whoami)

        async def ready() -> dict[str, bool]:
            return {"nats": True}

        app = http_app(server, settings, ready, oauth=oauth, clock=issuer.clock)
        async with serve_uvicorn(app, port):
            yield Served(base, issuer)


def bearer(token: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})


async def post_initialize(url: str, token: str | None) -> httpx.Response:
    headers = {**MCP_HEADERS, **({"authorization": f"Bearer {token}"} if token is not None else {})}
    async with httpx.AsyncClient() as http:
        return await http.post(url, json=INITIALIZE, headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"].endswith(f"/{code}") and body["title"] and body["detail"]
    return body


async def test_a_token_with_read_and_trade_lists_the_order_tools_and_calls_tools_as_its_subject() -> None:
    async with served() as s:
        token = s.issuer.token(sub="alice")
        async with Client(streamable_http_client(s.mcp, http_client=bearer(token))) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            positions = await client.call_tool("get_positions", {})
            me = await client.call_tool("whoami", {})
    assert {"place_order", "cancel_order", "preview_order", "get_positions"} <= set(names)
    assert names[-1] == "whoami"  # registration order: the test tool was registered last
    assert positions.structured_content["positions"][0]["symbol"] == "AAPL"
    assert me.content[0].text == "alice|trading:read trading:trade"


async def test_principal_of_sees_the_subject_inside_a_tool_over_sse_too() -> None:
    async with served("sse") as s:
        token = s.issuer.token(sub="bob", scope="trading:read")
        async with Client(sse_client(f"{s.base}/sse", headers={"authorization": f"Bearer {token}"})) as client:
            me = await client.call_tool("whoami", {})
            names = {t.name for t in (await client.list_tools()).tools}
    assert me.content[0].text == "bob|trading:read"
    assert not names & TRADE_TOOLS and "get_positions" in names


async def test_without_oauth_or_token_in_force_the_principal_is_local_and_every_scope_is_allowed() -> None:
    server = build_server(offline_state())
    server.add_tool(whoami)
    async with Client(server) as client:
        me = await client.call_tool("whoami", {})
        names = {t.name for t in (await client.list_tools()).tools}
    assert me.content[0].text == "local|-"
    assert {"place_order", "cancel_order"} <= names


async def test_a_request_without_a_token_gets_401_unauthorized_pointing_at_the_resource_metadata() -> None:
    async with served() as s:
        response = await post_initialize(s.mcp, None)
        metrics = await post_initialize(f"{s.base}/metrics", None)
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{s.base}/healthz")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{s.metadata_url}"'
    assert metrics.status_code == 401 and health.status_code == 200


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "expired"),
        ("not_yet_valid", "not valid yet"),
        ("wrong_audience", "not for this server"),
        ("wrong_issuer", "not issued by"),
        ("unknown_kid", "not among the issuer's keys"),
        ("bad_signature", "signature does not verify"),
        ("not_a_jwt", "not a JWT"),
        ("hs256", "not accepted"),
    ],
)
async def test_an_invalid_token_gets_401_invalid_token_saying_why(case: str, reason: str) -> None:
    async with served() as s:
        issuer = s.issuer
        issuer.add_key("stranger", publish=False)
        tokens = {
            "expired": lambda: issuer.token(lifetime=-31),  # beyond the 30 s leeway
            "not_yet_valid": lambda: issuer.token(nbf=int(issuer.clock.now().timestamp()) + 120),
            "wrong_audience": lambda: issuer.token(aud="https://other.example/mcp"),
            "wrong_issuer": lambda: issuer.token(iss="https://evil.example"),
            "unknown_kid": lambda: issuer.token(kid="stranger"),
            "bad_signature": lambda: issuer.token(kid="rsa-1", signer="stranger"),
            "not_a_jwt": lambda: "opaque-token-value",
            "hs256": lambda: jwt.encode({"sub": "x"}, "s" * 32, algorithm="HS256", headers={"kid": "rsa-1"}),
        }
        token = tokens[case]()
        response = await post_initialize(s.mcp, token)
    body = assert_problem(response, 401, "invalid_token")
    assert reason in body["detail"] and token not in response.text
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", resource_metadata="{s.metadata_url}"'
    )


async def test_a_token_just_inside_the_leeway_is_accepted_and_one_moment_later_is_refused() -> None:
    async with served() as s:
        token = s.issuer.token(lifetime=0)
        s.issuer.clock.advance(30)
        inside = await post_initialize(s.mcp, token)
        s.issuer.clock.advance(1)
        outside = await post_initialize(s.mcp, token)
    assert inside.status_code == 200
    assert_problem(outside, 401, "invalid_token")


async def test_a_read_only_token_does_not_see_the_order_tools_and_calling_place_order_gets_403() -> None:
    async with served() as s:
        read_only = s.issuer.token(sub="carol", scope="trading:read")
        async with Client(streamable_http_client(s.mcp, http_client=bearer(read_only))) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            me = await client.call_tool("whoami", {})
        refused = await call_over_http(
            s.mcp, read_only, "place_order", {"symbol": "AAPL", "side": "buy", "quantity": "1"}
        )
        refused_cancel = await call_over_http(s.mcp, read_only, "cancel_order", {"client_order_id": "x"})
        allowed = await call_over_http(s.mcp, s.issuer.token(), "place_order", {"symbol": "AAPL"})
    assert not set(names) & TRADE_TOOLS
    assert {"preview_order", "get_positions", "list_orders"} <= set(names)
    assert me.content[0].text == "carol|trading:read"
    body = assert_problem(refused, 403, "insufficient_scope")
    assert "place_order" in body["detail"] and "trading:trade" in body["detail"]
    assert refused.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="trading:trade", resource_metadata="{s.metadata_url}"'
    )
    assert_problem(refused_cancel, 403, "insufficient_scope")
    assert allowed.status_code == 200  # the same call with trading:trade reaches the tool (which then refuses it)


async def call_over_http(url: str, token: str, tool: str, arguments: dict[str, Any]) -> httpx.Response:
    """A raw JSON-RPC tools/call in an initialized session, as any HTTP client could send it."""
    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}", "mcp-protocol-version": "2025-06-18"}
    async with httpx.AsyncClient() as http:
        opened = await http.post(url, json=INITIALIZE, headers=headers)
        assert opened.status_code == 200, opened.text
        headers["mcp-session-id"] = opened.headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=initialized, headers=headers)).status_code == 202
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        return await http.post(url, content=json.dumps(call), headers=headers)


async def test_a_body_beyond_the_limit_from_a_token_without_trade_is_refused_with_413_unread() -> None:
    async with served() as s, httpx.AsyncClient() as http:
        headers = {**MCP_HEADERS, "authorization": f"Bearer {s.issuer.token(scope='trading:read')}"}
        response = await http.post(s.mcp, content=b" " * (DEFAULT_MAX_REQUEST_BODY_SIZE + 1), headers=headers)
    assert_problem(response, 413, "payload_too_large")


async def test_a_token_without_trading_read_gets_403_on_every_request() -> None:
    async with served() as s:
        response = await post_initialize(s.mcp, s.issuer.token(scope="trading:trade"))
    assert_problem(response, 403, "insufficient_scope")
    assert 'scope="trading:read"' in response.headers["www-authenticate"]


async def test_the_protected_resource_metadata_is_served_at_both_well_known_paths_without_a_token() -> None:
    async with served() as s, httpx.AsyncClient() as http:
        at_path = await http.get(s.metadata_url)
        at_root = await http.get(f"{s.base}/.well-known/oauth-protected-resource")
    assert at_path.status_code == at_root.status_code == 200
    assert (
        at_path.json()
        == at_root.json()
        == {
            "resource": s.mcp,
            "authorization_servers": [s.issuer.url],
            "scopes_supported": ["trading:read", "trading:trade", "trading:admin"],
            "bearer_methods_supported": ["header"],
            "resource_name": "trading-mcp",
        }
    )


async def test_a_key_the_issuer_adds_later_is_fetched_on_its_unknown_kid_and_es256_tokens_are_accepted() -> None:
    async with served() as s:
        first = await post_initialize(s.mcp, s.issuer.token())
        again = await post_initialize(s.mcp, s.issuer.token(sub="again"))
        fetched_before = s.issuer.jwks_requests
        s.issuer.add_key("ec-2", "EC")
        rotated = await post_initialize(s.mcp, s.issuer.token(kid="ec-2"))
    assert first.status_code == again.status_code == rotated.status_code == 200
    assert fetched_before == 1  # cached between the first two tokens
    assert s.issuer.jwks_requests == 2


async def test_unknown_kids_do_not_refetch_the_jwks_more_often_than_the_minimum_interval() -> None:
    async with served(jwks_min_refresh_seconds=60) as s:
        s.issuer.add_key("stranger", publish=False)
        for _ in range(3):
            assert (await post_initialize(s.mcp, s.issuer.token(kid="stranger"))).status_code == 401
        fetched = s.issuer.jwks_requests
        s.issuer.clock.advance(61)
        s.issuer.published.append("stranger")
        accepted = await post_initialize(s.mcp, s.issuer.token(kid="stranger"))
    assert fetched == 1
    assert accepted.status_code == 200 and s.issuer.jwks_requests == 2


async def test_an_unreachable_jwks_gets_503_auth_unavailable_not_a_token_error() -> None:
    async with served(jwks_url=f"http://127.0.0.1:{free_port()}/jwks") as s:
        response = await post_initialize(s.mcp, s.issuer.token())
    assert_problem(response, 503, "auth_unavailable")
    assert response.headers["retry-after"] == "5"


async def test_with_oauth_and_the_static_token_both_configured_either_is_accepted() -> None:
    async with served(auth_token=SecretStr(STATIC_TOKEN)) as s:
        async with Client(streamable_http_client(s.mcp, http_client=bearer(STATIC_TOKEN))) as client:
            by_token = await client.call_tool("whoami", {})
            names = {t.name for t in (await client.list_tools()).tools}
        async with Client(streamable_http_client(s.mcp, http_client=bearer(s.issuer.token(sub="dave")))) as client:
            by_jwt = await client.call_tool("whoami", {})
    assert by_token.content[0].text == "token|-" and TRADE_TOOLS - {"confirm_order_ticket"} <= names
    assert by_jwt.content[0].text == "dave|trading:read trading:trade"


async def test_a_session_opened_by_one_subject_cannot_be_used_with_another_subjects_token() -> None:
    async with served() as s, httpx.AsyncClient() as http:
        headers = {**MCP_HEADERS, "authorization": f"Bearer {s.issuer.token(sub='erin')}"}
        opened = await http.post(s.mcp, json=INITIALIZE, headers=headers)
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        owner = await http.post(s.mcp, json=ping, headers={**headers, **session})
        other = {**MCP_HEADERS, **session, "authorization": f"Bearer {s.issuer.token(sub='mallory')}"}
        hijack = await http.post(s.mcp, json=ping, headers=other)
    assert owner.status_code == 200
    assert hijack.status_code == 404


async def test_the_static_tokens_401_is_a_full_problem_document() -> None:
    state = offline_state()
    port = free_port()
    settings = ServeSettings(
        data_dir=Path("."), port=port, transport="streamable-http", auth_token=SecretStr(STATIC_TOKEN)
    )

    async def ready() -> dict[str, bool]:
        return {"nats": True}

    async with serve_uvicorn(http_app(build_server(state), settings, ready, oauth=OAuthSettings()), port) as base:
        response = await post_initialize(f"{base}/mcp", "wrong")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer realm="trading-mcp"'


def test_oauth_configured_satisfies_the_exposure_check_and_a_half_configured_oauth_is_refused() -> None:
    ServeSettings(
        data_dir=Path("."), transport="streamable-http", host="0.0.0.0", oauth_issuer="https://id.example.org"
    ).check_exposure()
    with pytest.raises(ConfigError, match="TRADING_MCP_OAUTH_JWKS_URL and TRADING_MCP_OAUTH_RESOURCE_URL are not"):
        OAuthSettings(issuer="https://id.example.org").check()
    with pytest.raises(ConfigError, match="TRADING_MCP_OAUTH_RESOURCE_URL must be an http"):
        OAuthSettings(
            issuer="https://id.example.org", jwks_url="https://id.example.org/jwks", resource_url="mcp"
        ).check()
    OAuthSettings().check()  # off: nothing to check


def test_the_error_catalog_lists_every_http_auth_code_with_its_status_and_nothing_else() -> None:
    text = (ROOT / "docs" / "ERROR_CATALOG.md").read_text()
    start = text.index("\n## MCP over HTTP")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", section, flags=re.M)
    assert {code: int(status) for code, status in rows} == {c: s for c, (s, _) in AUTH_CODES.items()}
    assert len(rows) == len(AUTH_CODES)
