"""Command-line flags generated from the settings models, so a flag, its type, its choices, its help and its
environment variable can never disagree with the setting it sets.

`add(parser, Model, "port", "fee_bps", ...)` adds `--port`, `--fee-bps`; `given(args, Model)` is the mapping of the
flags the user gave, ready for `Model(**given(...))` (a flag not given leaves the environment or the default).
"""

from __future__ import annotations

import argparse
import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

_DEST = "_settings_flags"  # per parser: which dests belong to which model


def _plain(annotation: Any) -> Any:
    """`X | None` as X."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def env_name(model: type[BaseSettings], name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias
    return f"{model.model_config.get('env_prefix', '')}{name}".upper()


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value == [] or value == "":
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def add(parser: argparse.ArgumentParser, model: type[BaseSettings], *names: str, **help_for: str) -> None:
    """Add `--name` for each settings field; `help_for` may replace a field's description for this command."""
    owned: dict[str, type[BaseSettings]] = parser.get_default(_DEST) or {}
    for name in names:
        field = model.model_fields[name]
        kind = _plain(field.annotation)
        text = help_for.get(name) or field.description or name.replace("_", " ")
        help_text = f"{text} (default {_default(field)}; env {env_name(model, name, field)})"
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=help_text)
        elif get_origin(kind) is Literal:
            parser.add_argument(flag, dest=name, choices=list(get_args(kind)), default=None, help=help_text)
        elif kind is Path:
            parser.add_argument(flag, dest=name, type=Path, default=None, help=help_text)
        elif kind in (int, float):
            parser.add_argument(flag, dest=name, type=kind, default=None, help=help_text)
        elif kind in (str, Decimal):
            parser.add_argument(flag, dest=name, default=None, help=help_text)  # pydantic validates the text
        else:
            raise TypeError(f"no flag for {model.__name__}.{name} of type {kind!r}")
        owned[name] = model
    parser.set_defaults(**{_DEST: owned})


def given(args: argparse.Namespace, model: type[BaseSettings], **extra: Any) -> dict[str, Any]:
    """The values of `model`'s flags the user gave, plus `extra` (values not None)."""
    owned: dict[str, type[BaseSettings]] = getattr(args, _DEST, None) or {}
    values = {name: getattr(args, name) for name, m in owned.items() if m is model}
    values.update(extra)
    return {k: v for k, v in values.items() if v is not None}
