"""Markdown prompt templates from `prompts/`: front matter, then a body with `{{argument}}` slots.

```
---
title: Review a signal before trading
description: One line for the prompt list.
kind: mcp                       # mcp (served as an MCP prompt, the default) or agent (used by the agent loop)
requires_tools: list_signals, get_positions
arguments:
  signal_id: required | The signal's id (list_signals shows it)
---
Body text with {{signal_id}}.
```

An MCP prompt is offered only when the server registers every tool it names in `requires_tools`,
so a read-only or partial toolset never offers a prompt that asks for a tool it lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from schemas.signals import SYMBOL_PATTERN

SLOT = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
MAX_ARGUMENT_CHARS = 4000


class PromptTemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Argument:
    name: str
    required: bool
    description: str


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    title: str
    description: str
    kind: Literal["mcp", "agent"]
    requires_tools: tuple[str, ...]
    arguments: tuple[Argument, ...]
    body: str

    def render(self, values: dict[str, str] | None = None) -> str:
        values = dict(values or {})
        declared = {a.name for a in self.arguments}
        extra = set(values) - declared
        if extra:
            raise PromptTemplateError(f"unknown argument(s) {sorted(extra)} for prompt {self.name}")
        for arg in self.arguments:
            value = values.get(arg.name)
            if value is None or value == "":
                if arg.required:
                    raise PromptTemplateError(f"prompt {self.name} needs the argument {arg.name}: {arg.description}")
                values[arg.name] = "(not given)"
                continue
            values[arg.name] = _clean(arg.name, str(value))
        return SLOT.sub(lambda m: values[m.group(1)], self.body)


def _clean(name: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_ARGUMENT_CHARS:
        raise PromptTemplateError(f"argument {name} is longer than {MAX_ARGUMENT_CHARS} characters")
    if name == "symbol":
        value = value.upper()
        if not re.fullmatch(SYMBOL_PATTERN, value):
            raise PromptTemplateError(f"symbol {value!r} is not a symbol (upper case, e.g. AAPL)")
    return value


def parse(name: str, text: str) -> PromptTemplate:
    match = re.match(r"\A---\n(.*?)\n---\n(.*)\Z", text, flags=re.S)
    if not match:
        raise PromptTemplateError(f"{name}: expected front matter between --- lines")
    head, body = match.groups()
    fields: dict[str, str] = {}
    arguments: list[Argument] = []
    in_arguments = False
    for line in head.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition(":")
        value = value.split(" #", 1)[0].strip()
        if line.startswith("  ") and in_arguments:
            need, _, doc = value.partition("|")
            if need.strip() not in ("required", "optional"):
                raise PromptTemplateError(
                    f"{name}: argument {key.strip()} must be `required | ...` or `optional | ...`"
                )
            arguments.append(Argument(key.strip(), need.strip() == "required", doc.strip()))
            continue
        in_arguments = key.strip() == "arguments"
        if not in_arguments:
            fields[key.strip()] = value
    kind = fields.get("kind", "mcp")
    if kind not in ("mcp", "agent"):
        raise PromptTemplateError(f"{name}: kind must be mcp or agent")
    slots = set(SLOT.findall(body))
    declared = {a.name for a in arguments}
    if slots != declared:
        raise PromptTemplateError(f"{name}: slots {sorted(slots)} and declared arguments {sorted(declared)} differ")
    return PromptTemplate(
        name=name,
        title=fields.get("title", name),
        description=fields.get("description", ""),
        kind=kind,  # type: ignore[arg-type]
        requires_tools=tuple(t.strip() for t in fields.get("requires_tools", "").split(",") if t.strip()),
        arguments=tuple(arguments),
        body=body.strip() + "\n",
    )


def load_all(directory: Path | None = None) -> dict[str, PromptTemplate]:
    """Every `*.md` template in `prompts/` (the installed package by default), by file stem."""
    if directory is not None:
        files = {p.stem: p.read_text() for p in sorted(directory.glob("*.md"))}
    else:
        root = resources.files("prompts")
        files = {
            p.name[:-3]: p.read_text() for p in sorted(root.iterdir(), key=lambda p: p.name) if p.name.endswith(".md")
        }
    return {name: parse(name, text) for name, text in files.items()}


def load(name: str) -> PromptTemplate:
    templates = load_all()
    if name not in templates:
        raise PromptTemplateError(f"no prompt template {name}.md in prompts/")
    return templates[name]
