"""Own accounts through leases: a pool member runs each account it holds, and stops running it the moment the
lease is gone (lost, taken, self-fenced, or released to rebalance).

`Ownership` sits on `bus.lease.AccountLeases` (KV bucket ACCOUNT_LEASES): for every account acquired it calls
`start(account, fence, stop, ownership)`, which returns the account's tasks; when the lease goes, it sets that
account's `stop`, waits for the tasks (then cancels what is left) and calls `on_released(account)`. Work that
must not happen without the lease (publishing an account's executions, answering its orders) asks
`holds(account, fence)` first; the fence (the lease's revision at acquisition) goes on what the owner emits, so a
stale owner's output is recognised downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import Awaitable, Callable, Sequence

import structlog
from nats.js import JetStreamContext

from bus.jetstream import log_if_failed
from bus.lease import AccountLeases

log = structlog.get_logger("ownership")

STOP_GRACE_S = 3.0

Start = Callable[[str, int, asyncio.Event, "Ownership"], Awaitable[list[asyncio.Task[None]]]]


def default_member(role: str) -> str:
    """A pool member's name: the role, the host and the process id (unique while it runs)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]
    return f"{role}-{host}-{os.getpid()}"


class Ownership:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        role: str,
        member: str,
        accounts: Sequence[str],
        start: Start,
        on_released: Callable[[str], None] | None = None,
        ttl_s: float = 3.0,
    ) -> None:
        self.js, self.role, self.member = js, role, member
        self.accounts = list(accounts)
        self._start_account = start
        self._on_released = on_released
        self.ttl_s = ttl_s
        self._owned: dict[str, tuple[asyncio.Event, list[asyncio.Task[None]], int]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.leases: AccountLeases | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def holds(self, account: str, fence: int | None = None) -> bool:
        """Whether this member owns `account` and may act for it now (`AccountLeases.valid`: not past its
        self-fence deadline, even if the watchdog has not run since). With `fence`: owns it under that fence. An
        account's work must ask with its own fence: a lease lost and taken again by this member while the old
        work was still stopping (its grace period) is owned again, but not by that work."""
        owned = self._owned.get(account)
        if owned is None or (fence is not None and owned[2] != fence):
            return False
        return self.leases is None or self.leases.valid(account)

    async def start(self) -> None:
        self.leases = AccountLeases(
            self.js,
            role=self.role,
            member=self.member,
            accounts=self.accounts,
            on_acquired=self._acquired,
            on_lost=self._lost,
            ttl_s=self.ttl_s,
            renew_s=self.ttl_s / 3,
        )
        await self.leases.start()
        self._task = asyncio.create_task(self.leases.run(self._stop), name=f"{self.role}-leases")
        self._task.add_done_callback(log_if_failed)

    async def stop(self) -> None:
        """Stop every account, then give the leases back (another member takes them at once)."""
        self._stop.set()
        if self.leases is not None:
            with contextlib.suppress(Exception):
                await self.leases.stop(release=True)
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, STOP_GRACE_S)
        for account in list(self._owned):
            await self._lost(account)

    async def _acquired(self, account: str, fence: int) -> None:
        stop = asyncio.Event()
        tasks = await self._start_account(account, fence, stop, self)
        for task in tasks:
            task.add_done_callback(log_if_failed)
        self._owned[account] = (stop, tasks, fence)
        log.info("account acquired", role=self.role, account=account, fence=fence, member=self.member)

    async def _lost(self, account: str) -> None:
        owned = self._owned.pop(account, None)
        if owned is None:
            return
        stop, tasks, fence = owned
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        if self._on_released is not None and account not in self._owned:  # (not when taken again meanwhile)
            self._on_released(account)
        log.warning("account released", role=self.role, account=account, fence=fence, member=self.member)
