"""The operator path into the risk gate: a signed record in the JetStream KV bucket `RISK_CONTROL`.

`trading-mcp risk halt|resume|set|show` writes / reads the record (signed with the operator token
from `<data dir>/operator_token`, mode 0600); the account authority watches it and journals a newer,
correctly signed revision as a `control` event, logging who changed what. See docs/RISK.md.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from bus.cluster import create_key_value
from schemas.common import DEFAULT_ACCOUNT
from tools.risk_control import ControlRefused, SignedControl, new_token

log = structlog.get_logger("risk_control")

BUCKET = "RISK_CONTROL"
KEY = "control"
TOKEN_FILE = "operator_token"


def load_or_create_token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = new_token()
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    return path.read_text().strip()


async def bucket(js: JetStreamContext):  # type: ignore[no-untyped-def]
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        # replicas and placement: bus.cluster.cluster_settings (TRADING_MCP_NATS_REPLICAS, ...)
        return await create_key_value(js, api.KeyValueConfig(bucket=BUCKET, history=16, storage=api.StorageType.FILE))


def key_of(account: str = DEFAULT_ACCOUNT) -> str:
    """The account's record: `control` for the default account (as before accounts), `control.<id>` otherwise."""
    return KEY if account == DEFAULT_ACCOUNT else f"{KEY}.{account}"


async def read_signed(
    js: JetStreamContext,
    account: str = DEFAULT_ACCOUNT,
    kv: KeyValue | None = None,
) -> SignedControl | None:
    """The account's signed record, or None; ControlRefused("malformed_record") when the stored value is not one.
    `kv`: the bucket, when the caller keeps it (the authority reads every
    half second: looking the bucket up each time was a stream-info round trip of its own)."""
    kv = kv if kv is not None else await bucket(js)
    try:
        entry = await kv.get(key_of(account))
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    try:
        return SignedControl.model_validate_json(entry.value)
    except ValidationError as exc:
        raise ControlRefused(
            "malformed_record", f"the risk control record in KV is not a signed record ({exc.error_count()} errors)"
        ) from exc


async def write_signed(js: JetStreamContext, signed: SignedControl, account: str = DEFAULT_ACCOUNT) -> int:
    kv = await bucket(js)
    return int(await kv.put(key_of(account), signed.model_dump_json().encode()))
