"""A compact map from 64-bit keys to 64-bit values: the idempotency ledger of orders that left memory.

The account keeps one entry per order it ever evicted, so the ledger is the one structure that grows with
history. As a dict it cost about 130 bytes an entry (the table slot and two int objects); here an entry costs
16 bytes: the bulk is two parallel sorted `array('Q')`s searched by bisection, and only the newest entries (at
most `RECENT_MAX`) are in a dict. When that dict fills, its entries are merged into new arrays. The arrays are
never changed in place, so a copy (`copy`, which the authority's snapshot takes on the event loop) shares them
and costs only the small dict.

Costs: a lookup is a dict probe and a bisection (about a microsecond at a million entries); a merge, once per
`RECENT_MAX` inserts, copies the arrays once (a few milliseconds at a million entries). The pure core's rules
hold: standard library only.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator

RECENT_MAX = 4096  # the newest entries kept in a dict before they are merged into the sorted arrays
_MASK = (1 << 64) - 1


class Ledger:
    """key -> value, both unsigned 64-bit. Setting a key again replaces its value."""

    __slots__ = ("_keys", "_recent", "_values")

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        self._keys: array[int] = array("Q")
        self._values: array[int] = array("Q")
        self._recent: dict[int, int] = {}
        for key, value in pairs:
            self[key] = value

    @classmethod
    def from_sorted(cls, keys: array[int], values: array[int]) -> Ledger:
        """A ledger over arrays sorted by key, without duplicates (taken over, not copied)."""
        ledger = cls()
        ledger._keys, ledger._values = keys, values
        return ledger

    def __setitem__(self, key: int, value: int) -> None:
        if not (0 <= key <= _MASK and 0 <= value <= _MASK):
            raise OverflowError("ledger keys and values are unsigned 64-bit integers")
        recent = self._recent
        recent[key] = value
        if len(recent) >= RECENT_MAX:
            self._merge()

    def get(self, key: int) -> int | None:
        value = self._recent.get(key)
        if value is not None:
            return value
        keys = self._keys
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            return self._values[i]
        return None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.get(key) is not None

    def __len__(self) -> int:
        self._merge()
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys) or bool(self._recent)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ledger):
            return NotImplemented
        self._merge()
        other._merge()
        return self._keys == other._keys and self._values == other._values

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Ledger({len(self)} entries)"

    def items(self) -> Iterator[tuple[int, int]]:
        """Every (key, value), by key."""
        self._merge()
        return zip(self._keys, self._values, strict=True)

    def copy(self) -> Ledger:
        """An independent ledger: the sorted arrays are shared (never changed in place), the newest copied."""
        twin = Ledger.from_sorted(self._keys, self._values)
        twin._recent = dict(self._recent)
        return twin

    def records(self) -> bytes:
        """Every entry as a big-endian 16-byte record (key, value), by key: the snapshot's format."""
        self._merge()
        out = array("Q", bytes(16 * len(self._keys)))
        out[0::2] = self._keys
        out[1::2] = self._values
        if out.itemsize != 8:
            raise RuntimeError("this platform's unsigned long long is not 64-bit")
        if _LITTLE:
            out.byteswap()
        return out.tobytes()

    @classmethod
    def from_records(cls, raw: bytes) -> Ledger:
        """The ledger `records` wrote (records in any order; a repeated key keeps its last value)."""
        if len(raw) % 16:
            raise ValueError("a ledger is 16-byte records")
        flat = array("Q", raw)
        if _LITTLE:
            flat.byteswap()
        keys, values = flat[0::2], flat[1::2]
        if all(a < b for a, b in zip(keys, keys[1:], strict=False)):  # written by `records`: sorted already
            return cls.from_sorted(keys, values)
        pairs = dict(zip(keys, values, strict=True))
        ordered = sorted(pairs)
        return cls.from_sorted(array("Q", ordered), array("Q", (pairs[k] for k in ordered)))

    # ------------------------------------------------------------------ internals

    def _merge(self) -> None:
        """Merge the newest entries into new sorted arrays (a key in both takes the newest value)."""
        if not self._recent:
            return
        keys, values = self._keys, self._values
        new_keys: array[int] = array("Q")
        new_values: array[int] = array("Q")
        start = 0
        for key in sorted(self._recent):
            i = bisect_left(keys, key, start)
            new_keys += keys[start:i]
            new_values += values[start:i]
            new_keys.append(key)
            new_values.append(self._recent[key])
            start = i + 1 if i < len(keys) and keys[i] == key else i
        new_keys += keys[start:]
        new_values += values[start:]
        self._keys, self._values = new_keys, new_values
        self._recent = {}


class CodeLedger:
    """key -> one of a few short strings (a denial's reason code), on a `Ledger` of code numbers."""

    __slots__ = ("_codes", "_ledger", "_numbers")

    def __init__(self, pairs: Iterable[tuple[int, str]] = ()) -> None:
        self._ledger = Ledger()
        self._codes: list[str] = []
        self._numbers: dict[str, int] = {}
        for key, code in pairs:
            self[key] = code

    def __setitem__(self, key: int, code: str) -> None:
        number = self._numbers.get(code)
        if number is None:
            number = self._numbers[code] = len(self._codes)
            self._codes.append(code)
        self._ledger[key] = number

    def get(self, key: int) -> str | None:
        number = self._ledger.get(key)
        return None if number is None else self._codes[number]

    def __contains__(self, key: object) -> bool:
        return key in self._ledger

    def __len__(self) -> int:
        return len(self._ledger)

    def __bool__(self) -> bool:
        return bool(self._ledger)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodeLedger):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CodeLedger({len(self)} entries, codes {self._codes})"

    def items(self) -> Iterator[tuple[int, str]]:
        codes = self._codes
        return ((key, codes[number]) for key, number in self._ledger.items())

    def copy(self) -> CodeLedger:
        twin = CodeLedger()
        twin._ledger = self._ledger.copy()
        twin._codes = list(self._codes)
        twin._numbers = dict(self._numbers)
        return twin


_LITTLE = array("H", [1]).tobytes()[0] == 1
