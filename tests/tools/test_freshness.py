"""tools.freshness: a signal's age runs from its firing (fired_at, else alert_time, else receipt), never bar time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.signals import NormalizedSignal
from tools.freshness import DEFAULT_MAX_SIGNAL_AGE_S, fired_at, is_stale, signal_age

NOW = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)


def signal(**kw: Any) -> NormalizedSignal:
    fields: dict[str, Any] = {
        "signal_id": "sig_1",
        "source": "tv",
        "symbol": "AAPL",
        "price": Decimal("190.25"),
        "received_at": NOW,
        "correlation_id": "c",
    }
    fields.update(kw)
    return NormalizedSignal(**fields)


def test_the_default_limit_is_a_few_seconds() -> None:
    assert DEFAULT_MAX_SIGNAL_AGE_S == 5.0


def test_fired_at_prefers_fired_at_then_alert_time_then_receipt() -> None:
    fired, alerted = NOW - timedelta(seconds=9), NOW - timedelta(seconds=4)
    assert fired_at(signal(fired_at=fired, alert_time=alerted)) == fired
    assert fired_at(signal(alert_time=alerted)) == alerted  # stored before fired_at existed
    assert fired_at(signal()) == NOW
    assert fired_at(signal(signal_time=NOW - timedelta(days=1))) == NOW  # bar time is never the firing time


def test_the_age_runs_from_firing_to_now() -> None:
    s = signal(fired_at=NOW - timedelta(seconds=2), received_at=NOW - timedelta(seconds=1))
    assert signal_age(s, NOW) == timedelta(seconds=2)
    assert signal_age(s, NOW + timedelta(minutes=1)) == timedelta(seconds=62)


def test_a_signal_fired_in_the_future_by_clock_skew_is_age_zero_and_fresh() -> None:
    s = signal(fired_at=NOW + timedelta(seconds=30))
    assert signal_age(s, NOW) == timedelta(0)
    assert not is_stale(s, NOW, 0)


@pytest.mark.parametrize(
    ("age_s", "stale"),
    [(0, False), (4.999, False), (5, False), (5.001, True), (60, True)],
)
def test_a_signal_is_stale_only_when_older_than_the_limit(age_s: float, stale: bool) -> None:
    s = signal(fired_at=NOW - timedelta(seconds=age_s))
    assert is_stale(s, NOW, DEFAULT_MAX_SIGNAL_AGE_S) is stale


def test_the_limit_is_configurable() -> None:
    s = signal(fired_at=NOW - timedelta(seconds=20))
    assert is_stale(s, NOW, 10)
    assert not is_stale(s, NOW, 30)


def test_a_daily_bar_fired_now_is_not_stale() -> None:
    bar = signal(interval="1D", signal_time=datetime(2000, 1, 3, tzinfo=UTC), fired_at=NOW)
    assert signal_age(bar, NOW) == timedelta(0)
    assert not is_stale(bar, NOW, DEFAULT_MAX_SIGNAL_AGE_S)


def test_an_old_signal_without_fired_at_falls_back_to_its_receipt() -> None:
    s = signal(received_at=NOW - timedelta(seconds=6), signal_time=datetime(2000, 1, 3, tzinfo=UTC))
    assert is_stale(s, NOW, DEFAULT_MAX_SIGNAL_AGE_S)
    assert not is_stale(s, NOW - timedelta(seconds=2), DEFAULT_MAX_SIGNAL_AGE_S)


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_a_negative_or_nan_limit_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="max_age_s"):
        is_stale(signal(), NOW, bad)
