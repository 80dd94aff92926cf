"""A strategy's running state as plain JSON, and back into a fresh state built from the same parameters.

A live bridge in strategy mode stores its strategies' state so that a restart reads only the signals after it
(`decisions.strategy_mode`). The stored form is data, never code (no pickle: the bucket is network input):
`dump_state` walks a state's attributes (`__slots__` and `__dict__`) and writes numbers, strings, `None`, deques and
lists of them, and the nested indicator and sub-strategy states; parameters (pydantic models) are not written, they
come from the configuration. `load_state` writes the values into a fresh state of the same strategy and parameters,
attribute by attribute, and refuses anything that does not fit it exactly (another attribute set, a nested state
where the fresh one holds a number, a value that is not plain data), so a snapshot of another version or
configuration is refused, never half applied (the caller replays the signals instead).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

SCALARS = (type(None), bool, int, float, str)


class StateMismatch(ValueError):
    """The stored state does not fit the fresh one (another strategy version or configuration)."""


def _fields(obj: object) -> Iterator[str]:
    seen: set[str] = set()
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in seen and name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                seen.add(name)
                yield name
    for name in getattr(obj, "__dict__", {}):
        if name not in seen:
            seen.add(name)
            yield name


def _ours(value: object) -> bool:
    return type(value).__module__.startswith("strategies.")


def dump_state(obj: object) -> dict[str, Any]:
    """`obj`'s attributes as JSON-ready data (floats may be NaN or infinite: `json` writes and reads them)."""
    return {name: _dump(getattr(obj, name), name) for name in _fields(obj)}


def _dump(value: object, where: str) -> Any:
    if isinstance(value, SCALARS):
        return value
    if isinstance(value, deque):
        return {"deque": [_dump_item(v, where) for v in value]}
    if isinstance(value, list | tuple):
        return {"list": [_dump_item(v, where) for v in value]}
    if isinstance(value, BaseModel):
        return {"params": None}  # from the configuration, not the state
    if _ours(value):
        return {"state": dump_state(value)}
    raise TypeError(f"{where}: {type(value).__name__} is not state a snapshot can hold")


def _dump_item(value: object, where: str) -> Any:
    if isinstance(value, SCALARS):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, SCALARS) for v in value):
        return list(value)
    raise TypeError(f"{where}: an item of type {type(value).__name__} is not state a snapshot can hold")


def load_state(fresh: object, data: Any) -> None:
    """Write `data` (from `dump_state` of a state of the same strategy and parameters) into `fresh`, in place.
    Raises StateMismatch, leaving `fresh` unusable, when it does not fit (the caller then discards it)."""
    if not isinstance(data, dict):
        raise StateMismatch(f"{type(fresh).__name__}: the stored state is not an object")
    names = list(_fields(fresh))
    if set(names) != set(data):
        raise StateMismatch(f"{type(fresh).__name__}: stored attributes {sorted(data)} are not {sorted(names)}")
    for name in names:
        current = getattr(fresh, name)
        setattr(fresh, name, _load(current, data[name], f"{type(fresh).__name__}.{name}"))


def _load(current: object, raw: Any, where: str) -> Any:
    if isinstance(current, BaseModel):
        if raw != {"params": None}:
            raise StateMismatch(f"{where}: parameters expected")
        return current
    if isinstance(current, deque):
        if not isinstance(raw, dict) or set(raw) != {"deque"} or not isinstance(raw["deque"], list):
            raise StateMismatch(f"{where}: a deque expected")
        items = [_load_item(v, where) for v in raw["deque"]]
        if current.maxlen is not None and len(items) > current.maxlen:
            raise StateMismatch(f"{where}: {len(items)} items, more than the {current.maxlen} it holds")
        return deque(items, maxlen=current.maxlen)
    if isinstance(current, list | tuple):
        if not isinstance(raw, dict) or set(raw) != {"list"} or not isinstance(raw["list"], list):
            raise StateMismatch(f"{where}: a list expected")
        items = [_load_item(v, where) for v in raw["list"]]
        return tuple(items) if isinstance(current, tuple) else items
    if _ours(current):
        if not isinstance(raw, dict) or set(raw) != {"state"}:
            raise StateMismatch(f"{where}: a nested state expected")
        load_state(current, raw["state"])
        return current
    if not isinstance(raw, SCALARS):
        raise StateMismatch(f"{where}: a number, string or null expected")
    if current is not None and raw is not None and type(raw) is not type(current):
        if not (isinstance(current, float) and type(raw) is int):  # JSON writes 2.0 as 2.0, but be lenient
            raise StateMismatch(f"{where}: {type(raw).__name__} where the state holds {type(current).__name__}")
        return float(raw)
    return raw


def _load_item(raw: Any, where: str) -> Any:
    if isinstance(raw, SCALARS):
        return raw
    if isinstance(raw, list) and all(isinstance(v, SCALARS) for v in raw):
        return tuple(raw)
    raise StateMismatch(f"{where}: an item that is not plain data")
