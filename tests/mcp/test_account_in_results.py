"""Every tool result names the account the tool acted on (`_meta`), and the server's instructions say which one:
a client bound to one account (its credential, `serve --account`) has no way to name another."""

from __future__ import annotations

from mcp import Client

from bus.account_view import AppState
from mcp_server.server import ACCOUNT_META, build_server
from tests.mcp.helpers import add_fill, add_signal


async def test_tool_results_and_instructions_name_the_servers_account() -> None:
    state = AppState(nc=None, js=None, account_id="momo")  # type: ignore[arg-type]
    add_signal(state, 1, accounts=["momo"])
    add_fill(state, 1, "buy", "2", "190")
    async with Client(build_server(state)) as client:
        assert "Account: momo" in (client.instructions or "")
        tools = await client.list_tools()
        assert all("account" not in (t.input_schema.get("properties") or {}) for t in tools.tools), (
            "no tool takes an account: the credential decides it"
        )
        result = await client.call_tool("get_positions", {})
        assert not result.is_error
        assert (result.meta or {}).get(ACCOUNT_META) == "momo"
        failed = await client.call_tool("get_market_snapshot", {"symbol": "NOPE"})
        assert failed.is_error


def test_an_account_view_takes_only_the_signals_routed_to_it() -> None:
    import asyncio

    from schemas.signals import NormalizedSignal
    from tests.mcp.helpers import CLOCK

    state = AppState(nc=None, js=None, account_id="momo")  # type: ignore[arg-type]

    class Msg:
        def __init__(self, signal: NormalizedSignal) -> None:
            self.data = signal.model_dump_json().encode()

    def signal(n: int, accounts: list[str]) -> NormalizedSignal:
        return NormalizedSignal(
            signal_id=f"s{n}",
            source="generic",
            symbol="AAPL",
            price=100 + n,  # type: ignore[arg-type]
            received_at=CLOCK.now(),
            correlation_id=f"c{n}",
            accounts=accounts,
        )

    asyncio.run(state._on_signal(Msg(signal(1, ["meanrev"]))))  # type: ignore[arg-type]
    asyncio.run(state._on_signal(Msg(signal(2, ["momo", "meanrev"]))))  # type: ignore[arg-type]
    assert [s.signal_id for s in state.signals.recent(10)] == ["s2"]
