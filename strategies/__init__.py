"""Strategies: incremental indicators, and momentum / mean reversion / hybrid that explain their decisions.

Live use, one bar at a time per symbol:

    book = StrategyBook(build_strategy("hybrid"))
    decision = book.on_bar("AAPL", Bar(ts, open, high, low, close))
"""

from strategies.bar import Bar
from strategies.base import Strategy, StrategyBook, StrategyError, StrategyState
from strategies.batch_data import BatchData
from strategies.hybrid import Hybrid, HybridParams
from strategies.mean_reversion import MeanReversion, MeanReversionParams
from strategies.momentum import Momentum, MomentumParams
from strategies.registry import STRATEGIES, build_strategy, parse_params

__all__ = [
    "STRATEGIES",
    "Bar",
    "BatchData",
    "Hybrid",
    "HybridParams",
    "MeanReversion",
    "MeanReversionParams",
    "Momentum",
    "MomentumParams",
    "Strategy",
    "StrategyBook",
    "StrategyError",
    "StrategyState",
    "build_strategy",
    "parse_params",
]
