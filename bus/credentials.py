"""The locked bus: one NATS user per role, and what each role may publish.

The embedded server (`bus.embedded.ensure_embedded`) is started with the `authorization` block that
`server_authorization` renders from `<data dir>/nats-auth.json` (mode 0600, made by
`ensure_credentials`: role -> random password; the user name is the role). Every service connects
with `bus.jetstream.connect(url, name, role=..., data_dir=...)`, which passes `nats_auth(role,
data_dir)` to `nats.connect`.

Against a NATS_URL deployment (a real cluster) credentials come from the environment, per service:
`NATS_CREDS` (a .creds file), else `NATS_USER` + `NATS_PASSWORD`, else `NATS_TOKEN`. Each variable
may be suffixed with the role (`NATS_CREDS_GATEWAY`, `NATS_USER_EXECSIM`, ...), which wins over the
plain one, so that processes sharing one environment (`trading-mcp up` with NATS_URL) still connect
as different users. See docs/RUNBOOK.md, "NATS credentials and permissions".

Publish permissions (subscribe: everything, for every role), besides the common set:
- admin (provisioning, `trading-mcp reset`): everything;
- authority (the order authority): decisions.order_intent, decisions.risk_denied, decisions.order_cancel,
  account.> (its journal), orders.> (replies), $KV.ACCOUNT_SNAPSHOT.>; it may answer requests;
- execsim (the execution simulator): executions.>, $KV.EXECSIM_SNAPSHOT.>;
- gateway (webhook gateways): signals.>, $KV.webhook_ids.>, $KV.idempotency_keys.>, and it may create
  exactly those two KV streams (their TTLs are gateway settings);
- mcp (MCP servers, the bridge, the agent): orders.request.>, decisions.agent, $KV.STRATEGY_SNAPSHOT.> (the
  strategy-mode bridge stores its strategies' state);
- operator (the CLI, `trading-mcp risk`): $KV.RISK_CONTROL.>, orders.request.>.

Common set (every role): the JetStream API needed to read streams and run consumers (stream info,
names, list, message get, direct get, every consumer operation), acks (`$JS.ACK.>`), flow control
(`$JS.FC.>`) and replies (`_INBOX.>`). Creating, updating, deleting and purging streams, deleting
stream messages, snapshots, restores and the rest of the JetStream API are admin only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS

from bus.cluster import parse_servers, shown

ROLES: tuple[str, ...] = ("admin", "authority", "execsim", "gateway", "mcp", "operator")
AUTH_FILE = "nats-auth.json"

# Bucket names of the gateway's seen-id store (gateway/replay.py: SEEN_BUCKET, IDEMPOTENCY_BUCKET).
# bus may not import gateway, so they are repeated here; tests/bus checks that they agree.
GATEWAY_BUCKETS: tuple[str, ...] = ("webhook_ids", "idempotency_keys")

# The JetStream API a non-admin role may call: read stream metadata and messages, run consumers.
JS_API_READ: tuple[str, ...] = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.>",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.MSG.GET.>",
    "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.>",
)
# Belt and braces: never allowed to a non-admin role, whatever its allow list says.
JS_API_DENY: tuple[str, ...] = (
    "$JS.API.STREAM.CREATE.>",
    "$JS.API.STREAM.UPDATE.>",
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
)
COMMON_PUBLISH: tuple[str, ...] = (*JS_API_READ, "$JS.ACK.>", "$JS.FC.>", "_INBOX.>")

PUBLISH: dict[str, tuple[str, ...]] = {
    "admin": (">",),
    "authority": (
        "decisions.order_intent",
        "decisions.risk_denied",
        "decisions.order_cancel",
        "account.>",
        "orders.>",
        "$KV.ACCOUNT_SNAPSHOT.>",
        "$KV.ACCOUNT_LEASES.>",
    ),
    "execsim": ("executions.>", "$KV.EXECSIM_SNAPSHOT.>", "$KV.ACCOUNT_LEASES.>"),
    "gateway": (
        "signals.>",
        *(f"$KV.{b}.>" for b in GATEWAY_BUCKETS),
        # the gateway opens its buckets with its own TTLs (settings), so it may create exactly those two
        *(f"$JS.API.STREAM.CREATE.KV_{b}" for b in GATEWAY_BUCKETS),
    ),
    "mcp": ("orders.request.>", "decisions.agent", "$KV.STRATEGY_SNAPSHOT.>"),
    "operator": ("$KV.RISK_CONTROL.>", "orders.request.>"),
}
# Roles that answer requests sent to them (their reply may go to any reply subject the requester chose).
ANSWERS_REQUESTS: frozenset[str] = frozenset({"authority"})

_ENV_KINDS = ("CREDS", "USER", "PASSWORD", "TOKEN")


class CredentialsRefused(ConnectionError):
    """The server answered the first connect with an authorization violation (missing or wrong credentials)."""


async def connect_with_credentials(
    url: str | Sequence[str],
    *,
    role: str | None,
    data_dir: Path | None,
    error_cb: Callable[[Exception], Awaitable[None]] | None = None,
    **options: Any,
) -> NATS:
    """`nats.connect(servers, **options)` with the credentials of `role` (none when `role` is None).

    `url` is one server URL, several separated by commas (a cluster's seed list, as NATS_URL may hold
    it), or a list: `bus.cluster.parse_servers` splits and checks it (InvalidNatsUrl names a bad entry),
    and the client connects to any of them and fails over to the others.

    nats-py retries a failed first connect forever when `max_reconnect_attempts=-1`; that is right
    while the server is starting, wrong when it refuses the credentials. This raises
    CredentialsRefused instead, on the first authorization violation before the connection is up.
    """
    refused = asyncio.Event()
    connected = False

    async def on_error(exc: Exception) -> None:
        # nats-py reports a refused CONNECT as a plain errors.Error("nats: 'Authorization Violation'")
        if not connected and (
            isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()
        ):
            refused.set()
        if error_cb is not None:
            await error_cb(exc)

    servers = parse_servers(url)
    auth = nats_auth(role, data_dir) if role is not None else {}
    nc = NATS()
    connecting = asyncio.ensure_future(nc.connect(servers, error_cb=on_error, **options, **auth))
    watching = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait({connecting, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
    if connecting.done():
        connecting.result()  # raises what connect raised
        connected = True
        return nc
    connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    with contextlib.suppress(Exception):
        await nc.close()
    who = f"role {role!r}" if role is not None else "a client without credentials"
    raise CredentialsRefused(
        f"NATS at {shown(servers)} refused {who} (authorization violation): check {AUTH_FILE} in the data dir "
        "or NATS_CREDS / NATS_USER + NATS_PASSWORD / NATS_TOKEN"
    )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown NATS role {role!r}; expected one of {', '.join(ROLES)}")


def ensure_credentials(data_dir: Path) -> dict[str, str]:
    """Role -> password from `<data_dir>/nats-auth.json`, creating the file (mode 0600) if missing.

    Safe when several processes race: the file appears complete or not at all (written aside, then
    hard-linked into place). Roles missing from an older file are added.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / AUTH_FILE
    for _ in range(5):
        try:
            passwords = json.loads(path.read_text())
        except FileNotFoundError:
            passwords = None
        if passwords is not None:
            missing = [r for r in ROLES if r not in passwords]
            if not missing:
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)
                return {r: str(passwords[r]) for r in ROLES}
            passwords.update({r: secrets.token_urlsafe(24) for r in missing})
            _write_private(path, passwords, replace=True)
            continue
        with contextlib.suppress(FileExistsError):
            _write_private(path, {r: secrets.token_urlsafe(24) for r in ROLES}, replace=False)
    raise RuntimeError(f"could not create {path}")


