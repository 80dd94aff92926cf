"""docs/ARCHITECTURE.md and docs/RUNBOOK.md name only what exists: paths, modules, `trading-mcp` subcommands,
metrics; they promise nothing as "still to come" in the old style; the folder list is the generated one."""

from __future__ import annotations

import argparse
import glob
import importlib
import re
import tomllib
from pathlib import Path

import pytest
from prometheus_client import Counter
from prometheus_client.metrics import MetricWrapperBase

from schemas.subjects import Subject
from scripts import gen_folders

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "ARCHITECTURE.md", ROOT / "docs" / "RUNBOOK.md"]
TOP_LEVEL = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")}
PACKAGES = set(gen_folders.top_level_packages())

BACKTICKED = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# repository paths written without backticks, e.g. "(tests/ops/test_stack_processes.py checks ...)"
BARE_PATH = re.compile(r"(?<![\w/.`-])((?:tests|scripts|bench|docs|observability)/[\w./*-]*\w)")
COMMAND = re.compile(r"(?<![\w-])trading-mcp ([a-z][a-z-]*)(?: ([a-z][a-z-]*)\b)?")
METRIC = re.compile(r"^((?:gateway|mcp|exec_sim|jetstream|authority|risk|portfolio)_[a-z0-9_]+)(\{[^}]*\})?$")
METRIC_SUFFIXES = ("_total", "_seconds", "_messages", "_ratio", "_bytes")
UNAMBIGUOUS_METRIC_PREFIXES = ("gateway_", "exec_sim_", "jetstream_", "portfolio_")
STALE = re.compile(
    r"\bTODO\b|\bFIXME\b|\bTBD\b|\bXXX\b|still to come|(?-i:\bPending\b)|\bissues? \d|being written|until it lands"
    r"|will be updated",
    re.IGNORECASE,
)


def _text(doc: Path) -> str:
    return doc.read_text()


def _looks_like_path(token: str) -> bool:
    if " " in token or "://" in token or token.startswith(("/", "~", "<", ".")):
        return False
    first = token.split("/", 1)[0]
    return first in TOP_LEVEL and ("/" in token or "." in token or first == token)


def _exists(relative: str, base: Path = ROOT) -> bool:
    target = relative.rstrip("/")
    if any(ch in target for ch in "*?["):
        return bool(glob.glob(str(base / target)))
    path = base / target
    return path.exists() or path.with_suffix(".py").exists()


def named_paths(text: str) -> set[str]:
    tokens = {t for t in BACKTICKED.findall(text) if _looks_like_path(t)}
    return tokens | set(BARE_PATH.findall(text))


SUBJECTS = frozenset(s.value for s in Subject)


