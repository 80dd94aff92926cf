"""`bus.ownership.Ownership.holds(account, fence)`: a member that loses an account's lease and takes it again while the
old work is still stopping (its grace period: a handler in the middle of a batch) owns the account again, but the old
work, asking with its own fence, is refused. Asking by account alone let a CI run's old authority (fence 75) journal
an entry after the new owners' (fence 101) had. Nor does the old work's end release the account taken again."""

from __future__ import annotations

import asyncio

from bus.ownership import Ownership


async def test_old_work_still_stopping_does_not_own_the_account_taken_again_under_a_new_fence() -> None:
    seen: list[tuple[int, bool]] = []

    async def start(account: str, fence: int, stop: asyncio.Event, owner: Ownership) -> list[asyncio.Task[None]]:
        async def work() -> None:
            await stop.wait()
            await asyncio.sleep(0.3)  # a batch finishing after the stop
            seen.append((fence, owner.holds(account, fence)))

        return [asyncio.create_task(work())]

    released: list[str] = []
    ownership = Ownership(
        None,  # type: ignore[arg-type]
        role="authority",
        member="m",
        accounts=["alpha"],
        start=start,
        on_released=released.append,
    )
    await ownership._acquired("alpha", 75)
    assert ownership.holds("alpha", 75) and not ownership.holds("alpha", 74)
    losing = asyncio.create_task(ownership._lost("alpha"))  # waits for the old work (grace period)
    await asyncio.sleep(0.05)
    assert not ownership.holds("alpha", 75)
    await ownership._acquired("alpha", 110)  # taken again before the old work ended
    assert ownership.holds("alpha", 110) and ownership.holds("alpha")
    await losing
    assert seen == [(75, False)], "the old work, asking with its fence, no longer owns the account"
    assert released == [], "the account taken again is not released when the old work ends (its new work stays)"
    await ownership.stop()
