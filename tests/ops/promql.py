"""Metric names used by PromQL expressions, and the names the services really export."""

from __future__ import annotations

import importlib
import pkgutil
import re

from prometheus_client import REGISTRY

# Packages whose modules define or update metrics; every module is imported, so a metric defined in
# any of them (now or after a merge) is registered before the names are read.
SERVICE_PACKAGES = ("observability", "bus", "gateway", "mcp_server", "execsim", "tools", "strategies")

# Series Prometheus itself writes for every target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "atan2", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Every series name an expression selects (functions, keywords and label names excluded)."""
    for pattern in (_STRING, _MATCHERS, _RANGES, _GROUPING, _OFFSET, _VARIABLE, _NUMBER):
        expr = pattern.sub(" ", expr)
    names = set()
    for match in _NAME.finditer(expr):
        word = match.group(0)
        if word.lower() in _KEYWORDS or expr[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def exported_metric_names() -> set[str]:
    """The sample names /metrics can show, read from the prometheus_client registry."""
    for package_name in SERVICE_PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count", "_created")}
        elif family.type == "summary":
            names |= {family.name, f"{family.name}_sum", f"{family.name}_count", f"{family.name}_created"}
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names
