"""A simulator that loses its lease while it publishes, against a real nats-server: its batch is not acked (the new
owner gets those intents), the new owner's events are stored even where the old owner's void ones carry the same
ids, and a rebuild ignores the void ones as the authority does (an older fence than an earlier event of the
account), so a takeover neither loses an order nor leaves it working for ever. The new owner announces itself
(`executions.owner`) before it reads the streams, so an old owner's late event is either in its rebuild or void,
never valid and unknown to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import nats.js
import pytest
from nats.aio.msg import Msg

from bus.jetstream import publish
from execsim.engine import Engine, EngineConfig
from execsim.fold import StreamFold
from execsim.service import ExecSimService, FinishedOrders, NotOwner, rebuild, take_over
from schemas.orders import OrderIntent
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tests.execsim.process_helpers import read_stream, signal
from tools.clock import LiveClock

D = Decimal
OLD, NEW = 3, 7  # the fences of the simulator that lost the lease and of the one that took it


def intent(coid: str) -> OrderIntent:
    return OrderIntent(
        account="alpha",
        client_order_id=coid,
        symbol="AAPL",
        side="buy",
        quantity=D(2),
        order_type="market",
        time_in_force="GTC",
        reference_price=D(100),
        origin="mcp",
        created_at=datetime.now(UTC),
        correlation_id=f"corr-{coid}",
    )


def bar(price: str) -> NormalizedSignal:
    return signal("AAPL", price).model_copy(update={"accounts": ["alpha"]})


def msg(subject: Subject, model: OrderIntent | NormalizedSignal) -> Msg:
    """A delivered message as the service reads it (subject, bytes, headers)."""
    return Msg(None, subject=subject.value, data=model.model_dump_json().encode())  # type: ignore[arg-type]


def owner_until(calls: int) -> tuple[list[int], object]:
    """A `still_owner` that holds the lease for its first `calls` answers, then not."""
    asked = [0]

    def still_owner(account: str) -> bool:
        asked[0] += 1
        return asked[0] <= calls

    return asked, still_owner


def simulator(js: nats.js.JetStreamContext, fence: int, still_owner: object = None) -> ExecSimService:
    engine = Engine(LiveClock(), EngineConfig(), fence=fence)
    return ExecSimService(js, engine, account="alpha", still_owner=still_owner)  # type: ignore[arg-type]


async def test_a_lease_lost_while_publishing_hands_the_batch_over_and_the_new_owner_is_not_swallowed(
    js: nats.js.JetStreamContext,
) -> None:
    for coid in ("a", "x"):  # stored as the authority stores them (a rebuild reads the intents from DECISIONS)
        await publish(js, Subject.ORDER_INTENT, intent(coid), msg_id=f"alpha:{coid}", correlation_id=coid)
    new = simulator(js, NEW)
    await new.handle_batch([msg(Subject.SIGNALS_NORMALIZED, bar("100")), msg(Subject.ORDER_INTENT, intent("a"))])

    # the old owner still believed it held the lease when its batch began; by the time its events were stored it
    # no longer did (the new owner had spoken already): the batch must not be acked
    asked, still_owner = owner_until(1)
    old = simulator(js, OLD, still_owner)
    with pytest.raises(NotOwner):
        await old.handle_batch([msg(Subject.SIGNALS_NORMALIZED, bar("101")), msg(Subject.ORDER_INTENT, intent("x"))])
    assert asked[0] == 2, "ownership is asked again after the publish, before the ack"

    # so the intent comes to the new owner, which fills it at its own price: stored beside the void fill of the
    # same id, not deduplicated away (the message id carries the fence)
    await new.handle_batch([msg(Subject.SIGNALS_NORMALIZED, bar("105")), msg(Subject.ORDER_INTENT, intent("x"))])
    fills = [json.loads(d) for s, d in await read_stream(js, "EXECUTIONS", Subject.EXECUTION_FILL.value)]
    of_x = [(f["fill_id"], f["fence"], D(f["price"])) for f in fills if f["client_order_id"] == "x"]
    assert of_x == [("x.f1", OLD, D(101)), ("x.f1", NEW, D(105))]

    # a rebuild (a restart, the next takeover) counts the new owner's fill, not the void one
    engine = Engine(LiveClock(), EngineConfig(), fence=NEW + 1)
    fold = StreamFold("alpha")
    await rebuild(js, engine, account="alpha", fold=fold)
    x = engine.order("x")
    assert x is not None and (x.status, x.filled, x.fills, x.notional) == ("filled", D(2), 1, D(210))
    assert fold.fences == {"alpha": NEW}
    assert StreamFold.from_snapshot(json.loads(json.dumps(fold.to_snapshot()))).fences == {"alpha": NEW}


async def test_a_takeover_announces_itself_before_it_reads_so_a_late_event_of_the_old_owner_is_in_it_or_void(
    js: nats.js.JetStreamContext,
) -> None:
    """Without the marker, an old owner's fill stored after the new owner's rebuild read the streams but before the
    new owner's first event would be valid yet unknown to the new owner, which would fill the order again under the
    same fill id (the authority keeps the first: a different price or quantity than the simulator's)."""
    for coid in ("early", "late"):
        await publish(js, Subject.ORDER_INTENT, intent(coid), msg_id=f"alpha:{coid}", correlation_id=coid)
    old = simulator(js, OLD)
    await old.handle_batch([msg(Subject.SIGNALS_NORMALIZED, bar("100")), msg(Subject.ORDER_INTENT, intent("early"))])

    # the new owner takes the account: its marker is stored, then it rebuilds (the old owner's "early" fill is in it)
    engine = Engine(LiveClock(), EngineConfig(), fence=NEW)
    fold, known = await take_over(js, engine, "alpha", "sim-new", None, None, FinishedOrders())
    assert known == 1 and fold.fences == {"alpha": NEW}
    early = engine.order("early")
    assert early is not None and (early.status, early.notional) == ("filled", D(200))
    new = ExecSimService(js, engine, account="alpha")

    # the old owner's batch began while it held the lease; its fill of "late" is stored after the marker: void
    asked, still_owner = owner_until(1)
    old.still_owner = still_owner  # type: ignore[assignment]
    with pytest.raises(NotOwner):
        await old.handle_batch([msg(Subject.SIGNALS_NORMALIZED, bar("101")), msg(Subject.ORDER_INTENT, intent("late"))])

    # the redelivered batch: "early" is known (no second fill), "late" is filled by the new owner at its price
    await new.handle_batch(
        [
            msg(Subject.SIGNALS_NORMALIZED, bar("105")),
            msg(Subject.ORDER_INTENT, intent("early")),
            msg(Subject.ORDER_INTENT, intent("late")),
        ]
    )
    stored = await read_stream(js, "EXECUTIONS", "executions.>")
    owners = [json.loads(d) for s, d in stored if s == Subject.EXECUTION_OWNER.value]
    assert [(o["account"], o["fence"], o["member"]) for o in owners] == [("alpha", NEW, "sim-new")]
    fills = [json.loads(d) for s, d in stored if s == Subject.EXECUTION_FILL.value]
    assert [(f["fill_id"], f["fence"], D(f["price"])) for f in fills] == [
        ("early.f1", OLD, D(100)),
        ("late.f1", OLD, D(101)),  # void: after the new owner's marker
        ("late.f1", NEW, D(105)),
    ]
    again = Engine(LiveClock(), EngineConfig(), fence=NEW + 1)
    await rebuild(js, again, account="alpha")
    late = again.order("late")
    assert late is not None and (late.status, late.fills, late.notional) == ("filled", 1, D(210))


def test_the_fold_voids_what_the_authority_voids() -> None:
    """An older fence than an earlier event of the account is void, whatever the event (a duplicate, a report of
    another order); a newer fence raises the bar for what follows; other accounts have their own bar."""
    fold = StreamFold("alpha")

    def fill(seq: int, coid: str, n: int, fence: int, price: str, account: str = "alpha") -> None:
        doc = {
            "account": account,
            "client_order_id": coid,
            "fill_id": f"{coid}.f{n}",
            "fence": fence,
            "quantity": "1",
            "price": price,
        }
        fold.absorb_execution(seq, Subject.EXECUTION_FILL.value, json.dumps(doc).encode())

    def report(seq: int, coid: str, fence: int, status: str = "accepted", account: str = "alpha") -> None:
        doc = {"account": account, "client_order_id": coid, "event_id": f"{coid}.{status}", "fence": fence}
        fold.absorb_execution(seq, Subject.EXECUTION_REPORT.value, json.dumps({**doc, "status": status}).encode())

    fill(1, "a", 1, OLD, "100")
    report(2, "b", NEW)  # the new owner speaks (about another order)
    fill(3, "a", 2, OLD, "101")  # void: the old owner, after it
    report(4, "c", OLD, account="beta")  # not this fold's account: no bar for it
    fill(5, "a", 2, NEW, "102")
    assert (fold.records["a"].fills, fold.records["a"].notional) == (2, D(202))
    assert fold.fences == {"alpha": NEW}
    assert fold.exec_seq == 5
    # a new owner's marker raises the bar before it says anything else; a stale marker changes nothing
    marker = {"account": "alpha", "fence": NEW + 2, "member": "sim", "ts": "2026-12-05T00:00:00Z"}
    fold.absorb_execution(6, Subject.EXECUTION_OWNER.value, json.dumps(marker).encode())
    fold.absorb_execution(7, Subject.EXECUTION_OWNER.value, json.dumps({**marker, "fence": OLD}).encode())
    fill(8, "a", 3, NEW, "103")  # void: older than the marker
    assert fold.fences == {"alpha": NEW + 2} and fold.records["a"].fills == 2 and fold.exec_seq == 8
