"""Snapshots of the account projection in KV `ACCOUNT_SNAPSHOT`: a fresh reader starts from one, then folds only the
journal entries after it (`bus.journal.JournalFollower(..., after=seq)`).

The authority writes them (`write_snapshot`) every few thousand durable journal entries and when it stops; every
reader tries one first (`read_snapshot`) and folds the journal from its start when there is none, or it is
unreadable, of another version, or stale. A snapshot holds the whole projection (finished orders included), so it
outgrows one NATS message: it is stored as zlib-compressed JSON (`tools.account.Account.to_snapshot`, no pickle: the
bucket is network input) in parts, keys `<account>.<i>`, and a head, key `<account>`:

    {"format": 1, "seq": n, "stream": "ACCOUNT", "created": "<the journal stream's creation time>",
     "entry": "<sha256 of journal entry n as stored>", "parts": k, "size": bytes, "sha256": "<of the blob>"}

Parts are written first, the head last. Staleness: the head names the journal stream and its creation time, and the
digest of the entry at `seq`; a reader uses the snapshot only when the stream it folds is that stream (a `trading-mcp
reset` or a deleted and re-created journal has another creation time) and still holds that very entry. A reader that
sees parts of another snapshot (written meanwhile) finds a digest that differs, reads once more, then folds from the
start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import os
import signal
import sys
import traceback
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from bus.cluster import create_key_value
from schemas.account import journal_stream
from tools.account import Account
from tools.clock import Clock

log = logging.getLogger(__name__)

BUCKET = "ACCOUNT_SNAPSHOT"
FORMAT = 1
PART_BYTES = 512 * 1024  # well under any server's max_payload (1 MB by default)
ENCODING = "zlib+json"


class StaleSnapshot(ValueError):
    """The snapshot is not of the journal the reader folds (reset, re-created, or behind its own parts)."""


async def open_bucket(js: JetStreamContext, create: bool = False, bucket: str = BUCKET) -> KeyValue | None:
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        if not create:
            return None
    from bus.embedded import KV_BUCKETS  # provisioning's bucket config (a locked bus: the admin made it already)

    config = next(b for b in KV_BUCKETS if b.bucket == bucket)
    return await create_key_value(js, config)


async def _journal_identity(js: JetStreamContext, account: str, seq: int) -> dict[str, Any]:
    """The journal stream's name and creation time, and the digest of its entry `seq` as stored."""
    stream = journal_stream(account)
    info = await js.stream_info(stream)
    if seq > info.state.last_seq:
        raise StaleSnapshot(f"the journal {stream} ends at {info.state.last_seq}, before {seq}")
    msg = await js.get_msg(stream, seq)
    return {
        "stream": stream,
        "created": None if info.created is None else info.created.isoformat(),
        "entry": hashlib.sha256(msg.data or b"").hexdigest(),
    }


def _encode(data: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)


CHILD_TIMEOUT_S = 60.0


