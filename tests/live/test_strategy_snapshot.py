"""The strategy-mode snapshot (`StrategyMode.to_snapshot` / `restore`, `strategies.state_codec`), no I/O: a state
stored as JSON half-way and restored into a fresh bridge decides every later bar exactly as the bridge that never
stopped, for every strategy (the hybrid's EWMA volatility and variance ratio have unbounded memory, so a window of
bars would not do); a snapshot of other strategies, parameters or shape is refused and changes nothing."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from decisions.strategy_mode import StrategyChoice, StrategyMode
from schemas.market import Bar
from strategies.state_codec import StateMismatch, dump_state, load_state

CHOICES = {
    "MOM": StrategyChoice(strategy="momentum", params={"lookback": 20}),
    "MAX": StrategyChoice(strategy="momentum", params={"variant": "ma_cross", "fast": 5, "slow": 30}),
    "MR": StrategyChoice(strategy="mean_reversion", params={"window": 15, "entry_z": 1.0}),
    "*": StrategyChoice(strategy="hybrid"),  # HYB: the defaults, 253 bars of warm-up
}
SYMBOLS = ("MOM", "MAX", "MR", "HYB")
T0 = datetime(2020, 1, 1, tzinfo=UTC)


def bars(symbol: str, n: int, seed: int) -> list[Bar]:
    rng = random.Random(seed)
    price, out = 100.0, []
    for i in range(n):
        o = price
        price = max(1.0, price * (1 + rng.gauss(0.0003, 0.02)))
        hi, lo = max(o, price) * 1.004, min(o, price) * 0.996
        out.append(
            Bar(
                symbol=symbol,
                ts=T0 + timedelta(days=i),
                open=Decimal(f"{o:.4f}"),
                high=Decimal(f"{hi:.4f}"),
                low=Decimal(f"{lo:.4f}"),
                close=Decimal(f"{price:.4f}"),
            )
        )
    return out


def feed(mode: StrategyMode, series: dict[str, list[Bar]], start: int, end: int) -> list[tuple[str, object, object]]:
    """Each bar in turn: what the strategy decided, and the plan it left (the bridge's step without the order)."""
    out = []
    for i in range(start, end):
        for symbol in SYMBOLS:
            runner = mode.for_symbol(symbol)
            runner.take_plan()
            decision = runner.on_bar(series[symbol][i])
            plan = runner.plan
            out.append((symbol, decision.model_dump(), None if plan is None else (plan.target, plan.confidence)))
    return out


@pytest.mark.parametrize("cut", [10, 290, 400])  # before any strategy is warm, before the hybrid is, after
def test_a_bridge_restored_from_a_snapshot_decides_every_later_bar_as_the_one_that_never_stopped(cut: int) -> None:
    series = {s: bars(s, 600, seed) for seed, s in enumerate(SYMBOLS)}
    never_stopped = StrategyMode(CHOICES)
    stopped = StrategyMode(CHOICES)
    assert feed(never_stopped, series, 0, cut) == feed(stopped, series, 0, cut)

    stored = json.loads(json.dumps(stopped.to_snapshot()))  # through JSON, as the bucket holds it
    restarted = StrategyMode(CHOICES)
    restarted.restore(stored)
    after = feed(restarted, series, cut, 600)
    assert after == feed(never_stopped, series, cut, 600)
    assert any(d["status"] == "ready" for _, d, _ in after), "the comparison covers warm strategies"
    assert json.dumps(restarted.to_snapshot()) == json.dumps(never_stopped.to_snapshot())


def test_a_pending_plan_survives_the_snapshot() -> None:
    mode = StrategyMode(CHOICES)
    series = bars("MR", 200, 7)
    runner = mode.for_symbol("MR")
    for bar in series:
        runner.take_plan()
        runner.on_bar(bar)
        if runner.plan is not None:
            break
    assert runner.plan is not None, "the series changes the mean-reversion target"
    restored = StrategyMode(CHOICES)
    restored.restore(json.loads(json.dumps(mode.to_snapshot())))
    plan = restored.for_symbol("MR").plan
    assert plan is not None and (plan.target, plan.confidence, plan.decision) == (
        runner.plan.target,
        runner.plan.confidence,
        runner.plan.decision,
    )


def test_a_snapshot_of_other_strategies_or_parameters_or_of_another_shape_is_refused_and_changes_nothing() -> None:
    mode = StrategyMode(CHOICES)
    feed(mode, {s: bars(s, 50, 1) for s in SYMBOLS}, 0, 50)
    stored = json.loads(json.dumps(mode.to_snapshot()))
    other = dict(CHOICES, MR=StrategyChoice(strategy="mean_reversion", params={"window": 16, "entry_z": 1.0}))
    target = StrategyMode(other)
    before = json.dumps(target.to_snapshot())
    with pytest.raises(StateMismatch, match="other strategies or parameters"):
        target.restore(stored)
    assert json.dumps(target.to_snapshot()) == before

    fresh = StrategyMode(CHOICES)
    for tamper, match in (
        (lambda d: d["symbols"]["MR"]["state"].pop("bars"), "stored attributes"),
        (lambda d: d["symbols"]["MR"]["state"].__setitem__("bars", "many"), "str where the state holds int"),
        (lambda d: d["symbols"]["MR"]["state"].__setitem__("p", {"state": {}}), "parameters expected"),
        (lambda d: d.__setitem__("format", 99), "format"),
    ):
        bad = json.loads(json.dumps(stored))
        tamper(bad)
        with pytest.raises(StateMismatch, match=match):
            fresh.restore(bad)
        assert fresh.to_snapshot()["symbols"] == {}, "nothing half applied"


def test_the_codec_writes_only_plain_data() -> None:
    class Callable_:
        __module__ = "strategies.fake"

        def __init__(self) -> None:
            self.fn = print

    with pytest.raises(TypeError, match="not state a snapshot can hold"):
        dump_state(Callable_())
    with pytest.raises(StateMismatch):
        load_state(StrategyMode(CHOICES).for_symbol("MR").state, {"bars": {"deque": [{"x": 1}]}})
