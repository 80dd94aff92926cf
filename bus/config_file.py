"""Read an operator's configuration file: TOML, or JSON when the name ends in .json.

One place for the two failures every such file has before its own validation — unreadable, or not TOML/JSON —
each a one-line error with the caller's stable code and the file's path (never its content: it may hold
secrets)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_toml_or_json(path: Path, code: str, error: Callable[[str], Exception]) -> Any:
    """The file's data; `error("<code>: <path>: <what>")` raised when it cannot be read or parsed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"{code}: {path}: cannot read it ({exc.strerror})") from None
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{code}: {path}: not valid TOML/JSON ({exc})") from None
