"""Rewrite the folder list in docs/ARCHITECTURE.md from the package tree: `python -m scripts.gen_folders`.

The packages are the top-level names in pyproject.toml's `[tool.setuptools.packages.find] include` and every
folder with an `__init__.py` below them; each row is the first line of that `__init__.py`'s docstring. The list
sits between the `<!-- generated: folders -->` and `<!-- /generated: folders -->` markers;
tests/ops/test_docs_current.py fails while it differs from what this prints, so a moved package needs only a
re-run.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE_MD = ROOT / "docs" / "ARCHITECTURE.md"
START = "<!-- generated: folders -->"
END = "<!-- /generated: folders -->"


def top_level_packages(root: Path = ROOT) -> list[str]:
    """The product's top-level packages, as pyproject.toml tells setuptools to find them."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    names = setuptools["packages"]["find"]["include"] if "find" in setuptools.get("packages", {}) else []
    names = names or setuptools.get("packages", [])
    return sorted({name for name in names if "." not in name and "*" not in name})


def package_folders(root: Path = ROOT) -> list[Path]:
    """Every package folder (one with an `__init__.py`) of the product, parents before children."""
    folders: list[Path] = []
    for name in top_level_packages(root):
        top = root / name
        folders += sorted(init.parent for init in top.rglob("__init__.py") if "__pycache__" not in init.parts)
    return folders


def summary(folder: Path, root: Path = ROOT) -> str:
    """The first line of the package's docstring (markdown-table safe)."""
    init = folder / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    if not doc:
        return f"*(no docstring in `{init.relative_to(root).as_posix()}`)*"
    return doc.strip().splitlines()[0].replace("|", "\\|")


def render(root: Path = ROOT) -> str:
    """The generated block, markers included."""
    rows = [
        f"| `{folder.relative_to(root).as_posix()}/` | {summary(folder, root)} |" for folder in package_folders(root)
    ]
    header = ["| folder | what it holds (first line of its `__init__.py` docstring) |", "|---|---|"]
    return "\n".join([START, *header, *rows, END])


def rewrite(text: str, root: Path = ROOT) -> str:
    """`text` with the block between the markers replaced by the generated one."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{ARCHITECTURE_MD.name} has no {START} ... {END} block")
    return text[:start] + render(root) + text[end + len(END) :]


def main() -> int:
    text = ARCHITECTURE_MD.read_text()
    new = rewrite(text)
    if new != text:
        ARCHITECTURE_MD.write_text(new)
        print(f"rewrote the folder list in {ARCHITECTURE_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
