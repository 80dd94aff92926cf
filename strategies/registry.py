"""Strategies by name, and `key=value` parameter parsing for the command line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from strategies.base import Strategy, StrategyError
from strategies.hybrid import Hybrid
from strategies.mean_reversion import MeanReversion
from strategies.momentum import Momentum

STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Momentum, MeanReversion, Hybrid)}


def build_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    cls = STRATEGIES.get(name)
    if cls is None:
        raise StrategyError("unknown_strategy", f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return cls(dict(params or {}))


def parameter_names(name: str) -> list[str]:
    """Every parameter a strategy takes, nested ones dotted (`momentum.lookback`), in declaration order."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise StrategyError("unknown_strategy", f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return _names(cls.params_model)


def _names(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += _names(kind, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """["lookback=60", "momentum.variant=ma_cross"] -> {"lookback": "60", "momentum": {"variant": "ma_cross"}}.

    Values stay strings; the strategy's pydantic model converts and validates them.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StrategyError("invalid_params", f"expected key=value, got {pair!r}")
        set_dotted(out, key.strip(), value.strip())
    return out


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = target
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise StrategyError("invalid_params", f"{key!r} nests under {part!r}, which already has a value")
        node = child
    node[leaf] = value
