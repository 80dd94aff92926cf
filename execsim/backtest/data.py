"""OHLCV bars for backtests: from a pandas DataFrame, a CSV file, or the bundled real daily data.

Accepted columns (case-insensitive): a time column named `time`, `timestamp`, `datetime` or `date` (or a
DatetimeIndex), `open`, `high`, `low`, `close`, optional `volume`, and an optional `symbol`/`ticker`
column (then pick one with `symbol`). Times without a zone are taken as UTC. Rows must be in strictly
increasing time; prices finite and positive, with low ≤ open, close ≤ high.

Bundled data (`bundled:AAPL`): daily bars 2000-03-01 → 2013-03-01 for AAPL, IBM and MSFT, GOOG from
2004-08-19, FB from 2012-05-18, from the `bokeh-sampledata` wheel (no network). Prices are adjusted for
splits and dividends (open/high/low/close × Adj Close / Close, rounded to 6 decimals) unless `adjusted`
is False — AAPL's raw series has two 2:1 splits that would read as 50 % crashes.

pandas is imported where a frame is read or built, not with this module: the MCP server and the live bridge
import the backtester's pieces without ever loading data, and should not pay pandas' import at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from execsim.backtest.errors import BacktestError

if TYPE_CHECKING:
    import pandas as pd

TIME_COLUMNS = ("time", "timestamp", "datetime", "date")
SYMBOL_COLUMNS = ("symbol", "ticker")
BUNDLED_PREFIX = "bundled:"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Bars:
    symbol: str
    ts: np.ndarray  # datetime64[ns], UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    _micros: np.ndarray = field(init=False, repr=False, compare=False)  # ts as int64 µs since the epoch

    def __post_init__(self) -> None:
        object.__setattr__(self, "_micros", self.ts.astype("datetime64[us]").astype(np.int64))

    def __len__(self) -> int:
        return len(self.close)

    def time(self, i: int) -> datetime:
        """Bar i's time, exact to the microsecond."""
        return EPOCH + timedelta(microseconds=int(self._micros[i]))

    def times(self) -> list[datetime]:
        import pandas as pd

        return [t.to_pydatetime() for t in pd.DatetimeIndex(self.ts, tz="UTC")]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {"open": self.open, "high": self.high, "low": self.low, "close": self.close, "volume": self.volume},
            index=pd.DatetimeIndex(self.ts, tz="UTC", name="time"),
        )


def from_dataframe(df: pd.DataFrame, symbol: str | None = None) -> Bars:
    import pandas as pd

    frame = df.copy()
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    sym_col = next((c for c in SYMBOL_COLUMNS if c in frame.columns), None)
    if sym_col is not None:
        available = sorted(str(s) for s in frame[sym_col].dropna().unique())
        if symbol is None and len(available) == 1:
            symbol = available[0]
        if symbol is None or symbol not in available:
            raise BacktestError(
                "data_symbol_not_found",
                f"symbol {symbol!r} is not in the data; it holds {', '.join(available) or 'no symbols'}",
            )
        frame = frame[frame[sym_col] == symbol]
    time_col = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    if time_col is not None:
        raw_times = frame[time_col]
    elif isinstance(frame.index, pd.DatetimeIndex):
        raw_times = frame.index.to_series()
    else:
        raise BacktestError("data_missing_columns", f"no time column: name one of {', '.join(TIME_COLUMNS)}")
    missing = [c for c in ("open", "high", "low", "close") if c not in frame.columns]
    if missing:
        raise BacktestError(
            "data_missing_columns", f"missing column(s) {', '.join(missing)}; need open, high, low, close"
        )
    try:
        times = pd.DatetimeIndex(pd.to_datetime(raw_times, utc=True))
    except (ValueError, TypeError) as e:
        raise BacktestError("data_bad_values", f"cannot read the times in column {time_col or 'index'}: {e}") from None
    ohlc = {}
    for c in ("open", "high", "low", "close", "volume"):
        if c not in frame.columns:
            ohlc[c] = np.zeros(len(frame))
            continue
        values = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | ((values <= 0) if c != "volume" else (values < 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise BacktestError(
                "data_bad_values", f"row {row + 1}: {c} is {frame[c].iloc[row]!r}; prices must be finite and positive"
            )
        ohlc[c] = values
    o, h, lo, cl = ohlc["open"], ohlc["high"], ohlc["low"], ohlc["close"]
    bad = (lo > np.minimum(o, cl)) | (h < np.maximum(o, cl))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BacktestError(
            "data_bad_values",
            f"row {row + 1}: high {h[row]} / low {lo[row]} do not contain open {o[row]} and close {cl[row]}",
        )
    if times.hasnans:
        row = int(np.flatnonzero(times.isna())[0])
        raise BacktestError("data_bad_values", f"row {row + 1}: missing time")
    ts = times.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
    if len(ts) > 1 and not (np.diff(ts) > np.timedelta64(0, "ns")).all():
        row = int(np.flatnonzero(np.diff(ts) <= np.timedelta64(0, "ns"))[0]) + 1
        raise BacktestError(
            "data_not_sorted", f"row {row + 1}: time {times[row]} is not after the row before; sort and deduplicate"
        )
    if len(ts) < 2:
        raise BacktestError("data_too_short", f"need at least 2 bars, got {len(ts)}")
    return Bars(symbol or "SYMBOL", ts, o, h, lo, cl, ohlc["volume"])


def load_csv(path: str | Path, symbol: str | None = None) -> Bars:
    path = Path(path)
    if not path.is_file():
        raise BacktestError("data_not_found", f"no such file: {path} (or use bundled:AAPL for the bundled data)")
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise BacktestError("data_unreadable", f"{path} is not a readable CSV: {e}") from None
    return from_dataframe(df, symbol)


def bundled_path() -> Path:
    import bokeh_sampledata

    return Path(bokeh_sampledata.__file__).parent / "_data" / "stocks.csv.gz"


def bundled_symbols() -> list[str]:
    import pandas as pd

    return sorted(pd.read_csv(bundled_path(), usecols=["Ticker"])["Ticker"].unique())


def load_bundled(symbol: str, adjusted: bool = True) -> Bars:
    import pandas as pd

    df = pd.read_csv(bundled_path())
    df = df[df["Ticker"] == symbol]
    if df.empty:
        raise BacktestError(
            "data_symbol_not_found", f"no bundled data for {symbol!r}; bundled: {', '.join(bundled_symbols())}"
        )
    if adjusted:
        factor = df["Adj Close"] / df["Close"]
        df = df.assign(**{c: (df[c] * factor).round(6) for c in ("Open", "High", "Low", "Close")})
    return from_dataframe(df.drop(columns=["Adj Close"]), symbol)


def resolve(spec: str, symbol: str | None = None) -> Bars:
    """`bundled:SYM` (or `bundled` with `symbol`) for the bundled data, otherwise a CSV path."""
    if spec == "bundled" or spec.startswith(BUNDLED_PREFIX):
        name = spec[len(BUNDLED_PREFIX) :] or symbol
        if not name:
            raise BacktestError("data_symbol_not_found", "say which bundled symbol: bundled:AAPL")
        return load_bundled(name)
    return load_csv(spec, symbol)
