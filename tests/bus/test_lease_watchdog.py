"""The lease watchdog sleeps until the first self-fence deadline instead of looking 20 times a second, and never
longer than a lease taken during its sleep could allow (tests/bus/test_leases.py proves the fencing itself)."""

from __future__ import annotations

from typing import Any

import pytest

from bus.lease import AccountLeases, _Lease


async def _nothing(*_: Any) -> None:
    return None


def _leases(ttl_s: float, renew_s: float, now: list[float]) -> AccountLeases:
    return AccountLeases(
        js=None,  # type: ignore[arg-type]  # the sleep is decided from the clock and the leases held, no NATS
        role="execsim",
        member="m",
        accounts=["paper", "other"],
        on_acquired=_nothing,
        on_lost=_nothing,
        ttl_s=ttl_s,
        renew_s=renew_s,
        clock=lambda: now[0],
    )


def _hold(leases: AccountLeases, account: str, confirmed: float) -> None:
    leases._leases[account] = _Lease(account, fence=1, revision=1, acquired_at="", confirmed=confirmed, held=True)


def test_the_watchdog_sleeps_until_the_first_deadline() -> None:
    now = [100.0]
    leases = _leases(ttl_s=3.0, renew_s=1.0, now=now)  # self-fence after 2 s
    assert leases._watchdog_sleep(now[0]) == pytest.approx(0.5), "nothing held: a quarter of the self-fence time"
    _hold(leases, "paper", confirmed=100.0)  # just renewed: its deadline is 2 s away
    assert leases._watchdog_sleep(now[0]) == pytest.approx(0.5)
    _hold(leases, "other", confirmed=98.3)  # renewed 1.7 s ago: 0.3 s left
    assert leases._watchdog_sleep(now[0]) == pytest.approx(0.3)
    now[0] = 100.299
    assert leases._watchdog_sleep(now[0]) == pytest.approx(0.005), "at the deadline: look again almost at once"


def test_the_longest_sleep_is_shorter_than_a_new_leases_deadline_when_renewals_are_slow() -> None:
    """A lease is confirmed from its create's send, which waits at most renew_s: with renew_s close to the self-fence
    time, a new lease may have only self_fence_s - renew_s left when it is added, and the sleep must not outlast it."""
    now = [0.0]
    leases = _leases(ttl_s=3.0, renew_s=1.9, now=now)  # self-fence after 2 s, renewals every 1.9 s
    assert leases._watchdog_sleep(now[0]) == pytest.approx(0.1)
