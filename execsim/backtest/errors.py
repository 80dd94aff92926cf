"""Backtest input errors: a stable `code` and a message that says what to change."""

from __future__ import annotations


class BacktestError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
