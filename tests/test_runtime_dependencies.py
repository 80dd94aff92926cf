"""The installed product needs no dev extra: every third-party module its packages import comes with a runtime
dependency of pyproject.toml (or one of theirs). `pip install trading-mcp` (the Dockerfile's runtime stage) gets
exactly those; an import of a dev-only package (httpx, say) crashes every subcommand there."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[\s]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def runtime_closure() -> set[str]:
    """The runtime requirements of the project and, transitively, of theirs (extras left out)."""
    todo = [_name(r) for r in PYPROJECT["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r and "extra==" not in r]
    return seen


def imported_top_levels() -> dict[str, set[str]]:
    """Top-level module -> the project files importing it (every import, also inside functions)."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_of_the_product_comes_with_a_runtime_dependency() -> None:
    provided = {
        module
        for module, dists in md.packages_distributions().items()
        if any(d.lower().replace("_", "-") in runtime_closure() for d in dists)
    }
    missing = {
        module: sorted(files)
        for module, files in imported_top_levels().items()
        if module not in sys.stdlib_module_names and module not in PACKAGES and module not in provided
    }
    assert missing == {}, f"imported by the product but only installed by the dev extras (or not at all): {missing}"


def test_the_check_would_catch_a_dev_only_import() -> None:
    dev_only = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert "httpx" in dev_only and "httpx" not in runtime_closure()
    assert "httpx" in md.packages_distributions(), "the dev venv has httpx: the check compares, not guesses"
