"""Running on a NATS cluster: the seed list of servers, and the replicas and placement of what we create.

`NATS_URL` may name several seed servers, comma-separated (`nats://a:4222,nats://b:4222,nats://c:4222`):
`parse_servers` splits and checks it, and `bus.credentials.connect_with_credentials` (under every
`bus.jetstream.connect`) hands the list to nats-py, which connects to any of them and fails over to the
others (and to the members the server announces).

Every stream and KV bucket the code creates takes its replica count and placement from the environment
(`cluster_settings`):

- `TRADING_MCP_NATS_REPLICAS` — replicas per stream and bucket, default 1 (a single server); 3 on a
  three-node cluster keeps every acknowledged message through the loss of one node;
- `TRADING_MCP_NATS_PLACEMENT_CLUSTER` — the cluster to place them in (optional);
- `TRADING_MCP_NATS_PLACEMENT_TAGS` — server tags, comma-separated (optional).

`stream_config` / `kv_config` apply them to a config; `create_key_value` creates a bucket with them
(nats-py's own `create_key_value` drops the placement).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from nats.js import JetStreamContext, api
from nats.js.errors import APIError
from nats.js.kv import KeyValue

REPLICAS_ENV = "TRADING_MCP_NATS_REPLICAS"
PLACEMENT_CLUSTER_ENV = "TRADING_MCP_NATS_PLACEMENT_CLUSTER"
PLACEMENT_TAGS_ENV = "TRADING_MCP_NATS_PLACEMENT_TAGS"
MAX_REPLICAS = 5  # the JetStream limit

_SCHEMES = ("nats", "tls", "ws", "wss")


class InvalidNatsUrl(ValueError):
    """NATS_URL (or a URL given to connect) is not a comma-separated list of NATS server URLs."""


class InvalidClusterSetting(ValueError):
    """TRADING_MCP_NATS_REPLICAS or a placement variable has a value JetStream cannot take."""


def parse_servers(url: str | Sequence[str]) -> list[str]:
    """The seed servers in `url`: one URL, a comma-separated list, or a list; each checked.

    An entry may be `nats://host:port`, `tls://...`, `ws(s)://...` or a bare `host:port` / `host`
    (nats-py reads those as nats://, default port 4222). Raises InvalidNatsUrl naming the bad entry.
    """
    entries = [part.strip() for part in url.split(",")] if isinstance(url, str) else [str(u).strip() for u in url]
    if not entries or entries == [""]:
        raise InvalidNatsUrl("NATS_URL is empty: expected nats://host:port, or several separated by commas")
    servers: list[str] = []
    for n, entry in enumerate(entries, 1):
        where = f"NATS_URL entry {n} of {len(entries)}" if len(entries) > 1 else "NATS_URL"
        if not entry:
            raise InvalidNatsUrl(f"{where} is empty (a stray comma?) in {shown(entries)}")
        problem = _url_problem(entry)
        if problem:
            raise InvalidNatsUrl(
                f"{where} ({_redacted(entry)!r}) is not a NATS server URL: {problem}; expected nats://host:port, "
                "several separated by commas"
            )
        servers.append(entry)
    websocket = {urlsplit(s).scheme in ("ws", "wss") for s in servers if "://" in s}
    if len(websocket) > 1:
        raise InvalidNatsUrl(f"NATS_URL mixes websocket (ws://, wss://) and plain NATS URLs: {shown(servers)}")
    return servers


def shown(entries: Sequence[str]) -> str:
    """The servers comma-separated, passwords masked (for messages and logs)."""
    return ",".join(_redacted(e) for e in entries)


def _redacted(entry: str) -> str:
    """The entry without a password (user:pass@host -> user:***@host)."""
    if "@" not in entry:
        return entry
    head, _, tail = entry.rpartition("@")
    scheme, sep, userinfo = head.rpartition("://")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{tail}" if ":" in userinfo else entry


def _url_problem(entry: str) -> str | None:
    if any(ch.isspace() for ch in entry):
        return "it contains whitespace"
    text = entry if "://" in entry else f"nats://{entry}"
    parts = urlsplit(text)
    if parts.scheme not in _SCHEMES:
        return f"unknown scheme {parts.scheme!r} (use one of {', '.join(s + '://' for s in _SCHEMES)})"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "it has a path, query or fragment"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "the port is not a number from 1 to 65535"
    return None


@dataclass(frozen=True)
class ClusterSettings:
    """Replicas and placement for every stream and bucket we create."""

    replicas: int = 1
    placement: api.Placement | None = None


def cluster_settings(environ: Mapping[str, str] | None = None) -> ClusterSettings:
    """Read TRADING_MCP_NATS_REPLICAS (default 1) and the optional placement variables.

    Raises InvalidClusterSetting for a replica count that is not a whole number from 1 to 5. (More
    replicas than the cluster has servers is the server's to refuse, when the stream is created.)
    """
    env = os.environ if environ is None else environ
    raw = env.get(REPLICAS_ENV, "").strip()
    replicas = 1
    if raw:
        try:
            replicas = int(raw)
        except ValueError:
            raise InvalidClusterSetting(
                f"{REPLICAS_ENV}={raw!r} is not a whole number: set it to the replicas per stream, "
                f"1 to {MAX_REPLICAS} (3 on a three-node cluster)"
            ) from None
        if not 1 <= replicas <= MAX_REPLICAS:
            raise InvalidClusterSetting(
                f"{REPLICAS_ENV}={raw!r} is out of range: JetStream keeps 1 to {MAX_REPLICAS} replicas of a stream"
            )
    cluster = env.get(PLACEMENT_CLUSTER_ENV, "").strip() or None
    if cluster is not None and any(ch.isspace() for ch in cluster):
        raise InvalidClusterSetting(f"{PLACEMENT_CLUSTER_ENV}={cluster!r}: a cluster name has no whitespace")
    tags_raw = env.get(PLACEMENT_TAGS_ENV, "")
    tags = [t.strip() for t in tags_raw.split(",")] if tags_raw.strip() else []
    if any(not t for t in tags):
        raise InvalidClusterSetting(
            f"{PLACEMENT_TAGS_ENV}={tags_raw!r} has an empty tag (a stray comma?): expected tags separated by commas"
        )
    placement = api.Placement(cluster=cluster, tags=tags or None) if cluster or tags else None
    return ClusterSettings(replicas=replicas, placement=placement)


def replicas_and_placement(environ: Mapping[str, str] | None = None) -> tuple[int, api.Placement | None]:
    settings = cluster_settings(environ)
    return settings.replicas, settings.placement


def stream_config(config: api.StreamConfig, settings: ClusterSettings | None = None) -> api.StreamConfig:
    """`config` with the replicas and placement of `settings` (default: the environment's)."""
    s = settings or cluster_settings()
    return dataclasses.replace(config, num_replicas=s.replicas, placement=s.placement)


def kv_config(config: api.KeyValueConfig, settings: ClusterSettings | None = None) -> api.KeyValueConfig:
    s = settings or cluster_settings()
    return dataclasses.replace(config, replicas=s.replicas, placement=s.placement)


T = TypeVar("T")
PEER_OFFLINE_RETRY_S = 15.0  # how long a creation is tried again while the cluster says a peer is offline


async def while_peers_offline(create: Callable[[], Awaitable[T]]) -> T:
    """`create()` (a stream's or bucket's creation), tried again for up to PEER_OFFLINE_RETRY_S while the cluster
    answers that a peer it needs is offline (a node restarting, or one that missed its heartbeats on a loaded
    machine: CI saw it once). Any other refusal (a placement no server matches, ...) is raised at once."""
    deadline = time.monotonic() + PEER_OFFLINE_RETRY_S
    delay = 0.2
    while True:
        try:
            return await create()
        except APIError as exc:
            if "peer offline" not in str(exc.description or "") or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def add_stream(js: JetStreamContext, config: api.StreamConfig) -> api.StreamInfo:
    """`js.add_stream(config)`, tried again while a peer it needs is offline (`while_peers_offline`)."""
    return await while_peers_offline(lambda: js.add_stream(config))


async def create_key_value(
    js: JetStreamContext, config: api.KeyValueConfig, settings: ClusterSettings | None = None
) -> KeyValue:
    """`_create_key_value`, tried again while a peer it needs is offline (`while_peers_offline`)."""
    return await while_peers_offline(lambda: _create_key_value(js, config, settings))


async def _create_key_value(
    js: JetStreamContext, config: api.KeyValueConfig, settings: ClusterSettings | None = None
) -> KeyValue:
    """`js.create_key_value(config)` with the replicas and placement of `settings` (default: the environment's).

    nats-py builds the bucket's stream itself and leaves `KeyValueConfig.placement` out of it, so while
    it creates this bucket, its stream `KV_<bucket>` gets the placement on the way to `add_stream`."""
    config = kv_config(config, settings)
    placement = config.placement
    if placement is None:
        return await js.create_key_value(config)
    stream_name = f"KV_{config.bucket}"
    add_stream = js.add_stream

    async def placed(cfg: api.StreamConfig | None = None, **params):  # type: ignore[no-untyped-def]
        if cfg is not None and cfg.name == stream_name:
            cfg = dataclasses.replace(cfg, placement=placement)
        return await add_stream(cfg, **params)

    previous = vars(js).get("add_stream")
    js.add_stream = placed  # type: ignore[method-assign]
    try:
        return await js.create_key_value(config)
    finally:
        if vars(js).get("add_stream") is placed:  # not replaced meanwhile by another bucket's creation
            if previous is None:
                del js.add_stream  # back to the class's method
            else:
                js.add_stream = previous  # type: ignore[method-assign]
