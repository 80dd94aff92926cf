"""The command line: `trading-mcp` and every subcommand, the process supervisor behind `up`, and the composition
root that starts an application (or several in one process) from its settings."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _HideRich:
    """A finder that says rich is not there (for the few imports it is on the path for)."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "rich" or name.startswith("rich."):
            raise ModuleNotFoundError("rich is hidden from structlog here (cli/__init__.py)", name=name)
        return None


def _structlog_without_rich() -> None:
    """Import structlog before anything else does, with rich hidden from it.

    structlog imports rich, and rich pygments, whenever they are installed, for console tracebacks our JSON logs
    never render (observability.logging formats exceptions as text). rich comes with the dev extra, which `make run`
    installs, and cost every service start ~5 % of its import work (callgrind: importing `cli.serve` took 3.73 G
    instructions with rich, 3.54 G without; mcp alone takes 2.80 G). It is hidden only while structlog's own modules
    import: anything that imports rich later gets it."""
    if "structlog" in sys.modules:
        return
    hide = _HideRich()
    sys.meta_path.insert(0, hide)
    try:
        for module in ("structlog", "structlog.dev", "structlog.tracebacks"):
            importlib.import_module(module)
    finally:
        sys.meta_path.remove(hide)


_structlog_without_rich()
