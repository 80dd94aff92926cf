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
    assert code == 0 and "ranked by sharpe" in out and len(out.strip().splitlines()) == 5


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
