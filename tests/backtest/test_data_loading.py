"""Bars from CSV files, DataFrames and the bundled real data; bad input gets a stable code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from execsim.backtest import BacktestError, from_dataframe, load_bundled, load_csv, resolve


def test_the_bundled_daily_data_loads_adjusted_for_splits() -> None:
    raw = load_bundled("AAPL", adjusted=False)
    adj = load_bundled("AAPL")
    assert len(adj) == len(raw) == 3270 and adj.time(0).isoformat() == "2000-03-01T00:00:00+00:00"
    split = int(np.flatnonzero(raw.ts == np.datetime64("2005-02-28"))[0])  # AAPL split 2:1 that day
    assert raw.close[split] / raw.close[split - 1] < 0.55
    assert 0.95 < adj.close[split] / adj.close[split - 1] < 1.05
    assert resolve("bundled:MSFT").symbol == "MSFT" and resolve("bundled", "IBM").symbol == "IBM"


def test_a_csv_round_trips_and_naive_times_are_utc(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\n2024-01-03,10.5,12,10,11.5,200\n")
    bars = load_csv(path, "XYZ")
    assert bars.symbol == "XYZ" and bars.close.tolist() == [10.5, 11.5] and bars.volume.tolist() == [100, 200]
    assert bars.time(1).isoformat() == "2024-01-03T00:00:00+00:00"


def test_a_dataframe_with_a_datetime_index_and_a_symbol_column() -> None:
    idx = pd.date_range("2024-01-01", periods=3, freq="h", tz="America/New_York")
    df = pd.DataFrame({"open": [1.0, 2, 3], "high": [1.0, 2, 3], "low": [1.0, 2, 3], "close": [1.0, 2, 3]}, index=idx)
    bars = from_dataframe(df.assign(ticker="ABC"))
    assert bars.symbol == "ABC" and bars.time(0).isoformat() == "2024-01-01T05:00:00+00:00"


@pytest.mark.parametrize(
    ("csv", "code", "words"),
    [
        ("time,open,high,low\n2024-01-01,1,1,1\n2024-01-02,1,1,1\n", "data_missing_columns", "close"),
        ("open,high,low,close\n1,1,1,1\n1,1,1,1\n", "data_missing_columns", "time column"),
        ("time,open,high,low,close\n2024-01-02,1,1,1,1\n2024-01-01,1,1,1,1\n", "data_not_sorted", "row 2"),
        ("time,open,high,low,close\n2024-01-01,1,1,1,1\n2024-01-02,1,1,1,-1\n", "data_bad_values", "row 2"),
        ("time,open,high,low,close\n2024-01-01,1,1,1,1\n2024-01-02,1,1,1,x\n", "data_bad_values", "close"),
        ("time,open,high,low,close\n2024-01-01,1,1,1,1\n2024-01-02,1,0.5,1,1\n", "data_bad_values", "high"),
        ("time,open,high,low,close\n2024-01-01,1,1,1,1\n", "data_too_short", "at least 2"),
    ],
)
def test_bad_bars_are_refused_with_a_stable_code(tmp_path: Path, csv: str, code: str, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(csv)
    with pytest.raises(BacktestError, match=words) as e:
        load_csv(path)
    assert e.value.code == code


def test_missing_files_and_unknown_bundled_symbols_say_what_exists(tmp_path: Path) -> None:
    with pytest.raises(BacktestError, match="bundled:AAPL") as e:
        resolve(str(tmp_path / "nope.csv"))
    assert e.value.code == "data_not_found"
    with pytest.raises(BacktestError, match="AAPL, FB, GOOG, IBM, MSFT") as e:
        resolve("bundled:TSLA")
    assert e.value.code == "data_symbol_not_found"
