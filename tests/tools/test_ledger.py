"""tools.ledger: the idempotency ledger behaves as a dict through merges and copies, writes the snapshot's record
format (which older snapshots, written from a dict, also load from), and costs 16 bytes an entry, not ~130."""

from __future__ import annotations

import base64
import gc
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools import ledger as ledger_module
from tools.account import _pack
from tools.ledger import CodeLedger, Ledger

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
SMALL_KEYS = st.integers(min_value=0, max_value=40)  # few keys: sets of keys already merged are common


@pytest.fixture
def tiny_recent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "RECENT_MAX", 4)  # a merge every few inserts


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.one_of(SMALL_KEYS, U64), U64), max_size=120))
def test_a_ledger_is_a_dict_through_merges(ops: list[tuple[bool, int, int]]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger_module, "RECENT_MAX", 4)
        ledger, model = Ledger(), {}
        for is_set, key, value in ops:
            if is_set:
                ledger[key] = value
                model[key] = value
            assert ledger.get(key) == model.get(key)
            assert (key in ledger) == (key in model)
        assert len(ledger) == len(model) and bool(ledger) == bool(model)
        assert list(ledger.items()) == sorted(model.items())
        assert Ledger.from_records(ledger.records()) == ledger


@settings(max_examples=100, deadline=None)
@given(first=st.lists(st.tuples(SMALL_KEYS, U64), max_size=30), then=st.lists(st.tuples(SMALL_KEYS, U64), max_size=30))
def test_a_copy_and_its_original_change_apart(first: list[tuple[int, int]], then: list[tuple[int, int]]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger_module, "RECENT_MAX", 4)
        original = Ledger(first)
        twin = original.copy()
        for key, value in then:
            original[key] = value
        for key, value in reversed(then):
            twin[key] = value ^ 1
        assert dict(twin.items()) == {**dict(first), **{k: v ^ 1 for k, v in reversed(then)}}
        assert dict(original.items()) == {**dict(first), **dict(then)}


def test_records_are_the_snapshot_format_and_older_unsorted_snapshots_load(tiny_recent: None) -> None:
    rng = random.Random(7)
    pairs = [(rng.getrandbits(64), rng.getrandbits(64)) for _ in range(50)]
    ledger = Ledger(pairs)
    # the format `_pack` wrote from a dict: big-endian (key, value) records; the ledger writes them by key
    assert base64.b64encode(ledger.records()).decode() == _pack(sorted(pairs))
    older = base64.b64decode(_pack(pairs))  # a snapshot written in the dict's insertion order
    assert Ledger.from_records(older) == ledger
    repeated = base64.b64decode(_pack([(1, 5), (2, 6), (1, 7)]))
    assert dict(Ledger.from_records(repeated).items()) == {1: 7, 2: 6}
    with pytest.raises(ValueError, match="16-byte records"):
        Ledger.from_records(b"\x00" * 17)
    with pytest.raises(OverflowError):
        ledger[1 << 64] = 0
    with pytest.raises(OverflowError):
        ledger[0] = -1


def test_a_code_ledger_keeps_each_code_once_and_copies_apart(tiny_recent: None) -> None:
    codes = CodeLedger((k, "max_position" if k % 2 else "stale_signal") for k in range(20))
    assert codes.get(3) == "max_position" and codes.get(4) == "stale_signal" and codes.get(99) is None
    assert 19 in codes and 20 not in codes and len(codes) == 20
    twin = codes.copy()
    twin[3] = "daily_loss_limit"
    assert codes.get(3) == "max_position" and twin.get(3) == "daily_loss_limit"
    assert twin != codes and CodeLedger(codes.items()) == codes


def test_an_entry_costs_sixteen_bytes_not_a_dict_entry() -> None:
    rng = random.Random(1)
    keys = [rng.getrandbits(64) for _ in range(100_000)]
    gc.collect()
    tracemalloc.start()
    try:
        ledger = Ledger()
        for key in keys:
            ledger[key] = key ^ 0x5555
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert ledger.get(keys[12_345]) == keys[12_345] ^ 0x5555
    # 16 bytes an entry in the arrays (which grow by 1/16 on append), at most RECENT_MAX entries in a dict;
    # the dict it replaces held ~130 bytes an entry (a table slot and two ints)
    assert held / len(keys) < 24, f"{held / len(keys):.1f} bytes an entry"