class ForkedSnapshot:
    """The encoded snapshot of an account, built by a forked child from the copy-on-write image of this process at
    the instant of the fork, so the parent's event loop keeps deciding while it is built.

    Building one (`to_snapshot`, JSON, zlib) is ~60 ms of Python at 30k orders. In a thread it shares the GIL with
    the event loop, and every decision in flight waited: webhook -> fill p99 rose from ~20 to 80-170 ms in the 5 s
    windows after each snapshot at 100 signals/s (bench/pipeline_vs_gateway.py --timeline). A child runs on the
    other core and shares nothing; the parent pays the fork (page tables, a few ms) and copy-on-write faults.
    Where fork is missing (not Linux or macOS), the same work runs in a thread.
    """

    def __init__(self, account: Account) -> None:
        self.seq = account.seq
        self._pid = 0
        self._fd = -1
        self._account: Account | None = None
        if not hasattr(os, "fork"):
            self._account = account.detached()
            return
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: build, write, exit; never returns to the parent's code
            code = 1
            try:
                gc.disable()  # the image is frozen; a collection would only touch (and copy) pages
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.close(read_fd)
                blob = _encode(account.to_snapshot())
                view = memoryview(blob)
                while view:
                    view = view[os.write(write_fd, view) :]
                code = 0
            except BaseException:
                traceback.print_exc()  # to the service's stderr; the parent logs the failure
                sys.stderr.flush()
            finally:
                os._exit(code)
        os.close(write_fd)
        self._pid, self._fd = pid, read_fd

    async def blob(self) -> bytes:
        """The encoded snapshot (`_encode(account.to_snapshot())` as of the fork); raises if the child failed."""
        if self._account is not None:
            return await asyncio.to_thread(lambda: _encode(self._account.to_snapshot()))  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        done = loop.create_future()

        def readable() -> None:
            try:
                chunk = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError as exc:
                if not done.done():
                    done.set_exception(exc)
                return
            if chunk:
                chunks.append(chunk)
            elif not done.done():
                done.set_result(None)

        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, readable)
        try:
            await asyncio.wait_for(done, CHILD_TIMEOUT_S)
        finally:
            loop.remove_reader(self._fd)
            os.close(self._fd)
            status = await self._reap()
        if status != 0:
            raise RuntimeError(f"the snapshot child exited with status {status}")
        return b"".join(chunks)

    async def _reap(self) -> int:
        for _ in range(200):  # the child exits right after its last write: a few ms at most
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            await asyncio.sleep(0.01)
        os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)
        return -signal.SIGKILL


def _parts(blob: bytes) -> Iterator[bytes]:
    for start in range(0, len(blob), PART_BYTES):
        yield blob[start : start + PART_BYTES]


async def write_snapshot(js: JetStreamContext, account: str, seq: int, data: dict[str, Any] | ForkedSnapshot) -> int:
    """Store `data` (`Account.to_snapshot()` of the projection at journal entry `seq`, which must be durable, or a
    `ForkedSnapshot` of it) as the account's snapshot; returns its compressed size. Raises on failure: the caller
    logs it and goes on."""
    if isinstance(data, ForkedSnapshot):
        if data.seq != seq:
            raise ValueError(f"the snapshot is of {account}@{data.seq}, not @{seq}")
        blob = await data.blob()
    else:
        if data.get("seq") != seq or data.get("account_id") != account:
            raise ValueError(f"the snapshot is of {data.get('account_id')}@{data.get('seq')}, not {account}@{seq}")
        blob = await asyncio.to_thread(_encode, data)
    kv = await open_bucket(js, create=True)
    assert kv is not None
    identity = await _journal_identity(js, account, seq)
    await put_parts(kv, account, blob, {"format": FORMAT, "seq": seq, **identity, "encoding": ENCODING})
    return len(blob)


async def store_periodically(
    stop: asyncio.Event, step: Callable[[bool], Awaitable[bool]], every: float, absorb_every: float, what: str
) -> None:
    """The loop behind every snapshot a live process keeps of its streams (the simulator's fold, the strategy-mode
    bridge's strategies): until `stop`, `step(due)` every `absorb_every` s (at most `every`), the first right away.
    A step folds what the streams gained since (a little at a time, beside the live work) and, when `due` (`every` s
    since the last store, or none yet), stores the snapshot; it returns whether it stored one (False: nothing new,
    asked again at the next turn). A failure is logged and tried again at the next turn."""
    loop = asyncio.get_running_loop()
    stored_at: float | None = None
    first = True
    while not stop.is_set():
        if not first:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(absorb_every, every))
            if stop.is_set():
                return
        first = False
        try:
            if await step(stored_at is None or loop.time() - stored_at >= every):
                stored_at = loop.time()
        except Exception as exc:
            log.warning("%s not stored (%r); trying again later", what, exc)
            if stored_at is None:
                stored_at = loop.time()


