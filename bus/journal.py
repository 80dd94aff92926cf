"""The account journal on the bus: the authority appends, every other process follows it in order.

Stream `ACCOUNT` (subjects `account.>`), one subject per account. `stage_append` publishes with
`Nats-Expected-Last-Subject-Sequence`, so an append by a writer whose view is behind the journal is
refused instead of forking the account: the authority then folds the journal again before it decides.
`JournalFollower` hands every entry, in sequence order, to a callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from bus.cluster import stream_config
from bus.jetstream import CORRELATION_ID, MSG_ID, Follower
from schemas.account import ACCOUNT_STREAM, AccountEvent, journal_subject

log = logging.getLogger(__name__)

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"


async def ensure_journal(js: JetStreamContext) -> None:
    try:
        await js.stream_info(ACCOUNT_STREAM)
    except NotFoundError:
        await js.add_stream(
            stream_config(
                api.StreamConfig(
                    name=ACCOUNT_STREAM,
                    subjects=["account.>"],
                    storage=api.StorageType.FILE,
                    duplicate_window=600.0,
                )
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


class JournalFollower(Follower):
    """Fold an account's journal, from `after + 1`, in order, into `apply(seq, event)`; then keep following."""

    def __init__(self, js: JetStreamContext, apply: Apply, account: str, after: int = 0) -> None:
        def handler(msg: Msg) -> Any:
            return apply(msg.metadata.sequence.stream, AccountEvent.model_validate_json(msg.data))

        super().__init__(js, stream=ACCOUNT_STREAM, subject=journal_subject(account), handler=handler, after=after)

    async def start(self) -> None:
        await ensure_journal(self._js)
        await super().start()
