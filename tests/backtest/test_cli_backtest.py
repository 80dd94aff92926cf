"""`trading-mcp backtest` end to end, in process: JSON, tables, the chart, sweeps and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["backtest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_is_one_object_with_stats_and_trades(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--strategy", "mean_reversion", "--data", "bundled:IBM", "--json", "--commission", "0.001"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["symbol"] == "IBM" and doc["config"]["commission"] == "0.001"
    for key in (
        "total_return",
        "buy_and_hold_return",
        "cagr",
        "annualized_volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "trades",
        "win_rate",
        "profit_factor",
        "expectancy",
        "exposure",
        "denied_orders",
    ):
        assert key in doc["stats"]
    assert doc["stats"]["trades"] > 10
    for t in doc["trades"]:
        assert {"entry_time", "exit_time", "side", "quantity", "entry_price", "exit_price", "pnl"} <= t.keys()


def test_the_table_and_the_chart(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "out" / "chart.png"
    code, out, _ = run(
        capsys, "--strategy", "momentum", "--param", "variant=ma_cross", "--data", "bundled:AAPL", "--plot", str(png)
    )
    assert code == 0
    assert "Sharpe ratio" in out and "Max drawdown" in out and "trades:" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_a_csv_file_with_hybrid_and_nested_params(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from execsim.backtest import load_bundled

    path = tmp_path / "msft.csv"
    load_bundled("MSFT").to_frame().to_csv(path)
    code, out, _ = run(capsys, "--strategy", "hybrid", "--param", "momentum.lookback=60", "--data", str(path), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["params"]["momentum"]["lookback"] == 60 and doc["symbol"] == "SYMBOL"


def test_a_sweep_prints_ranked_results(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--strategy",
        "mean_reversion",
        "--data",
        "bundled:MSFT",
        "--sweep",
        "window=10..30:10",
        "--sweep",
        "entry_z=1.0..2.0:0.5",
        "--rank-by",
        "sortino",
        "--json",
    )
    doc = json.loads(out)
    assert code == 0 and len(doc["results"]) == 9 and doc["rank_by"] == "sortino"
    values = [r["stats"]["sortino"] for r in doc["results"] if r["stats"]["sortino"] is not None]
    assert values == sorted(values, reverse=True)
    code, out, _ = run(capsys, "--strategy", "mean_reversion", "--data", "bundled:MSFT", "--sweep", "window=10..12")
    assert code == 0 and "ranked by sharpe" in out and len(out.strip().splitlines()) == 7
    assert "live paper account defaults: cash 100000" in out


@pytest.mark.parametrize(
    ("argv", "code_text"),
    [
        (["--strategy", "nope", "--data", "bundled:AAPL"], "unknown_strategy"),
        (
            ["--strategy", "momentum", "--param", "fast=9", "--param", "slow=3", "--data", "bundled:AAPL"],
            "invalid_params",
        ),
        (["--strategy", "momentum", "--param", "lookback", "--data", "bundled:AAPL"], "invalid_params"),
        (["--strategy", "momentum", "--data", "bundled:AAPL", "--cash", "-5"], "invalid_option"),
        (["--strategy", "momentum", "--data", "missing.csv"], "data_not_found"),
        (["--strategy", "momentum", "--data", "bundled:AAPL", "--sweep", "fast=1"], "invalid_sweep"),
    ],
)
def test_bad_input_exits_2_with_a_stable_code(
    capsys: pytest.CaptureFixture[str], argv: list[str], code_text: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and f"error [{code_text}]" in err


def test_a_sweep_over_an_unknown_parameter_exits_2_naming_it_and_the_real_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "--strategy", "momentum", "--data", "bundled:AAPL", "--sweep", "lookbak=10..30:10")
    assert code == 2 and out == ""
    assert err.startswith("error [unknown_parameter]: momentum has no parameter 'lookbak'")
    assert "lookback" in err and "vol_target" in err
    code, out, err = run(capsys, "--strategy", "hybrid", "--data", "bundled:AAPL", "--sweep", "lookback=10..12")
    assert code == 2 and "error [unknown_parameter]" in err and "momentum.lookback" in err


def test_a_sweep_where_every_set_is_invalid_exits_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--strategy", "momentum", "--data", "bundled:AAPL", "--sweep", "lookback=0..0")
    assert code == 2 and out == ""
    assert "error [invalid_sweep]: none of the 1 parameter sets is valid" in err and "lookback" in err


def test_a_window_backtests_exactly_the_bars_the_demo_replays(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.demo import bar_payloads

    replayed = bar_payloads("AAPL", 500)  # the demo's defaults: 500 bars from the first
    code, out, _ = run(
        capsys, "--strategy", "hybrid", "--data", "bundled:AAPL", "--start", replayed[0]["time"][:10], "--bars", "500"
    )
    assert code == 0
    assert out.startswith(f"hybrid on AAPL: {replayed[0]['time'][:10]} -> {replayed[-1]['time'][:10]}, 500 bars")


def test_bars_alone_is_the_last_n_and_start_end_bound_both_sides(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--strategy", "momentum", "--data", "bundled:IBM", "--bars", "300", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["stats"]["bars"] == 300
    code, out, _ = run(
        capsys, "--strategy", "momentum", "--data", "bundled:IBM", "--start", "2005-01-01", "--end", "2005-12-31"
    )
    assert code == 0 and out.startswith("momentum on IBM: 2005-01-03 -> 2005-12-30, 252 bars")


@pytest.mark.parametrize(
    "window",
    [
        ["--start", "2005-31-01"],
        ["--start", "2006-01-01", "--end", "2005-01-01"],
        ["--start", "2020-01-01"],
        ["--bars", "1"],
        ["--start", "2005-01-01", "--end", "2006-01-01", "--bars", "10"],
    ],
)
def test_a_bad_window_exits_2_with_invalid_window_and_prints_no_result(
    capsys: pytest.CaptureFixture[str], window: list[str]
) -> None:
    code, out, err = run(capsys, "--strategy", "momentum", "--data", "bundled:IBM", *window)
    assert code == 2 and out == "" and err.startswith("error [invalid_window]: ")


def test_the_default_cash_and_costs_are_the_live_paper_accounts_and_both_are_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from authority.settings import AuthoritySettings
    from execsim.settings import ExecSimSettings

    code, out, _ = run(capsys, "--strategy", "momentum", "--data", "bundled:IBM", "--json")
    config = json.loads(out)["config"]
    assert code == 0
    assert config["cash"] == str(AuthoritySettings.model_fields["starting_cash"].default) == "100000"
    assert config["commission"] == str(ExecSimSettings.model_fields["fee_bps"].default / 10_000) == "0"
    assert config["slippage_bps"] == str(ExecSimSettings.model_fields["slippage_bps"].default) == "0"
    code, out, _ = run(capsys, "--strategy", "momentum", "--data", "bundled:IBM", "--commission", "0.001")
    assert "backtest: cash 100000, commission 0.001 (10 bps), slippage 0 bps, max position none" in out
    assert "live paper account defaults: cash 100000, fee 0 bps, slippage 0 bps, max position 1000" in out


def test_a_sweep_draws_a_progress_bar_on_stderr_only_when_asked_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep = ["--strategy", "mean_reversion", "--data", "bundled:MSFT", "--sweep", "window=10..14", "--json"]
    code, out, err = run(capsys, *sweep)
    assert code == 0 and err == ""
    code, out, err = run(capsys, *sweep, "--progress")
    assert code == 0 and "/5 [" in err and "set/s" in err
    assert json.loads(out)["axes"] == {"window": [10, 11, 12, 13, 14]}
