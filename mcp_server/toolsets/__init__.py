"""The toolset registry: each group of tools (and the resources over the same data) is one module.

Configuration picks groups by name (`market,positions,...`, or `all`); unconfigured, a server offers
`DEFAULT` (`DEFAULT_READ_ONLY` in read-only mode), small enough for a model's context
(tests/mcp/test_context_budget.py). Read-only mode leaves out every group that can change the account, so
those tools are never registered at all. Adding a group is one module with a `TOOLSET` and one line in
`_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mcp.server.mcpserver import MCPServer

from bus.account_view import AppState


@dataclass(frozen=True)
class Toolset:
    name: str
    description: str
    register: Callable[[MCPServer[AppState], AppState], None]
    read_only: bool = True  # False: the group can change the account (orders); read-only mode skips it


class UnknownToolset(ValueError):
    pass


# Order matters only for tools/list. A toolset's name is its module's name: `select` imports only the chosen ones
# (strategies brings in numpy and the backtester; a server that does not offer it should not wait for them).
_MODULES = ("market", "strategies", "positions", "risk", "order_check", "orders", "accounts")
# strategies (catalog, evaluation, backtests) is opt-in; order_check stands in for preview_order when orders is off
DEFAULT = ("market", "positions", "risk", "orders")
DEFAULT_READ_ONLY = ("market", "positions", "risk", "order_check")


def load(name: str) -> Toolset:
    """The toolset `name` (one of `_MODULES`), importing its module."""
    toolset: Toolset = importlib.import_module(f"mcp_server.toolsets.{name}").TOOLSET
    return toolset


def available() -> dict[str, Toolset]:
    return {name: load(name) for name in _MODULES}


def select(names: Iterable[str] | None, *, read_only: bool) -> list[Toolset]:
    """The toolsets to register: the named ones (`all` for every one, the defaults when None), minus the
    writing ones in read-only mode."""
    chosen = [n.strip() for n in names if n.strip()] if names is not None else None
    if chosen is None:
        chosen = list(DEFAULT_READ_ONLY if read_only else DEFAULT)
    elif chosen == ["all"]:
        chosen = list(_MODULES)
    unknown = [n for n in chosen if n not in _MODULES]
    if unknown:
        raise UnknownToolset(f"unknown toolset(s) {', '.join(unknown)}; available: {', '.join(_MODULES)}")
    picked = [load(n) for n in dict.fromkeys(chosen)]
    return [t for t in picked if not (read_only and not t.read_only)]