def _write_private(path: Path, passwords: dict[str, str], *, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(passwords, f, indent=2)
            f.write("\n")
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError when another process won the race
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _env(kind: str, role: str) -> str | None:
    return os.environ.get(f"NATS_{kind}_{role.upper()}") or os.environ.get(f"NATS_{kind}")


def nats_auth(role: str, data_dir: Path | None) -> dict[str, str]:
    """The credential keyword arguments of `nats.connect` for a service of this role.

    1. the environment: NATS_CREDS -> user_credentials; NATS_USER (+ NATS_PASSWORD) -> user/password;
       NATS_TOKEN -> token (each also as NATS_<KIND>_<ROLE>, which wins over the plain variable);
    2. the embedded server's file `<data_dir>/nats-auth.json`, if it exists: user = role;
    3. nothing (an unlocked server).
    """
    _check_role(role)
    if creds := _env("CREDS", role):
        return {"user_credentials": creds}
    if user := _env("USER", role):
        return {"user": user, "password": _env("PASSWORD", role) or ""}
    if token := _env("TOKEN", role):
        return {"token": token}
    if data_dir is not None:
        path = data_dir / AUTH_FILE
        with contextlib.suppress(FileNotFoundError):
            passwords = json.loads(path.read_text())
            if role in passwords:
                return {"user": role, "password": str(passwords[role])}
    return {}


def _quoted(items: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def role_permissions(role: str) -> dict[str, object]:
    """The permissions of one role, as data (what `server_authorization` renders)."""
    _check_role(role)
    if role == "admin":
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    allow = [*PUBLISH[role], *COMMON_PUBLISH]
    deny = [d for d in JS_API_DENY if not any(a.startswith(d[:-1]) for a in allow)]
    perms: dict[str, object] = {"publish": {"allow": allow, "deny": deny}, "subscribe": {"allow": [">"]}}
    if role in ANSWERS_REQUESTS:
        perms["allow_responses"] = True
    return perms


def server_authorization(passwords: dict[str, str]) -> str:
    """The nats-server `authorization { users = [...] }` block for these passwords (role -> password)."""
    lines = ["authorization {", "  users = ["]
    for role in ROLES:
        if role not in passwords:
            continue
        perms = role_permissions(role)
        pub = perms["publish"]
        assert isinstance(pub, dict)
        pub_text = f"allow: {_quoted(pub['allow'])}"
        if pub.get("deny"):
            pub_text += f", deny: {_quoted(pub['deny'])}"
        extra = ", allow_responses: true" if perms.get("allow_responses") else ""
        lines.append(
            f"    {{user: {json.dumps(role)}, password: {json.dumps(passwords[role])}, permissions: {{\n"
            f"      publish: {{{pub_text}}},\n"
            f'      subscribe: {{allow: [">"]}}{extra}\n'
            "    }}"
        )
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"
