"""MCP over HTTP acts on the account the credential maps to, and every other account is invisible: `trading-mcp
serve` as a real process on a real nats-server (two accounts, state in one of them from an in-process authority
and simulator), the SDK's client with static tokens from a tokens file; the OAuth accounts claim with the local
issuer of the OAuth tests; SSE sessions per account; a wrong tokens file refused before anything starts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context

from authority.service import Authority
from bus.account_view import AppState
from bus.authority_client import ask
from bus.embedded import EmbeddedNats, free_port
from bus.jetstream import connect, ensure_streams, publish
from execsim.engine import Engine, EngineConfig
from execsim.service import ExecSimService, durables, start_consumers
from mcp_server.auth import OAuthSettings, Principal, acting_account, held_accounts
from mcp_server.credentials_map import Credential, TokensFileError, load_tokens_file
from mcp_server.server import ACCOUNT_META, build_server
from mcp_server.settings import ServeSettings
from mcp_server.transports import accounts_http_app
from schemas.account import OrderCommand
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tests.conftest import serve_uvicorn, wait_for
from tests.mcp.helpers import TEST_AUTHORITY_KEY, TEST_OPERATOR_TOKEN, add_fill, add_signal
from tests.mcp.test_mcp_serve_processes import EXE, _env, _serve_http
from tests.mcp.test_oauth import INITIALIZE, MCP_HEADERS, assert_problem, local_issuer
from tools.clock import Clock, LiveClock
from tools.risk import RiskLimits

ALPHA_TOKEN = "alpha-desk-t0ken-0123456789abcdef"
BETA_TOKEN = "beta-desk-t0ken-0123456789abcdef"
GHOST_TOKEN = "ghost-desk-t0ken-0123456789abcdef"

ACCOUNTS_TOML = """
[[accounts]]
id = "alpha"

[[accounts]]
id = "beta"
"""


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_toml() -> str:
    return f"""
[[tokens]]
name = "alpha-desk"
token_sha256 = "{sha256(ALPHA_TOKEN)}"
accounts = ["alpha", "beta"]

[[tokens]]
name = "beta-desk"
token = "{BETA_TOKEN}"
accounts = ["beta"]
scopes = ["trading:read"]

