"""The backtester: strategies driven over historical bars through the live risk gate and matching engine."""

from execsim.backtest.data import Bars, from_dataframe, load_bundled, load_csv, resolve
from execsim.backtest.errors import BacktestError
from execsim.backtest.result import BacktestConfig, BacktestResult, Denial
from execsim.backtest.runner import run_backtest
from execsim.backtest.trades import Trade

__all__ = [
    "BacktestConfig",
    "BacktestError",
    "BacktestResult",
    "Bars",
    "Denial",
    "Trade",
    "from_dataframe",
    "load_bundled",
    "load_csv",
    "resolve",
    "run_backtest",
]
