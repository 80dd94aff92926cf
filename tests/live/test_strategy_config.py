"""Strategy-mode configuration: per-symbol choices, defaults, and clear refusals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from decisions.strategy_mode import StrategyConfigError, StrategyMode, parse_choices


def test_a_symbol_gets_its_own_strategy_the_star_covers_the_rest_and_hybrid_is_the_default(tmp_path: Path) -> None:
    file = tmp_path / "strategies.json"
    file.write_text('{"*": {"strategy": "mean_reversion"}, "MSFT": {"strategy": "momentum"}}')
    env = '{"AAPL": {"strategy": "momentum", "params": {"variant": "ma_cross", "fast": 5, "slow": 30}}}'
    mode = StrategyMode(parse_choices(env, file))
    assert mode.for_symbol("AAPL").name == "momentum"
    assert mode.for_symbol("AAPL").state.warmup < StrategyMode().for_symbol("AAPL").state.warmup
    assert mode.for_symbol("MSFT").name == "momentum"
    assert mode.for_symbol("IBM").name == "mean_reversion"
    assert StrategyMode().for_symbol("IBM").name == "hybrid"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "TRADING_MCP_STRATEGIES is not JSON"),
        ('["AAPL"]', "TRADING_MCP_STRATEGIES must be an object"),
        ('{"AAPL": {"strategy": "momentum", "risk": 1}}', "strategy for AAPL: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_configuration_is_refused_with_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(StrategyConfigError, match=message):
        parse_choices(raw)


def test_a_bad_parameter_is_refused_when_the_mode_is_built_not_on_the_first_signal() -> None:
    with pytest.raises(StrategyConfigError, match="strategy for AAPL: invalid parameters for MeanReversionParams"):
        StrategyMode(parse_choices('{"AAPL": {"strategy": "mean_reversion", "params": {"window": 1}}}'))


def test_sizing_is_the_backtesters_whole_units_after_costs_and_fractional_on_request() -> None:
    whole = StrategyMode(commission=Decimal("0.001"), slippage_bps=Decimal(9))
    assert whole.size(1.0, Decimal(10_000), Decimal(99)) == Decimal(100)  # 10000 / (99 × 1.001 9) = 100.8…
    assert whole.size(-0.5, Decimal(10_000), Decimal(99)) == Decimal(-50)
    fractional = StrategyMode(fractional=True)
    assert fractional.size(1.0, Decimal(10_000), Decimal(3)) == Decimal("3333.3333")


def test_up_in_strategy_mode_starts_serve_in_strategy_mode_sizing_for_the_simulators_fee() -> None:
    from cli.main import build_parser, service_commands

    parser = build_parser()
    args = parser.parse_args(["up", "--mode", "strategy", "--fee-bps", "10", "--max-position", "50000"])
    commands = service_commands(args)
    serve = vars(parser.parse_args(commands["mcp_server"]))
    authority = vars(parser.parse_args(commands["authority"]))
    assert (serve["bridge"], serve["bridge_mode"], authority["max_position"]) == (True, "strategy", "50000")
    assert Decimal(serve["strategy_commission"]) == Decimal("0.001")
    assert "--fee-bps" in commands["execsim"] and "10" in commands["execsim"]
    plain = vars(parser.parse_args(service_commands(parser.parse_args(["up"]))["mcp_server"]))
    assert plain["bridge_mode"] is None and plain["strategy_commission"] is None
