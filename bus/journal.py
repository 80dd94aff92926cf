"""The account journal on the bus: the authority appends, every other process follows it in order.

Stream `ACCOUNT` (subjects `account.>`), one subject per account. `stage_append` publishes with
`Nats-Expected-Last-Subject-Sequence`, so an append by a writer whose view is behind the journal is
refused instead of forking the account: the authority then folds the journal again before it decides.
`JournalFollower` hands every entry, in sequence order, to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from bus.jetstream import CORRELATION_ID, MSG_ID, log_if_failed
from schemas.account import ACCOUNT_STREAM, AccountEvent, journal_subject

log = logging.getLogger(__name__)

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"


async def ensure_journal(js: JetStreamContext) -> None:
    try:
        await js.stream_info(ACCOUNT_STREAM)
    except NotFoundError:
        await js.add_stream(
            api.StreamConfig(
                name=ACCOUNT_STREAM,
                subjects=["account.>"],
                storage=api.StorageType.FILE,
                duplicate_window=600.0,
            )
        )


async def stage_append(
    js: JetStreamContext, account: str, event: AccountEvent, *, msg_id: str, expected_seq: int
) -> asyncio.Future[Any]:
    """Send one event now and return the future of its acknowledgement (a PubAck, or the JetStream error:
    a failed expected-sequence check among them). Entries sent one after another on a connection are
    stored in that order, so a writer may keep many in flight (a group commit)."""
    headers = {MSG_ID: msg_id, EXPECTED_LAST_SUBJECT_SEQ: str(expected_seq), CORRELATION_ID: msg_id}
    return await js.publish_async(journal_subject(account), event.model_dump_json().encode(), headers=headers)


Apply = Callable[[int, AccountEvent], Any]


class JournalFollower:
    """Fold an account's journal, from `after + 1`, in order; then keep following. `caught_up` is set
    once every entry present at start has been applied; `applied_seq` is the last sequence folded."""

    def __init__(self, js: JetStreamContext, apply: Apply, account: str, after: int = 0) -> None:
        self._js = js
        self._apply = apply
        self._account = account
        self._after = after
        self.applied_seq = after
        self.caught_up = asyncio.Event()
        self.progress = asyncio.Condition()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await ensure_journal(self._js)
        subject = journal_subject(self._account)
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE if self._after else api.DeliverPolicy.ALL,
            opt_start_seq=self._after + 1 if self._after else None,
            filter_subject=subject,
            inactive_threshold=60.0,
        )
        self._sub = await self._js.pull_subscribe(subject, stream=ACCOUNT_STREAM, config=config)
        info = await self._sub.consumer_info()
        if info.num_pending == 0:
            self.caught_up.set()
        self._task = asyncio.create_task(self._run(), name=f"journal-{self._account}")
        self._task.add_done_callback(log_if_failed)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = await self._sub.fetch(512, timeout=0.5)
            except TimeoutError:
                continue
            except Exception as exc:
                log.warning("journal follower: fetch failed (%r); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq <= self.applied_seq:
                    continue
                try:
                    result = self._apply(seq, AccountEvent.model_validate_json(msg.data))
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("journal entry %s could not be applied", seq)
                self.applied_seq = seq
                if msg.metadata.num_pending == 0:
                    self.caught_up.set()
            async with self.progress:
                self.progress.notify_all()

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until entry `seq` is folded; False on timeout."""
        if self.applied_seq >= seq:
            return True
        with contextlib.suppress(TimeoutError):
            async with self.progress:
                await asyncio.wait_for(self.progress.wait_for(lambda: self.applied_seq >= seq), timeout)
        return self.applied_seq >= seq

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2)
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
