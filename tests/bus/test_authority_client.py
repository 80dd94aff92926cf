"""An authority that answers `authority_unavailable` (its journal append failed, it is handing the account over)
recorded nothing: `ask` raises, so the bridge does not ack the signal and it comes back, instead of taking the
answer for an outcome and dropping the signal (seen under kill -9 on a cluster: signals left with no outcome)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bus.authority_client import AuthorityUnavailable, ask
from bus.embedded import EmbeddedNats
from bus.jetstream import connect
from schemas.account import OrderCommand, OrderReply, request_subject
from schemas.risk import TradingState


async def test_an_authority_unavailable_answer_raises_and_a_decision_does_not(nats_server: EmbeddedNats) -> None:
    nc = await connect(nats_server.url, "client-test")
    answers = iter(["authority_unavailable", "max_position"])

    async def authority(msg) -> None:  # type: ignore[no-untyped-def]
        code = next(answers)
        reply = OrderReply(ok=False, code=code, message=f"{code} here", trading_state=TradingState.ACTIVE)
        await msg.respond(reply.model_dump_json().encode())

    await nc.subscribe(request_subject("momo"), cb=authority)
    command = OrderCommand(kind="place", account="momo", symbol="AAA", quantity=Decimal(1), client_order_id="c1")
    try:
        with pytest.raises(AuthorityUnavailable, match="authority_unavailable here"):
            await ask(nc, command)
        denied = await ask(nc, command)
        assert (denied.ok, denied.code) == (False, "max_position")
    finally:
        await nc.close()
