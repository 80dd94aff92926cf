"""The order authority's signature on the commands it publishes (`decisions.order_intent`, `decisions.order_cancel`).

The bus is locked with per-role credentials (`bus.credentials`), so only the authority may publish on
those subjects. The signature is the second lock, for deployments whose NATS is not locked down: the
authority signs each command's exact bytes with a key only it and the simulator hold, and the
simulator ignores (and counts) a command whose signature is missing or wrong.

The key is `<data dir>/authority_key` (mode 0600, made on first use) or `TRADING_MCP_AUTHORITY_KEY`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

HEADER = "Trading-Authority-Signature"
KEY_FILE = "authority_key"
ENV = "TRADING_MCP_AUTHORITY_KEY"


def load_or_create_key(data_dir: Path) -> bytes:
    """The key from the environment, else from the data dir (created 0600 on first use)."""
    if env := os.environ.get(ENV):
        return env.encode()
    path = data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip().encode()


def sign(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(key: bytes, data: bytes, signature: str | None) -> bool:
    return bool(signature) and hmac.compare_digest(sign(key, data), signature or "")
