"""The account authority as a state machine: random orders, cancels, bars with gaps, limit changes,
loss-limit marks, kill switch, resume and restarts, over the real Account, RiskGate, Portfolio and
matching engine. After every step the invariants below hold.

- Admission: nothing is admitted while HALTED; in REDUCING every admission obeys the gate's rule
  (a buy needs a short that the order and every resting buy cannot flip; a sell the mirror), and while
  the account is not ACTIVE the worst-case position of every symbol never grows past what it was when
  the account left ACTIVE.
- Position limit: at admission the order's side's worst case (position plus every resting order of that
  side, plus this one) stays within max(limit in force, that worst case before). Fills never raise the
  worst case, so a buy's fill keeps the position at or below the bound of the latest buy admitted for the
  symbol, a sell's at or above minus the latest sell's bound. Without later admissions that bound is the
  limit in force when the filled order was admitted (or the position it only shrank).
- Notional: a fill at admission (the market the gate valued it at) is within the notional cap in force
  then, times 1 + the engine's slippage; a buy limit never fills above its limit. (A later fill after a
  gap is the market's move, not the gate's.)
- Projection: the account equals what the engine holds (open orders, remaining per side), a reader that
  folds the journal as it grows, and (on restart) an account folded afresh from the whole journal.

`make test` runs 200 derandomized examples. The long exploration:
`HYPOTHESIS_PROFILE=nightly .venv/bin/python -m pytest --timeout=0 tests/tools/test_account_state_machine.py`
(docs/RUNBOOK.md, "Nightly property run").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from execsim.engine import Engine, EngineConfig
from schemas.account import AccountEvent, Mark, OrderCommand
from schemas.market import Bar
from schemas.orders import Fill
from schemas.risk import RiskLimits, TradingState
from tools.account import Account
from tools.clock import TestClock
from tools.risk import RiskGate

D = Decimal
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SYMBOLS = ("AAA", "BBB")
SLIPPAGE_BPS = D(20)
SLIP = 1 + SLIPPAGE_BPS / 10_000
QUANTUM = D("0.0001")  # the engine's price tick
CENT = D("0.01")
BASE = RiskLimits(
    max_position=D(50),
    max_order_notional=D(4000),
    max_open_orders=8,
    daily_loss_limit=D(400),
    max_drawdown=D("0.03"),
)

settings.register_profile(
    "nightly", max_examples=5000, stateful_step_count=30, derandomize=False, deadline=None, print_blob=True
)
QUICK = settings(max_examples=200, stateful_step_count=30, derandomize=True, deadline=None)


@dataclass(frozen=True)
class Admission:
    symbol: str
    side: str
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    notional_cap: Decimal | None


def cents(value: Decimal) -> Decimal:
    return max(CENT, value.quantize(CENT, ROUND_HALF_EVEN))


def projection(a: Account, now: datetime) -> dict[str, Any]:
    g = a.gate
    return {
        "positions": {s: (p.quantity, p.avg_price, p.realized_pnl, p.fees) for s, p in a.portfolio.positions.items()},
        "cash": a.portfolio.cash,
        "orders": a.orders,
        "open": {v.client_order_id: v.quantity - v.filled_quantity for v in a.open_orders()},
        "working": {c: (w.symbol, w.side, w.remaining) for c, w in a.working.items()},
        "resting": a.resting,
        "state": (g.state, g.state_reason),
        "limits": g.limits,
        "peak": g.peak_equity,
        "day_start": g.day_start_equity,
        "in_window": a.orders_in_window(now),
        "prices": a.prices,
        "seq": a.seq,
    }


class AccountMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = TestClock(START)
        self.engine = Engine(self.clock, EngineConfig(slippage_bps=SLIPPAGE_BPS, participation=D("0.5")))
        self.account = Account(gate=RiskGate(RiskLimits(), self.clock))  # BASE comes in the first control
        self.reader = Account(gate=RiskGate(RiskLimits(), self.clock))
        self.journal: list[AccountEvent] = []
        self.admitted: dict[str, Admission] = {}
        self.bound: dict[tuple[str, str], Decimal] = {}  # (symbol, side) -> bound of the latest admission
        self.restricted: dict[str, Decimal] | None = None  # worst positions when the account left ACTIVE
        self.submitting: str | None = None
        self.n = 0

    # ------------------------------------------------------------------ the authority's loop

    def record(self, event: AccountEvent) -> None:
        a = self.account
        if event.kind == "admitted":
            self._check_admission(event)
        was = a.gate.state
        self.journal.append(event)
        a.apply(event, len(self.journal))
        self.reader.apply(event, len(self.journal))
        if event.kind == "fill":
            self._check_fill(event)
        if was is TradingState.ACTIVE and a.gate.state is not TradingState.ACTIVE:
            self.restricted = {s: a.worst_position(s) for s in SYMBOLS}
        elif a.gate.state is TradingState.ACTIVE:
            self.restricted = None

    def feed(self, events: list[Any]) -> None:
        for e in events:
            kind = "fill" if isinstance(e, Fill) else "report"
            self.record(AccountEvent(kind=kind, ts=self.clock.now(), **{kind: e}))

    def send(self, command: OrderCommand) -> None:
        decision = self.account.decide(command, self.clock.now())
        event = decision.event
        if event is None:
            return
        self.record(event)
        if event.intent is not None:
            self.submitting = event.intent.client_order_id
            self.feed(self.engine.submit(event.intent))
            self.submitting = None
        elif event.cancel is not None:
            self.feed(self.engine.cancel(event.cancel.client_order_id, event.cancel.reason))

    def mark(self, symbol: str, price: Decimal) -> None:
        now = self.clock.now()
        self.feed(self.engine.set_price(symbol, price, now))
        self.record(AccountEvent(kind="mark", ts=now, mark=Mark(symbol=symbol, price=price, ts=now)))

    def control(self, limits: RiskLimits, state: TradingState | None = None, reason: str = "") -> None:
        event = self.account.control_event(limits, self.clock.now(), state=state, reason=reason)
        if event is not None:
            self.record(event)

    # ------------------------------------------------------------------ checks on each event

    def _check_admission(self, event: AccountEvent) -> None:
        intent = event.intent
        assert intent is not None
        a = self.account
        state = a.gate.state
        assert state is not TradingState.HALTED, f"{intent.client_order_id} admitted while HALTED"
        sym, q, buy = intent.symbol, intent.quantity, intent.side == "buy"
        pos = a.position(sym)
        buys, sells = a.resting_of(sym)
        before = pos + buys if buy else pos - sells
        after = before + q if buy else before - q
        if state is TradingState.REDUCING:
            assert (pos < 0 and after <= 0) if buy else (pos > 0 and after >= 0), "REDUCING admitted a growing order"
        limit = a.gate.limits.position_limit(sym)
        bound = max(limit, abs(before))
        assert abs(after) <= bound, f"{intent.side} {q} {sym}: worst case {after} beyond {bound}"
        if abs(after) > limit:
            assert (after > 0) == (before > 0), "an order flipped a position past the limit"
        self.bound[(sym, intent.side)] = bound
        self.admitted[intent.client_order_id] = Admission(
            sym, intent.side, q, intent.order_type, intent.limit_price, a.gate.limits.order_notional_limit(sym)
        )

    def _check_fill(self, event: AccountEvent) -> None:
        fill = event.fill
        assert fill is not None
        order = self.admitted[fill.client_order_id]
        pos = self.account.position(fill.symbol)
        if fill.side == "buy":
            assert pos <= self.bound[(fill.symbol, "buy")], f"a buy fill made {fill.symbol} {pos}"
        else:
            assert pos >= -self.bound[(fill.symbol, "sell")], f"a sell fill made {fill.symbol} {pos}"
        if order.notional_cap is not None and fill.client_order_id == self.submitting:
            assert order.quantity * fill.price <= order.notional_cap * SLIP + order.quantity * QUANTUM
        if order.side == "buy" and order.limit_price is not None:
            assert fill.price <= order.limit_price

    # ------------------------------------------------------------------ rules

    @initialize()
    def start(self) -> None:
        self.control(BASE, state=None, reason="configured")
        for s in SYMBOLS:
            self.mark(s, D(100))

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from(["buy", "sell"]),
        order_type=st.sampled_from(["market", "limit", "stop", "stop_limit"]),
        tif=st.sampled_from(["DAY", "GTC", "IOC", "FOK"]),
        quantity=st.integers(1, 30),
        offset_bps=st.integers(-300, 300),
        limit_offset_bps=st.integers(-300, 300),
    )
    def place(
        self, symbol: str, side: str, order_type: str, tif: str, quantity: int, offset_bps: int, limit_offset_bps: int
    ) -> None:
        market = self.account.prices[symbol]
        stop = cents(market * (1 + D(offset_bps) / 10_000)) if order_type in ("stop", "stop_limit") else None
        limit = None
        if order_type in ("limit", "stop_limit"):
            limit = cents((stop or market) * (1 + D(limit_offset_bps) / 10_000))
        self.n += 1
        self.send(
            OrderCommand(
                kind="place",
                symbol=symbol,
                side=side,  # type: ignore[arg-type]
                quantity=D(quantity),
                order_type=order_type,  # type: ignore[arg-type]
                limit_price=limit,
                stop_price=stop,
                time_in_force=tif,  # type: ignore[arg-type]
                client_order_id=f"o{self.n}",
            )
        )

    @rule(symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(["buy", "sell"]), quantity=st.integers(1, 60))
    def trade(self, symbol: str, side: str, quantity: int) -> None:
        """A market order: builds and unwinds positions (what the loss limits need)."""
        self.n += 1
        self.send(
            OrderCommand(
                kind="place",
                symbol=symbol,
                side=side,  # type: ignore[arg-type]
                quantity=D(quantity),
                client_order_id=f"o{self.n}",
            )
        )

    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        open_ids = sorted(self.account.working)
        if open_ids:
            self.send(OrderCommand(kind="cancel", client_order_id=open_ids[pick % len(open_ids)]))

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        minutes=st.sampled_from([1, 5, 60, 24 * 60]),
        gap_bps=st.integers(-800, 800),
        move_bps=st.integers(-300, 300),
        up_bps=st.integers(0, 300),
        down_bps=st.integers(0, 300),
        volume=st.sampled_from([0, 10, 100]),
    )
    def bar(
        self, symbol: str, minutes: int, gap_bps: int, move_bps: int, up_bps: int, down_bps: int, volume: int
    ) -> None:
        self.clock.advance(minutes * 60)
        last = self.account.prices[symbol]
        o = cents(last * (1 + D(gap_bps) / 10_000))
        c = cents(o * (1 + D(move_bps) / 10_000))
        h = cents(max(o, c) * (1 + D(up_bps) / 10_000))
        low = cents(min(o, c) * (1 - D(down_bps) / 10_000))
        b = Bar(symbol=symbol, ts=self.clock.now(), open=o, high=h, low=low, close=c, volume=D(volume))
        self.feed(self.engine.on_bar(b))
        self.record(AccountEvent(kind="mark", ts=self.clock.now(), mark=Mark(symbol=symbol, price=c, ts=b.ts)))

    @rule(symbol=st.sampled_from(SYMBOLS), factor=st.sampled_from(["0.5", "0.8", "0.97", "1.03", "1.25", "2"]))
    def big_move(self, symbol: str, factor: str) -> None:
        self.clock.advance(1)
        self.mark(symbol, cents(self.account.prices[symbol] * D(factor)))

    @rule(
        max_position=st.sampled_from([5, 20, 50, 200]),
        notional=st.sampled_from([None, 500, 2000, 4000, 20_000]),
        rate=st.sampled_from([None, 3, 10]),
        window_s=st.sampled_from([60, 3600]),
    )
    def change_limits(self, max_position: int, notional: int | None, rate: int | None, window_s: int) -> None:
        """Tighten or loosen: the position limit, the notional cap and the order rate (window included)."""
        limits = self.account.gate.limits.model_copy(
            update={
                "max_position": D(max_position),
                "max_order_notional": None if notional is None else D(notional),
                "max_orders_per_window": rate,
                "order_window_seconds": float(window_s),
            }
        )
        self.control(limits)

    @rule(action=st.sampled_from(["kill", "resume"]))
    def operator(self, action: str) -> None:
        if action == "kill":
            self.control(self.account.gate.limits, state=TradingState.HALTED, reason="kill_switch")
        else:
            self.control(self.account.gate.limits, state=TradingState.ACTIVE, reason="operator_resume")

    @rule()
    def restart(self) -> None:
        rebuilt = Account(gate=RiskGate(RiskLimits(), self.clock))
        for seq, event in enumerate(self.journal, 1):
            rebuilt.apply(event, seq)
        now = self.clock.now()
        assert projection(rebuilt, now) == projection(self.account, now)
        self.account = rebuilt  # the authority restarted: it goes on from the folded journal

    # ------------------------------------------------------------------ invariants

    @invariant()
    def the_reader_holds_the_authoritys_projection(self) -> None:
        now = self.clock.now()
        assert projection(self.reader, now) == projection(self.account, now)

    @invariant()
    def the_account_matches_the_engine(self) -> None:
        a = self.account
        assert set(a.working) == {o.intent.client_order_id for o in self.engine.open_orders()}
        for s in SYMBOLS:
            open_ = self.engine.open_orders(s)
            buys = sum((o.remaining for o in open_ if o.intent.side == "buy"), D(0))
            sells = sum((o.remaining for o in open_ if o.intent.side == "sell"), D(0))
            assert a.resting_of(s) == (buys, sells)
            signed = sum(
                (f.quantity if f.side == "buy" else -f.quantity for f in a.portfolio.fills if f.symbol == s), D(0)
            )
            assert a.position(s) == signed

    @invariant()
    def a_restricted_account_never_grows_a_worst_case(self) -> None:
        if self.restricted is not None:
            for s in SYMBOLS:
                assert self.account.worst_position(s) <= self.restricted[s]
                assert abs(self.account.position(s)) <= self.restricted[s]


AccountMachine.TestCase.settings = (
    settings.get_profile("nightly") if os.environ.get("HYPOTHESIS_PROFILE") == "nightly" else QUICK
)
TestAccountStateMachine = AccountMachine.TestCase
