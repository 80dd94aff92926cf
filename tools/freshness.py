"""Signal freshness: how long a signal waited between its firing and a decision.

A signal older than the limit is recorded but never traded. Its age runs from when the sender fired
it (`fired_at`), never from the bar's `signal_time`: that is market time, and a daily bar alerted
now is fresh. Pure: the caller passes `now` (from its injected clock).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas.signals import NormalizedSignal

DEFAULT_MAX_SIGNAL_AGE_S = 5.0
_ZERO = timedelta(0)


def fired_at(signal: NormalizedSignal) -> datetime:
    """When the sender fired the signal: `fired_at`, else TradingView's `alert_time`, else the gateway's
    receipt (signals stored before `fired_at` existed)."""
    if signal.fired_at is not None:
        return signal.fired_at
    if signal.alert_time is not None:
        return signal.alert_time
    return signal.received_at


def signal_age(signal: NormalizedSignal, now: datetime) -> timedelta:
    """Time from firing to `now`; a firing time ahead of `now` (clock skew) counts as age 0."""
    return max(now - fired_at(signal), _ZERO)


def is_stale(signal: NormalizedSignal, now: datetime, max_age_s: float) -> bool:
    """True when the signal waited longer than `max_age_s` seconds (exactly the limit is still fresh)."""
    if not max_age_s >= 0:  # also refuses NaN
        raise ValueError(f"max_age_s must be a non-negative number of seconds, not {max_age_s!r}")
    return signal_age(signal, now) > timedelta(seconds=max_age_s)