async def put_parts(kv: KeyValue, key: str, blob: bytes, head: dict[str, Any]) -> None:
    """Store `blob` under `key` in parts (`<key>.<i>`, written first), then the head (`key`: `head` with the parts'
    count, size and digest); a previous snapshot's extra parts are deleted after."""
    previous = await _read_head(kv, key)
    parts = list(_parts(blob))
    for i, part in enumerate(parts):
        await kv.put(f"{key}.{i}", part)
    digest = hashlib.sha256(blob).hexdigest()
    await kv.put(key, json.dumps({**head, "parts": len(parts), "size": len(blob), "sha256": digest}).encode())
    for i in range(len(parts), int(previous.get("parts", 0)) if previous else 0):
        with contextlib.suppress(Exception):
            await kv.delete(f"{key}.{i}")


async def get_parts(kv: KeyValue, key: str) -> tuple[dict[str, Any], bytes] | None:
    """The head and blob `put_parts` stored under `key`, or None when there is none. A blob whose parts are not the
    head's (another snapshot was being written) is read once more, then StaleSnapshot."""
    for attempt in (1, 2):
        head = await _read_head(kv, key)
        if head is None:
            return None
        try:
            return head, await _read_blob(kv, key, head)
        except (StaleSnapshot, KeyNotFoundError):
            if attempt == 2:
                raise
    return None


async def _read_head(kv: KeyValue, account: str) -> dict[str, Any] | None:
    try:
        entry = await kv.get(account)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    head = json.loads(entry.value)
    return head if isinstance(head, dict) else None


async def _read_blob(kv: KeyValue, account: str, head: dict[str, Any]) -> bytes:
    chunks = [(await kv.get(f"{account}.{i}")).value or b"" for i in range(int(head["parts"]))]
    blob = b"".join(chunks)
    if len(blob) != head["size"] or hashlib.sha256(blob).hexdigest() != head["sha256"]:
        raise StaleSnapshot("the parts are not the head's (a snapshot was being written)")
    return blob


def _decode(blob: bytes, clock: Clock | None) -> Account:
    paused = gc.isenabled()
    gc.disable()  # hundreds of thousands of small objects, none of them garbage: collections would only slow it down
    try:
        return Account.from_snapshot(json.loads(zlib.decompress(blob)), clock)
    finally:
        if paused:
            gc.enable()


async def read_snapshot(js: JetStreamContext, account: str, clock: Clock | None = None) -> tuple[int, Account] | None:
    """The account's newest usable snapshot and its journal sequence, or None (no bucket, no snapshot, another
    format, unreadable or stale: logged); the caller then folds the journal after that sequence (or from 1)."""
    try:
        kv = await open_bucket(js)
        if kv is None:
            log.info("no snapshot of account %s (no %s bucket): folding its journal from the start", account, BUCKET)
            return None
        stored = await get_parts(kv, account)  # a torn read (parts being rewritten) is read once more
        if stored is None:
            log.info("no snapshot of account %s: folding its journal from the start", account)
            return None
        head, blob = stored
        if head.get("format") != FORMAT or head.get("encoding") != ENCODING:
            raise StaleSnapshot(f"snapshot format {head.get('format')!r}/{head.get('encoding')!r}")
        seq = int(head["seq"])
        identity = await _journal_identity(js, account, seq)
        for key, value in identity.items():
            if head.get(key) != value:
                raise StaleSnapshot(f"the journal's {key} is {value!r}, the snapshot's {head.get(key)!r}")
        restored = await asyncio.to_thread(_decode, blob, clock)
        if restored.seq != seq or restored.account_id != account:
            raise StaleSnapshot(f"the snapshot holds {restored.account_id}@{restored.seq}, not {account}@{seq}")
        log.info("account %s restored from its snapshot at journal entry %d (%d bytes)", account, seq, len(blob))
        return seq, restored
    except Exception as exc:  # stale, unreadable, no journal stream or its entry gone, another version: all alike
        log.warning("snapshot of account %s not used (%r): folding its journal from the start", account, exc)
    return None
