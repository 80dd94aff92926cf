"""The agent of one account decides only on signals routed to it, under its own consumer, and records its
decisions under its account (two accounts' agents can trade the same alerts side by side)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from decisions.agent.service import DURABLE, AgentWorker, durable_of
from schemas.agent import AgentDecision
from schemas.signals import NormalizedSignal


class _Msg:
    def __init__(self, payload: Any) -> None:
        self.data = payload.model_dump_json().encode()
        self.metadata = None


class _NoLoop:
    """Any conversation would be a failure here."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the agent started a conversation ({name}) on a signal not routed to its account")


def _signal(accounts: list[str]) -> NormalizedSignal:
    return NormalizedSignal(
        signal_id="s1",
        source="generic",
        symbol="AAPL",
        price=Decimal(100),
        action="buy",
        received_at=datetime.now(UTC),
        correlation_id="c1",
        accounts=accounts,
    )


async def test_an_agent_ignores_signals_routed_to_other_accounts() -> None:
    worker = AgentWorker(js=None, loop=_NoLoop(), account="momo")  # type: ignore[arg-type]
    await worker.handle(_Msg(_signal(["meanrev"])))  # type: ignore[arg-type]
    assert worker.decided == set()


def test_each_account_has_its_own_agent_consumer_and_decisions() -> None:
    assert durable_of("paper") == DURABLE
    assert durable_of("momo") == f"{DURABLE}-momo" != durable_of("meanrev")
    worker = AgentWorker(js=None, loop=_NoLoop(), account="momo")  # type: ignore[arg-type]
    decision = AgentDecision(
        account="meanrev",
        decision_id="d1",
        signal_id="s1",
        symbol="AAPL",
        action="hold",
        rationale="",
        outcome="stale_signal",
        model="m",
        dry_run=True,
        tool_calls=0,
        input_tokens=0,
        output_tokens=0,
        decided_at=datetime.now(UTC),
        correlation_id="c1",
    )
    worker._remember(_Msg(decision))  # type: ignore[arg-type]
    assert worker.decided == set(), "another account's decision does not count as this agent's"
    worker._remember(_Msg(decision.model_copy(update={"account": "momo"})))  # type: ignore[arg-type]
    assert worker.decided == {"s1"}
