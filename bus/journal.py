"""The account journal on the bus: the authority appends, every other process follows it in order.

One stream per account (`ACCOUNT` for the default account, `ACCOUNT_<id>` for the others), subject
`account.<id>.events`. `stage_append` publishes with `Nats-Expected-Last-Sequence` (the stream is the
account's alone, so its last sequence is the account's last entry; a clustered stream refuses pipelined
subject-sequence checks, but not this one), so an append by a writer whose view is behind the journal is
refused instead of forking the account: the authority then folds the journal again before it decides.
`JournalFollower` hands every entry, in sequence order, to a callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from bus.cluster import add_stream, stream_config
from bus.jetstream import CORRELATION_ID, MSG_ID, Follower, acks_of
from schemas.account import AccountEvent, account_of_stream, journal_stream, journal_subject
from schemas.common import DEFAULT_ACCOUNT

log = logging.getLogger(__name__)

EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
ACK_DEADLINE_S = 30.0  # stage_append's default: an append unanswered by then fails


def journal_config(account: str = DEFAULT_ACCOUNT) -> api.StreamConfig:
    """The account's journal stream (file storage, the replicas and placement of bus.cluster)."""
    return stream_config(
        api.StreamConfig(
            name=journal_stream(account),
            subjects=[journal_subject(account)],
            storage=api.StorageType.FILE,
            duplicate_window=600.0,
        )
    )


async def ensure_journal(js: JetStreamContext, account: str = DEFAULT_ACCOUNT) -> None:
    """Create the account's journal stream if missing. The default account's stream `ACCOUNT` once took every
    `account.>` subject; it is narrowed to its own so the other accounts' streams can exist (where this
    connection may update streams: the admin's `provision` does it on a locked bus)."""
    name = journal_stream(account)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await add_stream(js, journal_config(account))
        return
    own = [journal_subject(account)]
    taken = list(info.config.subjects or [])
    if taken != own:
        info.config.subjects = own
        try:
            await js.update_stream(info.config)
            log.warning("journal stream %s narrowed to %s", name, own[0])
        except Exception as exc:  # a role without stream updates: provision (admin) does it
            log.info("journal stream %s still takes %s (%r)", name, taken, exc)


async def journal_accounts(js: JetStreamContext) -> list[str]:
    """Every account that has a journal stream, sorted."""
    accounts = (account_of_stream(info.config.name) for info in await js.streams_info())
    return sorted(a for a in accounts if a is not None)


async def stage_append(
    js: JetStreamContext,
    account: str,
    event: AccountEvent,
    *,
    msg_id: str,
    expected_seq: int,
    timeout: float = ACK_DEADLINE_S,
) -> asyncio.Future[api.PubAck]:
    """Send one event now and return the future of its acknowledgement (a PubAck, or the stream's `APIError`: a
    failed expected-sequence check among them; bus.jetstream.Acks), which completes within `timeout` seconds
    (nats.errors.TimeoutError). Entries sent one after another on a connection are stored in that order, so a
    writer may keep many in flight (a group commit)."""
    headers = {MSG_ID: msg_id, EXPECTED_LAST_SEQ: str(expected_seq), CORRELATION_ID: msg_id}
    return await acks_of(js).send(journal_subject(account), event.model_dump_json().encode(), headers, timeout)


Apply = Callable[[int, AccountEvent], Any]


class JournalFollower(Follower):
    """Fold an account's journal, from `after + 1`, in order, into `apply(seq, event)`; then keep following."""

    def __init__(self, js: JetStreamContext, apply: Apply, account: str, after: int = 0) -> None:
        def handler(msg: Msg) -> Any:
            return apply(msg.metadata.sequence.stream, AccountEvent.model_validate_json(msg.data))

        super().__init__(
            js, stream=journal_stream(account), subject=journal_subject(account), handler=handler, after=after
        )
        self._account = account

    async def start(self) -> None:
        await ensure_journal(self._js, self._account)
        await super().start()


async def read_journal(
    js: JetStreamContext, account: str, timeout: float = 30.0, since: datetime | None = None
) -> list[tuple[int, AccountEvent]]:
    """The account's journal as it stands now, in order (with `since`, the entries stored from that time on);
    empty when the account has no journal stream (nothing is created for an account that never traded)."""
    try:
        await js.stream_info(journal_stream(account))
    except NotFoundError:
        return []
    entries: list[tuple[int, AccountEvent]] = []
    follower = Follower(
        js,
        stream=journal_stream(account),
        subject=journal_subject(account),
        handler=lambda msg: entries.append((msg.metadata.sequence.stream, AccountEvent.model_validate_json(msg.data))),
        since=since,
    )
    await follower.start()
    try:
        await asyncio.wait_for(follower.caught_up.wait(), timeout)
    finally:
        await follower.stop()
    return entries
