"""The operator path into the risk gate: a signed record in the JetStream KV bucket `RISK_CONTROL`.

`trading-mcp risk halt|resume|set|show` writes / reads the record (signed with the operator token
from `<data dir>/operator_token`, mode 0600); every serving process polls it and applies a newer,
correctly signed revision to its gate, logging who changed what. See docs/RISK.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from mcp_server.gauges import observe_risk
from tools.risk import RiskGate, RiskLimits
from tools.risk_control import ControlRefused, RiskControl, SignedControl, apply, new_token, verify

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
        return await js.create_key_value(api.KeyValueConfig(bucket=BUCKET, history=16, storage=api.StorageType.FILE))


async def read_signed(js: JetStreamContext) -> SignedControl | None:
    kv = await bucket(js)
    try:
        entry = await kv.get(KEY)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    return SignedControl.model_validate_json(entry.value)


async def write_signed(js: JetStreamContext, signed: SignedControl) -> int:
    kv = await bucket(js)
    return int(await kv.put(KEY, signed.model_dump_json().encode()))


class ControlFollower:
    """Applies the operator's newest signed record to one gate."""

    def __init__(self, js: JetStreamContext, gate: RiskGate, token: str, configured: RiskLimits) -> None:
        self.js, self.gate, self.token, self.configured = js, gate, token, configured
        self.revision = 0

    async def refresh(self) -> RiskControl | None:
        signed = await read_signed(self.js)
        if signed is None:
            return None
        try:
            control = verify(signed, self.token)
        except ControlRefused as refused:
            log.warning("risk control refused", code=refused.code)
            return None
        if control.revision <= self.revision:
            return control
        changed = apply(self.gate, control, self.configured)
        self.revision = control.revision
        observe_risk(self.gate)
        log.warning(
            "risk control applied",
            revision=control.revision,
            operator=control.operator,
            limits_changed=list(changed),
            state=self.gate.state.value,
            reason=control.reason,
        )
        return control

    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # NATS hiccups must not end the operator path
                log.warning("risk control poll failed", error=repr(exc))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
