"""The backtester's fast paths change no result: the gate's plain approvals, the fills from the engine's models
and the strategies' fused scans give the trades, denials, equity and statistics of the slow paths."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from execsim.backtest import BacktestConfig, BacktestResult, load_bundled, run_backtest
from execsim.backtest import broker as broker_module
from execsim.backtest.broker import Broker, _plainly_approved, risk_limits
from schemas.common import Side
from schemas.risk import RiskLimits, TradingState
from strategies import build_strategy
from tools.clock import TestClock
from tools.risk import RiskGate

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def outputs(result: BacktestResult) -> tuple[Any, ...]:
    return (
        [t.to_json() for t in result.trades],
        [d.to_json() for d in result.denials],
        result.equity.tolist(),
        result.position.tolist(),
        result.stats,
        result.final_equity,
    )


class PerBar:
    """The strategy with its states' `update` replaced by a wrapper: `scan` then feeds every bar through it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def new_state(self, symbol: str) -> Any:
        state = self._inner.new_state(symbol)
        update = state.update
        state.update = lambda o, h, lo, c: update(o, h, lo, c)
        return state


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("momentum", {"lookback": 60}),
        ("momentum", {"variant": "ma_cross", "fast": 5, "slow": 20}),
        ("mean_reversion", {"window": 10}),
        ("hybrid", {"momentum": {"lookback": 60}}),
    ],
)
@pytest.mark.parametrize(
    "config",
    [
        BacktestConfig(),
        BacktestConfig(commission=Decimal("0.001"), slippage_bps=Decimal(5), fractional=True),
        BacktestConfig(max_position=Decimal(700), commission=Decimal("0.0005")),
    ],
)
def test_the_fast_paths_give_the_results_of_the_gate_the_engine_and_update(
    name: str, params: dict[str, Any], config: BacktestConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = load_bundled("IBM")
    fast = run_backtest(build_strategy(name, params), bars, config)
    monkeypatch.setattr(broker_module, "_plainly_approved", lambda *args: False)
    monkeypatch.setattr(Broker, "fill_now", lambda *args: None)
    slow = run_backtest(PerBar(build_strategy(name, params)), bars, config)  # type: ignore[arg-type]
    assert outputs(fast) == outputs(slow)
    assert fast.stats["orders"] > 20


def test_a_plain_approval_is_one_the_gate_gives() -> None:
    rng = random.Random(5)
    limit_sets = [
        risk_limits(None),
        risk_limits(Decimal(50)),
        RiskLimits(max_position=Decimal(50), max_position_per_symbol={"ABC": Decimal(20)}),
        RiskLimits(max_position=Decimal(50), max_order_quantity=Decimal(10)),
        RiskLimits(max_position=Decimal(50), max_orders_per_window=3),
    ]
    seen = {True: 0, False: 0}
    for limits in limit_sets:
        for state in (TradingState.ACTIVE, TradingState.REDUCING):
            gate = RiskGate(limits, clock=TestClock(T0), state=state)
            for _ in range(400):
                side: Side = rng.choice(["buy", "sell"])
                quantity = Decimal(rng.choice(["1", "7", "30", "0.0001", "12.5", "1E-11", "1E+11", "0", "-3"]))
                position = Decimal(rng.choice(["0", "10", "-10", "45", "-45"]))
                price = rng.choice([Decimal("101.25"), Decimal("0.00000000001"), Decimal("1E+12"), None])
                plain = _plainly_approved(gate, "ABC", side, quantity, position, price)
                verdict = gate.check(
                    symbol="ABC", side=side, quantity=quantity, projected_position=position, price=price, record=False
                )
                assert verdict.approved or not plain, (limits, state, side, quantity, position, price)
                seen[plain] += 1
    assert seen[True] > 100 and seen[False] > 100


def test_a_fill_from_the_engine_models_is_the_engines_fill() -> None:
    rng = random.Random(9)
    for commission, slippage in [
        (Decimal(0), Decimal(0)),
        (Decimal("0.001"), Decimal(5)),
        (Decimal("0.0005"), Decimal("0.3")),
    ]:
        fast = Broker("ABC", T0, commission, slippage, None, "momentum")
        engine = Broker("ABC", T0, commission, slippage, None, "momentum")
        for k in range(300):
            side: Side = rng.choice(["buy", "sell"])
            quantity = Decimal(rng.randrange(1, 10**6)) / Decimal(rng.choice([1, 10_000]))
            price = Decimal(repr(round(rng.uniform(0.5, 5000.0), rng.choice([2, 4, 7, 10]))))
            quick = fast.fill_now(side, quantity, price)
            if quick is None:  # the first order goes through the engine, and validates the shape
                assert k == 0
                (fill,) = fast.market(side, quantity, price, 0.5, {})
                quick = (fill.price, fill.fee)
            (fill,) = engine.market(side, quantity, price, 0.5, {})
            assert fill.quantity == quantity and fill.side == side
            assert quick == (fill.price, fill.fee)
            assert str(quick[0]) == str(fill.price) and str(quick[1]) == str(fill.fee)
