"""Several accounts on one bus, each with its own authority and simulator (in-process, a real nats-server): the
journals are separate streams, so concurrent appends of two accounts never conflict; everything an account's
authority publishes or journals names that account and the owner's fence; a signal marks only the accounts it
is routed to; a report or fill from a simulator owner older than the newest one is void."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

from authority.service import Authority
from bus.authority_client import ask
from bus.embedded import EmbeddedNats
from bus.jetstream import connect, ensure_streams, publish
from bus.journal import JournalFollower, journal_accounts
from execsim.engine import Engine, EngineConfig
from execsim.service import ExecSimService, durables, start_consumers
from schemas.account import AccountEvent, OrderCommand, journal_stream
from schemas.orders import Fill, OrderIntent, SimulatorOwner
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tests.conftest import wait_for
from tests.mcp.helpers import TEST_AUTHORITY_KEY, TEST_OPERATOR_TOKEN
from tools.account import Account
from tools.clock import LiveClock
from tools.risk import RiskLimits

ACCOUNTS = {"alpha": 11, "beta": 22}  # account -> the authority's fence


@contextlib.asynccontextmanager
async def accounts(url: str) -> AsyncIterator[tuple[dict[str, Authority], dict[str, Engine], object]]:
    nc = await connect(url, "accounts-test")
    js = nc.jetstream()
    await ensure_streams(js)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    authorities: dict[str, Authority] = {}
    engines: dict[str, Engine] = {}
    for account, fence in ACCOUNTS.items():
        engine = Engine(LiveClock(), EngineConfig(), fence=fence + 100)
        service = ExecSimService(js, engine, durables(account)[1], authority_key=TEST_AUTHORITY_KEY, account=account)
        authority = Authority(
            nc,
            js,
            key=TEST_AUTHORITY_KEY,
            limits=RiskLimits(max_position=Decimal(1000)),
            account=account,
            operator_token=TEST_OPERATOR_TOKEN,
            max_signal_age_s=10**9,
            fence=fence,
            member=f"member-{account}",
        )
        await authority.start()
        tasks += [*start_consumers(js, service, stop, account=account), *authority.tasks(stop)]
        authorities[account], engines[account] = authority, engine
    try:
        yield authorities, engines, js
    finally:
        stop.set()
        for authority in authorities.values():
            await authority.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()


async def journal(js, account: str) -> list[AccountEvent]:  # type: ignore[no-untyped-def]
    events: list[AccountEvent] = []
    follower = JournalFollower(js, lambda _seq, event: events.append(event), account)
    await follower.start()
    await asyncio.wait_for(follower.caught_up.wait(), 10)
    await follower.stop()
    return events


async def test_two_accounts_trade_side_by_side_without_journal_conflicts(nats_server: EmbeddedNats) -> None:
    async with accounts(nats_server.url) as (authorities, engines, js):
        signal = NormalizedSignal(
            signal_id="mark-1",
            source="generic",
            symbol="AAPL",
            price=Decimal(100),
            received_at=datetime.now(UTC),
            correlation_id="c1",
            accounts=["alpha"],  # routed to alpha only
        )
        await publish(js, Subject.SIGNALS_NORMALIZED, signal, msg_id="mark-1", correlation_id="c1")
        await wait_for(lambda: authorities["alpha"].account.prices.get("AAPL") == Decimal(100), 10, "alpha's mark")
        assert "AAPL" not in authorities["beta"].account.prices, "beta is not fed by that signal"

        # the same client order ids in both accounts, all at once: neither account's appends disturb the other's
        commands = [
            OrderCommand(
                kind="place",
                account=account,
                symbol="MSFT",
                side="buy",
                quantity=Decimal(1),
                order_type="limit",
                limit_price=Decimal(50),
                time_in_force="GTC",
                client_order_id=f"same-{i}",
            )
            for i in range(40)
            for account in ACCOUNTS
        ]
        replies = await asyncio.gather(*(ask(authorities["alpha"].nc, c) for c in commands))
        assert [r.code for r in replies] == ["approved"] * len(commands)

        for account, fence in ACCOUNTS.items():
            await wait_for(  # no market price yet: each limit order fills at its own price, in its account alone
                lambda a=account: authorities[a].account.portfolio.quantity("MSFT") == Decimal(40),
                10,
                f"{account}'s 40 fills",
            )
            events = await journal(js, account)
            owners = [e.owner for e in events if e.kind == "owner"]
            assert owners and owners[0] is not None and owners[0].fence == fence
            assert events[0].kind == "owner", "a new owner names itself before it decides anything"
            intents = [e.intent for e in events if e.kind == "admitted"]
            assert len(intents) == 40
            assert all(i is not None and i.account == account and i.fence == fence for i in intents)
            assert authorities[account].account.open_order_count() == 0
            assert len([e for e in events if e.kind == "fill"]) == 40
            assert {e.fill.account for e in events if e.fill is not None} == {account}
        assert await journal_accounts(js) == ["alpha", "beta"]
        assert journal_stream("alpha") != journal_stream("beta")

        # the DECISIONS stream holds 80 intents: two per client order id, one per account
        intents_seen: list[OrderIntent] = []
        sub = await js.subscribe(Subject.ORDER_INTENT.value, ordered_consumer=True)
        for _ in range(80):
            msg = await sub.next_msg(timeout=5)
            intents_seen.append(OrderIntent.model_validate_json(msg.data))
            assert msg.headers and msg.headers.get("Trading-Account") == intents_seen[-1].account
        await sub.unsubscribe()
        assert sorted({(i.account, i.client_order_id) for i in intents_seen}) == sorted(
            (c.account, c.client_order_id) for c in commands
        )


async def test_a_fill_from_a_stale_simulator_owner_is_void(nats_server: EmbeddedNats) -> None:
    async with accounts(nats_server.url) as (authorities, _engines, js):
        alpha = authorities["alpha"]
        reply = await ask(
            alpha.nc,
            OrderCommand(
                kind="place",
                account="alpha",
                symbol="MSFT",
                side="buy",
                quantity=Decimal(5),
                order_type="stop",
                stop_price=Decimal(500),
                time_in_force="GTC",
                client_order_id="resting",
            ),
        )
        assert reply.ok

        def fill(n: int, fence: int) -> Fill:
            return Fill(
                account="alpha",
                fence=fence,
                fill_id=f"resting.x{n}",
                client_order_id="resting",
                symbol="MSFT",
                side="buy",
                quantity=Decimal(1),
                price=Decimal(50),
                fee=Decimal(0),
                ts=datetime.now(UTC),
                correlation_id="resting",
            )

        newest = ACCOUNTS["alpha"] + 100
        await publish(js, Subject.EXECUTION_FILL, fill(1, newest + 5), msg_id="x1", correlation_id="x1")
        await wait_for(lambda: alpha.account.portfolio.knows_fill("resting.x1"), 10, "the newer owner's fill")
        assert alpha.account.execsim_fence == newest + 5
        await publish(js, Subject.EXECUTION_FILL, fill(2, newest), msg_id="x2", correlation_id="x2")  # stale
        await publish(js, Subject.EXECUTION_FILL, fill(3, newest + 5), msg_id="x3", correlation_id="x3")
        await wait_for(lambda: alpha.account.portfolio.knows_fill("resting.x3"), 10, "the fill after it")
        assert not alpha.account.portfolio.knows_fill("resting.x2"), "a stale simulator owner's fill is void"
        # a newer owner whose first word is a repeat (a fill the account has) still raises the bar: which events are
        # void depends on EXECUTIONS' order alone, as the simulator's rebuild (`execsim.fold`) sees it
        again = fill(3, newest + 9).model_copy(update={"quantity": Decimal(2)})
        await publish(js, Subject.EXECUTION_FILL, again, msg_id="x3-again", correlation_id="x3")
        await wait_for(lambda: alpha.account.execsim_fence == newest + 9, 10, "the repeat's newer fence journaled")
        await publish(js, Subject.EXECUTION_FILL, fill(4, newest + 5), msg_id="x4", correlation_id="x4")  # stale
        await publish(js, Subject.EXECUTION_FILL, fill(5, newest + 9), msg_id="x5", correlation_id="x5")
        await wait_for(lambda: alpha.account.portfolio.knows_fill("resting.x5"), 10, "the fill after it")
        assert not alpha.account.portfolio.knows_fill("resting.x4")
        # a new simulator owner's marker (stored when it takes the account, before it rebuilds) raises the bar alone
        marker = SimulatorOwner(account="alpha", fence=newest + 12, member="sim-new", ts=datetime.now(UTC))
        await publish(js, Subject.EXECUTION_OWNER, marker, msg_id="owner-12", correlation_id="owner")
        await wait_for(lambda: alpha.account.execsim_fence == newest + 12, 10, "the marker's fence journaled")
        await publish(js, Subject.EXECUTION_FILL, fill(6, newest + 9), msg_id="x6", correlation_id="x6")  # stale
        await publish(js, Subject.EXECUTION_FILL, fill(7, newest + 12), msg_id="x7", correlation_id="x7")
        await wait_for(lambda: alpha.account.portfolio.knows_fill("resting.x7"), 10, "the fill after it")
        assert not alpha.account.portfolio.knows_fill("resting.x6"), "void: older than the new owner's marker"
        fills = [e.fill.fill_id for e in await journal(js, "alpha") if e.kind == "fill" and e.fill]
        assert fills.count("resting.x3") == 1 and "resting.x4" not in fills, "the repeat is journaled once, x4 never"
        assert "resting.x6" not in fills and "resting.x7" in fills
        folded = Account(account_id="alpha")
        for i, event in enumerate(await journal(js, "alpha"), 1):
            folded.apply(event, i)
        assert folded.portfolio.quantity("MSFT") == alpha.account.portfolio.quantity("MSFT")
        assert not folded.portfolio.knows_fill("resting.x2")


async def test_the_accounts_toolset_compares_the_accounts_from_their_journals(nats_server: EmbeddedNats) -> None:
    from mcp import Client

    from bus.account_view import AppState
    from mcp_server.server import build_server

    async with accounts(nats_server.url) as (authorities, _engines, js):
        for account, quantity in (("alpha", 3), ("beta", 1)):
            reply = await ask(
                authorities[account].nc,
                OrderCommand(
                    kind="place",
                    account=account,
                    symbol="MSFT",
                    side="buy",
                    quantity=Decimal(quantity),
                    order_type="limit",
                    limit_price=Decimal(50),
                    client_order_id=f"cmp-{account}",
                ),
            )
            assert reply.ok
        for account, quantity in (("alpha", 3), ("beta", 1)):
            await wait_for(
                lambda a=account, q=quantity: authorities[a].account.portfolio.quantity("MSFT") == q, 10, "fills"
            )
        state = AppState(authorities["alpha"].nc, js, account_id="alpha")
        await state.start()
        try:
            async with Client(build_server(state, toolsets_enabled=["accounts"])) as client:
                result = await client.call_tool("compare_accounts", {})
                assert not result.is_error, result.content
                rows = {row["account"]: row for row in result.structured_content["accounts"]}
                assert set(rows) == {"alpha", "beta"}, "a local caller holds every account with a journal"
                assert (rows["alpha"]["orders"], rows["beta"]["orders"]) == (1, 1)
                assert (rows["alpha"]["fills"], rows["beta"]["fills"]) == (1, 1)
                assert (result.meta or {}).get("trading-mcp/account") == "alpha"
                bad = await client.call_tool("compare_accounts", {"start": "yesterday"})
                assert bad.is_error and "invalid_arguments" in bad.content[0].text  # type: ignore[union-attr]
                resource = await client.read_resource("accounts://comparison")
                assert '"alpha"' in resource.contents[0].text and '"beta"' in resource.contents[0].text  # type: ignore[union-attr]
        finally:
            await state.stop()
