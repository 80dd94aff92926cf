"""Mean reversion on series whose right answer is known by construction."""

from __future__ import annotations

import pytest
from strategy_helpers import run_live, targets

from strategies import MeanReversion, StrategyError, build_strategy


def test_a_drop_far_below_the_mean_opens_a_long_that_closes_on_the_way_back() -> None:
    # 10 bars at 100, then 90: window 10 holds nine 100s and one 90 -> z = (90 - 99) / 3 = -3
    closes = [100.0] * 10 + [90.0, 99.0, 100.0, 100.0]
    s = MeanReversion({"window": 10})
    t = targets(s, closes)
    assert t[:10] == [0.0] * 10
    assert t[10] == 1.0
    # bar 11: window 8x100, 90, 99 -> mean 98.9, std 2.98 -> z = 0.03 -> inside the exit band: flat
    assert t[11] == 0.0
    d = run_live(s, closes)[10]
    assert d.side == "buy" and d.rationale["zscore"] == pytest.approx(-3.0)
    assert d.confidence == pytest.approx(min(1.0, 3.0 / 2.5))


def test_a_spike_above_opens_a_short_unless_long_only() -> None:
    closes = [100.0] * 10 + [110.0]
    assert targets(MeanReversion({"window": 10}), closes)[-1] == -1.0
    assert targets(MeanReversion({"window": 10, "long_only": True}), closes)[-1] == 0.0


def test_the_position_is_held_between_the_exit_and_entry_bands() -> None:
    # after the drop to 90 (z=-3) the price stays at 95: z stays between -1.25 and -0.5 for a while
    closes = [100.0] * 10 + [90.0, 95.0]
    s = MeanReversion({"window": 10})
    t = targets(s, closes)
    z = run_live(s, closes)[-1].rationale["zscore"]
    assert -1.25 < z < -0.5 and t[-1] == 1.0


def test_rsi_confirmation_blocks_an_entry_when_rsi_is_not_oversold() -> None:
    # 19 gains of 1, then a drop of 19: z = -1.6, but Wilder RSI(14) = 100 * 0.93 / (0.93 + 1.36) = 40.6
    closes = [100.0, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 100]
    plain = targets(MeanReversion({"window": 20}), closes)
    confirmed = MeanReversion({"window": 20, "rsi_confirm": True, "rsi_period": 14})
    t = targets(confirmed, closes)
    rsi = run_live(confirmed, closes)[-1].rationale["rsi"]
    assert plain[-1] == 1.0 and rsi > 30 and t[-1] == 0.0


def test_exit_band_must_be_inside_the_entry_band() -> None:
    with pytest.raises(StrategyError, match="exit_z") as e:
        build_strategy("mean_reversion", {"entry_z": 1.0, "exit_z": 1.5})
    assert e.value.code == "invalid_params"


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(StrategyError, match="windw"):
        build_strategy("mean_reversion", {"windw": 5})
