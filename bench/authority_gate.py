"""The authority's admission cost with history behind it: checks and place+fold per second after 0, 10k and 100k
orders. Prints numbers, asserts nothing.

    .venv/bin/python bench/authority_gate.py            # 0 / 10k / 100k orders of history
    .venv/bin/python bench/authority_gate.py --history 0 20000

Each history order is admitted, reported and filled (a closed round trip every two), as the journal folds it,
with a mark between orders; a few orders stay resting on several symbols. Then, timed: `decide(check)` (the
dry run behind check_order / preview_order) and `decide(place)` + `apply` (the journaled admission) on the
same account. Flat figures across the history sizes mean the gate does not walk history.
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.account import AccountEvent, Mark, OrderCommand
from schemas.orders import Fill, OrderEvent
from schemas.risk import RiskLimits, paper_defaults
from tools.account import Account

D = Decimal
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SYMBOLS = ["AAPL", "MSFT", "IBM", "GOOG", "CNF", "XOM", "JPM", "KO"]


def build(history: int) -> tuple[Account, datetime]:
    # every paper default on (so every rule is evaluated), sized so that nothing here is denied
    limits = RiskLimits.model_validate(
        {**paper_defaults(), "max_position": D(10) ** 9, "max_gross_exposure": D(10) ** 12, "max_open_orders": 10**6}
        | {"max_orders_per_window": 10**7, "order_window_seconds": 86_400}
    )
    acct = Account()
    now = T0
    acct.apply(AccountEvent(kind="control", ts=now, control={"limits": limits}))  # type: ignore[arg-type]
    for sym in SYMBOLS:
        acct.apply(AccountEvent(kind="mark", ts=now, mark=Mark(symbol=sym, price=D(100), ts=now)))
    for i in range(history):
        now += timedelta(milliseconds=50)
        sym = SYMBOLS[i % len(SYMBOLS)]
        price = D(100) + D(i % 13)
        acct.apply(AccountEvent(kind="mark", ts=now, mark=Mark(symbol=sym, price=price, ts=now)))
        side = "buy" if (i // len(SYMBOLS)) % 2 == 0 else "sell"
        cmd = OrderCommand(kind="place", symbol=sym, side=side, quantity=D(1), client_order_id=f"h{i}", origin="bridge")
        decision = acct.decide(cmd, now, 10**9)
        assert decision.event is not None and decision.event.kind == "admitted", decision.reply
        acct.apply(decision.event)
        intent = decision.event.intent
        assert intent is not None
        for status, filled in (("accepted", D(0)), ("filled", D(1))):
            report = OrderEvent(
                event_id=f"h{i}.{status}",
                client_order_id=intent.client_order_id,
                symbol=sym,
                side=intent.side,
                status=status,  # type: ignore[arg-type]
                quantity=D(1),
                filled_quantity=filled,
                ts=now,
                correlation_id="bench",
            )
            if status == "filled":
                fill = Fill(
                    fill_id=f"h{i}.f1",
                    client_order_id=intent.client_order_id,
                    symbol=sym,
                    side=intent.side,
                    quantity=D(1),
                    price=price,
                    fee=D("0.01"),
                    ts=now,
                    correlation_id="bench",
                )
                acct.apply(AccountEvent(kind="fill", ts=now, fill=fill))
            acct.apply(AccountEvent(kind="report", ts=now, report=report))
    for j, sym in enumerate(SYMBOLS):  # a few resting orders on each symbol, both sides
        for side, px in (("buy", D(50)), ("sell", D(200))):
            cmd = OrderCommand(
                kind="place", symbol=sym, side=side, quantity=D(3), order_type="limit", limit_price=px,
                time_in_force="GTC", client_order_id=f"rest-{j}-{side}", origin="mcp",
            )  # fmt: skip
            event = acct.decide(cmd, now, 10**9).event
            assert event is not None and event.kind == "admitted"
            acct.apply(event)
    return acct, now


def rate(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    gc.collect()
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history", type=int, nargs="*", default=[0, 10_000, 100_000])
    parser.add_argument("--n", type=int, default=2_000, help="timed operations per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the accounts (best kept)")
    args = parser.parse_args()
    accounts = []
    for history in args.history:
        started = time.perf_counter()
        acct, now = build(history)
        accounts.append((history, acct, now, time.perf_counter() - started))
        print(f"built {history} orders of history in {accounts[-1][3]:.1f} s", flush=True)
    check = OrderCommand(kind="check", symbol="AAPL", side="buy", quantity=D(5), origin="mcp")
    best: dict[int, list[float]] = {h: [0.0, 0.0] for h, *_ in accounts}
    for round_ in range(args.rounds):  # alternate, so machine noise hits every history size alike
        for history, acct, now, _ in accounts:
            assert acct.decide(check, now, 10**9).reply.ok
            checks = rate(lambda i, a=acct, t=now: a.decide(check, t, 10**9), args.n)

            def place(i: int, a: Account = acct, t: datetime = now, h: int = history, r: int = round_) -> None:
                cmd = OrderCommand(
                    kind="place", symbol=SYMBOLS[i % 8], side="buy" if i % 2 else "sell", quantity=D(1),
                    order_type="limit", limit_price=D(90), time_in_force="GTC", client_order_id=f"t{h}-{r}-{i}",
                    origin="mcp",
                )  # fmt: skip
                event = a.decide(cmd, t, 10**9).event
                assert event is not None and event.kind == "admitted", a.decide(cmd, t, 10**9).reply
                a.apply(event)

            places = rate(place, args.n)
            best[history] = [max(best[history][0], checks), max(best[history][1], places)]
    print(f"{'history':>8} {'orders kept':>11} {'working':>7} {'check/s':>9} {'place+fold/s':>12} {'vs empty':>9}")
    base = best[accounts[0][0]][0]
    for history, acct, _, _ in accounts:
        checks, places = best[history]
        print(
            f"{history:>8} {len(acct.orders):>11} {acct.open_order_count():>7} {checks:>9.0f} {places:>12.0f} "
            f"{checks / base:>9.2f}"
        )
    print(f"(pure core, one process, best of {args.rounds} alternating rounds; each round adds --n resting orders)")


if __name__ == "__main__":
    main()