def named_modules(text: str) -> set[str]:
    """Backticked dotted names that start with one of the product's packages (`tools.account.Account`)."""
    found = set()
    for token in BACKTICKED.findall(text):
        # `decisions.order_intent` is a NATS subject, not a module of the decisions package
        if re.fullmatch(r"[a-z_]\w*(\.\w+)+", token) and token.split(".", 1)[0] in PACKAGES and token not in SUBJECTS:
            found.add(token)
    return found


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def cli_parser() -> argparse.ArgumentParser:
    """The `trading-mcp` parser, found through the console-script entry point in pyproject.toml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module = importlib.import_module(scripts["trading-mcp"].split(":", 1)[0])
    for name, builder in vars(module).items():
        if "parser" in name and callable(builder) and not isinstance(builder, type):
            try:
                parser = builder()
            except TypeError:
                continue
            if isinstance(parser, argparse.ArgumentParser):
                return parser
    raise AssertionError(f"no parser builder in {module.__name__}")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def second_words(parser: argparse.ArgumentParser) -> set[str] | None:
    """The words that may follow a subcommand (nested subcommands or a positional's choices); None if free."""
    nested = subcommands(parser)
    if nested:
        return set(nested)
    for action in parser._actions:
        if not action.option_strings and action.choices is not None:
            return {str(choice) for choice in action.choices}
    return None


def named_commands(text: str) -> set[tuple[str, str]]:
    return {(first, second) for first, second in COMMAND.findall(text)}


def exported_metrics() -> set[str]:
    """Every metric name observability/metrics.py defines (counters with their `_total`)."""
    metrics = importlib.import_module("observability.metrics")
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names.add(value._name + ("_total" if isinstance(value, Counter) else ""))
    return names


def named_metrics(text: str) -> set[str]:
    found = set()
    for token in BACKTICKED.findall(text):
        match = METRIC.match(token)
        if not match:
            continue
        name, labels = match.groups()
        if labels or name.endswith(METRIC_SUFFIXES) or name.startswith(UNAMBIGUOUS_METRIC_PREFIXES):
            found.add(name)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_repository_path_and_link_the_doc_names_exists(doc: Path) -> None:
    text = _text(doc)
    missing = sorted(p for p in named_paths(text) if not _exists(p))
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        relative = target.split("#", 1)[0]
        if relative and not (doc.parent / relative).exists():
            missing.append(target)
    assert not missing, f"{doc.name} names paths that are not in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_module_and_attribute_the_doc_names_imports(doc: Path) -> None:
    broken = sorted(name for name in named_modules(_text(doc)) if not resolves(name))
    assert not broken, f"{doc.name} names modules or attributes that do not exist: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_trading_mcp_subcommand_the_doc_names_is_in_the_cli(doc: Path) -> None:
    commands = subcommands(cli_parser())
    assert {"up", "serve", "authority", "risk"} <= commands.keys()
    wrong = []
    for first, second in sorted(named_commands(_text(doc))):
        if first not in commands:
            wrong.append(f"trading-mcp {first}")
            continue
        allowed = second_words(commands[first])
        if second and allowed is not None and second not in allowed:
            wrong.append(f"trading-mcp {first} {second}")
    assert not wrong, f"{doc.name} names commands the CLI does not have: {wrong}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_metric_the_doc_names_is_defined_in_observability_metrics(doc: Path) -> None:
    defined = exported_metrics()
    assert "gateway_webhooks_received_total" in defined and "risk_trading_state" in defined
    named = named_metrics(_text(doc))
    assert named, f"{doc.name} names no metric: the pattern no longer matches how it writes them"
    assert not sorted(named - defined), f"{doc.name} names metrics that do not exist: {sorted(named - defined)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_the_doc_has_no_todo_pending_or_still_to_come_markers(doc: Path) -> None:
    stale = [line.strip() for line in _text(doc).splitlines() if STALE.search(line)]
    assert not stale, f"{doc.name} still promises or defers work; say what the code does today: {stale}"


def test_the_architecture_folder_list_is_the_one_generated_from_the_package_tree() -> None:
    text = gen_folders.ARCHITECTURE_MD.read_text()
    assert gen_folders.rewrite(text) == text, (
        "docs/ARCHITECTURE.md's folder list is stale: python -m scripts.gen_folders"
    )
    for folder in gen_folders.package_folders():
        assert f"| `{folder.relative_to(ROOT).as_posix()}/` |" in text


def test_the_checks_catch_a_missing_path_an_unknown_subcommand_an_unknown_metric_and_a_stale_list() -> None:
    text = (
        "`mcp_server/no_such_module.py` and tests/nowhere/test_x.py, `tools.account.NoSuchThing`, "
        "`trading-mcp frobnicate`, `trading-mcp risk explode`, `gateway_imaginary_total{outcome}`, "
        "**Pending (issue 9)**"
    )
    assert not _exists("mcp_server/no_such_module.py") and "tests/nowhere/test_x.py" in named_paths(text)
    assert not resolves("tools.account.NoSuchThing") and resolves("tools.account.Account")
    commands = subcommands(cli_parser())
    assert "frobnicate" not in commands
    risk_words = second_words(commands["risk"])
    assert ("risk", "explode") in named_commands(text) and risk_words is not None and "explode" not in risk_words
    assert "gateway_imaginary_total" in named_metrics(text) - exported_metrics()
    assert STALE.search(text)
    stale_block = f"{gen_folders.START}\n| `gone/` | moved away |\n{gen_folders.END}"
    assert gen_folders.rewrite(stale_block) != stale_block