[[tokens]]
name = "ghost-desk"
token_sha256 = "{sha256(GHOST_TOKEN)}"
accounts = ["ghost"]
"""


def bearer(token: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})


def signal(n: int, symbol: str, price: str, accounts: list[str]) -> NormalizedSignal:
    return NormalizedSignal(
        signal_id=f"acct-sig-{n}",
        source="generic",
        symbol=symbol,
        price=Decimal(price),
        received_at=datetime.now(UTC),
        correlation_id=f"acct-corr-{n}",
        accounts=accounts,
    )


@contextlib.asynccontextmanager
async def alpha_trades(url: str) -> AsyncIterator[None]:
    """alpha's authority and simulator in this process: one limit buy admitted and filled in alpha's journal;
    one signal routed to alpha, one to beta."""
    nc = await connect(url, "accounts-http-test")
    js = nc.jetstream()
    await ensure_streams(js)
    stop = asyncio.Event()
    engine = Engine(LiveClock(), EngineConfig(), fence=101)
    service = ExecSimService(js, engine, durables("alpha")[1], authority_key=TEST_AUTHORITY_KEY, account="alpha")
    authority = Authority(
        nc,
        js,
        key=TEST_AUTHORITY_KEY,
        limits=RiskLimits(max_position=Decimal(1000)),
        account="alpha",
        operator_token=TEST_OPERATOR_TOKEN,
        max_signal_age_s=10**9,
        fence=1,
        member="member-alpha",
    )
    await authority.start()
    tasks = [*start_consumers(js, service, stop, account="alpha"), *authority.tasks(stop)]
    try:
        for n, (symbol, price, account) in enumerate([("AAPL", "190", "alpha"), ("TSLA", "250", "beta")]):
            sig = signal(n, symbol, price, [account])
            await publish(js, Subject.SIGNALS_NORMALIZED, sig, msg_id=sig.signal_id, correlation_id=sig.correlation_id)
        command = OrderCommand(
            kind="place",
            account="alpha",
            symbol="MSFT",
            side="buy",
            quantity=Decimal(3),
            order_type="limit",
            limit_price=Decimal(50),
            time_in_force="GTC",
            client_order_id="alpha-order-1",
        )
        reply = await ask(nc, command)
        assert reply.code == "approved", reply
        await wait_for(lambda: authority.account.portfolio.quantity("MSFT") == Decimal(3), 10, "alpha's fill")
        yield
    finally:
        stop.set()
        await authority.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()


async def sees(base: str, token: str) -> dict[str, Any]:
    """What a client with `token` sees: positions, orders, signals, and the account every result names."""
    async with Client(streamable_http_client(f"{base}/mcp", http_client=bearer(token))) as client:
        results = {
            name: await client.call_tool(name, args)
            for name, args in [("get_positions", {}), ("list_orders", {"status": "all"}), ("list_signals", {})]
        }
        instructions = client.instructions or ""
    for name, result in results.items():
        assert not result.is_error, (name, result.content)
    return {
        "positions": [(p["symbol"], p["quantity"]) for p in results["get_positions"].structured_content["positions"]],
        "orders": [o["client_order_id"] for o in results["list_orders"].structured_content["orders"]],
        "signals": [s["symbol"] for s in results["list_signals"].structured_content["signals"]],
        "meta": {(r.meta or {}).get(ACCOUNT_META) for r in results.values()},
        "instructions": instructions,
    }


async def test_each_static_token_sees_only_the_account_it_acts_on_from_one_serve_process(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    (tmp_path / "accounts.toml").write_text(ACCOUNTS_TOML)
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml())
    env = _env(nats_server, TRADING_MCP_AUTH_TOKENS_FILE=str(tokens))
    args = ["--transport", "streamable-http", "--data-dir", str(tmp_path), "--account", "alpha"]
    async with alpha_trades(nats_server.url):
        with _serve_http(args, env, free_port()) as base:
            alpha = await sees(base, ALPHA_TOKEN)
            beta = await sees(base, BETA_TOKEN)
            async with httpx.AsyncClient() as http:
                ghost = await http.post(
                    f"{base}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {GHOST_TOKEN}"}
                )
                missing = await http.post(f"{base}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
                # a session opened with alpha's token is unknown to beta's server, and to beta's token
                opened = await http.post(
                    f"{base}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {ALPHA_TOKEN}"}
                )
                session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
                ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
                crossed = await http.post(
                    f"{base}/mcp",
                    json=ping,
                    headers={**MCP_HEADERS, **session, "authorization": f"Bearer {BETA_TOKEN}"},
                )
    assert alpha["positions"] == [("MSFT", "3")]
    assert alpha["orders"] == ["alpha-order-1"]
    assert alpha["signals"] == ["AAPL"]
    assert alpha["meta"] == {"alpha"} and "Account: alpha" in alpha["instructions"]
    assert beta["positions"] == [] and beta["orders"] == []
    assert beta["signals"] == ["TSLA"]
    assert beta["meta"] == {"beta"} and "Account: beta" in beta["instructions"]
    body = assert_problem(ghost, 403, "account_not_served")
    assert "'ghost'" in body["detail"] and "beta" not in body["detail"], "other accounts are not disclosed"
    assert_problem(missing, 401, "unauthorized")
    assert opened.status_code == 200
    assert crossed.status_code in (400, 404)


def test_a_wrong_tokens_file_stops_serve_with_its_code_the_file_and_the_entry_and_never_the_token(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml().replace('accounts = ["beta"]', 'accounts = ["not an id!"]'))
    env = _env(nats_server, TRADING_MCP_AUTH_TOKENS_FILE=str(tokens))
    args = [EXE, "serve", "--transport", "streamable-http", "--data-dir", str(tmp_path), "--port", str(free_port())]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "invalid_tokens_file" in done.stderr and str(tokens) in done.stderr
    assert "tokens[1] (beta-desk)" in done.stderr
    assert BETA_TOKEN not in done.stderr and ALPHA_TOKEN not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ('accounts = ["a"]', "give exactly one of token_sha256 (preferred) and token"),
        (f'token = "{BETA_TOKEN}"\ntoken_sha256 = "{sha256(BETA_TOKEN)}"\naccounts = ["a"]', "exactly one"),
        ('token_sha256 = "abc"\naccounts = ["a"]', "tokens[0] (desk).token_sha256"),
        ('token = "short"\naccounts = ["a"]', "tokens[0] (desk)"),
        (f'token = "{BETA_TOKEN}"\naccounts = []', "tokens[0] (desk).accounts"),
        (f'token = "{BETA_TOKEN}"\naccounts = ["a"]\nscopes = ["trading:everything"]', "unknown scopes"),
        (f'token = "{BETA_TOKEN}"\naccounts = ["a"]\npassword = "x"', "tokens[0] (desk).password"),
    ],
)
def test_a_wrong_tokens_file_entry_is_named_with_what_is_wrong(tmp_path: Path, entry: str, says: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(f'[[tokens]]\nname = "desk"\n{entry}\n')
    with pytest.raises(TokensFileError) as raised:
        load_tokens_file(path)
    message = str(raised.value)
    assert message.startswith(f"invalid_tokens_file: {path}: tokens[0] (desk)") and says in message
    assert BETA_TOKEN not in message and "short" not in message


def test_a_tokens_file_that_is_missing_unparsable_or_repeats_a_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="cannot read it"):
        load_tokens_file(tmp_path / "absent.toml")
    (broken := tmp_path / "broken.json").write_text("{")
    with pytest.raises(TokensFileError, match="not valid TOML/JSON"):
        load_tokens_file(broken)
    (twice := tmp_path / "twice.json").write_text(
        f'{{"tokens": [{{"token": "{ALPHA_TOKEN}", "accounts": ["a"]}}, '
        f'{{"token_sha256": "{sha256(ALPHA_TOKEN)}", "accounts": ["b"]}}]}}'
    )
    with pytest.raises(TokensFileError, match=r"tokens\[1\] \(tokens\[1\]\): the same token is listed twice"):
        load_tokens_file(twice)


async def whoami(ctx: Context) -> str:
    """Test-only tool: the account this request acts on and the accounts its caller holds."""
    held = held_accounts(ctx)
    return f"{acting_account(ctx)}|{','.join(held) if held is not None else '*'}"


def offline(account: str) -> AppState:
    return AppState(nc=None, js=None, account_id=account)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def served_offline(
    transport: str,
    tokens: list[Credential] | None = None,
    oauth: OAuthSettings | None = None,
    port: int = 0,
    clock: Clock | None = None,
) -> AsyncIterator[str]:
    """alpha (a fill) and beta (a signal) without a bus, one server each, behind one HTTP app."""
    alpha, beta = offline("alpha"), offline("beta")
    add_fill(alpha, 1, "buy", "5", "100")
    add_signal(beta, 1, symbol="TSLA", accounts=["beta"])
    servers = {}
    for state in (alpha, beta):
        servers[state.account_id] = build_server(state)
        servers[state.account_id].add_tool(whoami)
    port = port or free_port()
    settings = ServeSettings(data_dir=Path("."), port=port, transport=transport, account="alpha")  # type: ignore[arg-type]

    async def ready() -> dict[str, bool]:
        return {"nats": True}

    app = accounts_http_app(servers, settings, ready, oauth=oauth or OAuthSettings(), clock=clock, tokens=tokens or [])
    async with serve_uvicorn(app, port) as base:
        yield base


async def test_oauth_tokens_act_on_the_first_account_of_their_claim_and_without_one_are_refused() -> None:
    async with local_issuer() as issuer:
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        issuer.audience = resource
        oauth = OAuthSettings(issuer=issuer.url, jwks_url=f"{issuer.url}/jwks", resource_url=resource)
        async with served_offline("streamable-http", oauth=oauth, port=port, clock=issuer.clock) as base:
            seen = {}
            for label, claim in [("list", ["beta", "alpha"]), ("string", "alpha beta")]:
                token = issuer.token(sub=f"sub-{label}", trading_accounts=claim)
                async with Client(streamable_http_client(f"{base}/mcp", http_client=bearer(token))) as client:
                    positions = await client.call_tool("get_positions", {})
                    me = await client.call_tool("whoami", {})
                seen[label] = (positions.meta or {}).get(ACCOUNT_META), me.content[0].text, positions
            async with httpx.AsyncClient() as http:

                async def initialize(token: str) -> httpx.Response:
                    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
                    return await http.post(f"{base}/mcp", json=INITIALIZE, headers=headers)

                unclaimed = await initialize(issuer.token(sub="nobody"))
                bad_ids = await initialize(issuer.token(sub="odd", trading_accounts=["no such id!", 7]))
                unserved = await initialize(issuer.token(sub="ghost", trading_accounts=["ghost"]))
    assert seen["list"][:2] == ("beta", "beta|beta,alpha")
    assert seen["list"][2].structured_content["positions"] == []
    assert seen["string"][:2] == ("alpha", "alpha|alpha,beta")
    assert seen["string"][2].structured_content["positions"][0]["quantity"] == "5"
    body = assert_problem(unclaimed, 403, "no_account")
    assert "trading_accounts" in body["detail"]
    assert_problem(bad_ids, 403, "no_account")
    assert_problem(unserved, 403, "account_not_served")


async def test_the_accounts_claim_name_is_a_setting() -> None:
    async with local_issuer() as issuer:
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        issuer.audience = resource
        oauth = OAuthSettings(
            issuer=issuer.url, jwks_url=f"{issuer.url}/jwks", resource_url=resource, accounts_claim="desks"
        )
        async with served_offline("streamable-http", oauth=oauth, port=port, clock=issuer.clock) as base:
            token = issuer.token(sub="carol", desks=["beta"], trading_accounts=["alpha"])
            async with Client(streamable_http_client(f"{base}/mcp", http_client=bearer(token))) as client:
                me = await client.call_tool("whoami", {})
    assert me.content[0].text == "beta|beta"


async def test_over_sse_each_token_reaches_its_accounts_server_and_not_the_others_sessions() -> None:
    tokens = [
        Credential(hashlib.sha256(ALPHA_TOKEN.encode()).digest(), Principal("alpha-desk", None, ("alpha",))),
        Credential(hashlib.sha256(BETA_TOKEN.encode()).digest(), Principal("beta-desk", None, ("beta",))),
    ]
    async with served_offline("sse", tokens=tokens) as base:
        async with Client(sse_client(f"{base}/sse", headers={"authorization": f"Bearer {BETA_TOKEN}"})) as client:
            beta_signals = await client.call_tool("list_signals", {})
            beta_me = await client.call_tool("whoami", {})
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("GET", f"{base}/sse", headers={"authorization": f"Bearer {ALPHA_TOKEN}"}) as stream,
        ):
            endpoint = None
            async for line in stream.aiter_lines():
                if line.startswith("data:") and "session_id=" in line:
                    endpoint = line.removeprefix("data:").strip()
                    break
            assert endpoint is not None
            crossed = await http.post(
                f"{base}{endpoint}",
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={"authorization": f"Bearer {BETA_TOKEN}"},
            )
    assert [s["symbol"] for s in beta_signals.structured_content["signals"]] == ["TSLA"]
    assert (beta_signals.meta or {}).get(ACCOUNT_META) == "beta"
    assert beta_me.content[0].text == "beta|beta"
    assert crossed.status_code == 404


async def test_a_local_client_acts_on_the_servers_account_and_holds_every_account() -> None:
    server = build_server(offline("beta"))
    server.add_tool(whoami)
    async with Client(server) as client:
        me = await client.call_tool("whoami", {})
    assert me.content[0].text == "beta|*"
