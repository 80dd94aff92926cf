"""`trading-mcp accounts compare`: which account did better, each read from its journal (stream ACCOUNT).

Reads every account's journal with `bus.journal.JournalFollower` (connected like `trading-mcp risk`), then
`tools.compare.compare` measures them over one window: return, drawdown, Sharpe, orders, denials, fills.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.account import ACCOUNT_STREAM, AccountEvent
from schemas.common import ACCOUNT_PATTERN
from schemas.compare import AccountComparison

if TYPE_CHECKING:
    from nats.js import JetStreamContext

READ_TIMEOUT_S = 30.0
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Usage(Exception):
    """A refused command line: a stable code and a message (exit 2)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def add_parser(subparsers: Any) -> None:
    """`accounts compare` under the `trading-mcp` parser's subcommands."""
    from bus.embedded import default_data_dir

    accounts = subparsers.add_parser("accounts", help="operator: compare the accounts' performance from their journals")
    actions = accounts.add_subparsers(dest="accounts_command", required=True)
    cp = actions.add_parser(
        "compare",
        help="return, drawdown, Sharpe, orders, denials and fills of each account over one window",
        description="Each account's journal (stream ACCOUNT) folded and measured over the same window; "
        "equity is sampled every --interval for the Sharpe ratio. Best return first.",
    )
    cp.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="NATS store and credentials (default $XDG_DATA_HOME/trading-mcp); NATS_URL connects elsewhere",
    )
    cp.add_argument(
        "--accounts", default=None, metavar="A,B", help="accounts to compare (default: every account with a journal)"
    )
    cp.add_argument("--start", default=None, metavar="ISO", help="window start (default: the first journal entry)")
    cp.add_argument("--end", default=None, metavar="ISO", help="window end (default: the last journal entry)")
    cp.add_argument("--interval", default="1h", help="equity sampling interval for Sharpe: 30m, 1h, 1d (default 1h)")
    cp.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    cp.set_defaults(func=cmd_compare)
    ow = actions.add_parser(
        "owners",
        help="which authority and simulator process owns each account now (its lease), with the fence",
        description="Each account of the accounts file: the pool member holding its authority and its simulator "
        "lease (KV ACCOUNT_LEASES) and the fence it stamps. An account nobody owns is not being traded.",
    )
    ow.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="NATS store, credentials and accounts.toml (default $XDG_DATA_HOME/trading-mcp)",
    )
    ow.add_argument("--json", action="store_true", help="print one JSON object")
    ow.set_defaults(func=cmd_owners)


def cmd_owners(args: argparse.Namespace) -> int:
    """Print each account's authority and simulator owners; exit 1 when an account has none."""
    import json

    from bus.accounts import AccountsFileError, load_accounts

    try:
        accounts = load_accounts(args.data_dir).ids
    except AccountsFileError as exc:
        print(f"trading-mcp accounts owners: {exc}", file=sys.stderr)
        return 2
    try:
        owners = asyncio.run(_owners(args.data_dir, accounts))
    except ConnectionError as exc:
        print(f"trading-mcp accounts owners: cannot reach NATS: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(owners, indent=2))
    else:
        print(f"{'account':<20} {'authority (fence)':<44} {'simulator (fence)':<44}")
        for account, roles in owners.items():
            cells = [f"{o['member']} ({o['fence']})" if o else "- nobody -" for o in roles.values()]
            print(f"{account:<20} {cells[0]:<44} {cells[1]:<44}")
    return 0 if all(all(roles.values()) for roles in owners.values()) else 1


async def _owners(data_dir: Path, accounts: list[str]) -> dict[str, dict[str, dict[str, object] | None]]:
    from bus.lease import lease_bucket, read_lease

    async with _operator_js(data_dir) as js:
        kv = await lease_bucket(js)
        out: dict[str, dict[str, dict[str, object] | None]] = {}
        for account in accounts:
            out[account] = {}
            for role in ("authority", "execsim"):
                lease = await read_lease(kv, role, account)
                out[account][role] = (
                    None
                    if lease is None
                    else {"member": lease.member, "fence": lease.fence, "acquired_at": lease.acquired_at}
                )
        return out


@contextlib.asynccontextmanager
async def _operator_js(data_dir: Path) -> AsyncIterator[JetStreamContext]:
    """JetStream as the operator: NATS_URL, else the data dir's embedded server (stopped after if we started it);
    ConnectionError when nobody answers."""
    from bus.embedded import ensure_embedded
    from bus.jetstream import connect

    embedded = None
    url = os.environ.get("NATS_URL")
    if not url:
        embedded = await asyncio.to_thread(ensure_embedded, data_dir)
        url = embedded.url
    try:
        nc = await asyncio.wait_for(connect(url, "accounts-cli", role="operator", data_dir=data_dir), 10)
    except TimeoutError as exc:
        raise ConnectionError(f"no answer from {url}") from exc
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
        if embedded is not None and embedded.owned:
            embedded.stop()


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        accounts = parse_accounts(args.accounts)
        start, end = parse_when("--start", args.start), parse_when("--end", args.end)
        interval = parse_interval(args.interval)
        if start is not None and end is not None and end < start:
            raise Usage("invalid_window", f"--end {end.isoformat()} is before --start {start.isoformat()}")
    except Usage as refused:
        print(f"trading-mcp accounts compare: {refused.code}: {refused.message}", file=sys.stderr)
        return 2
    from tools.compare import compare

    try:
        journals = asyncio.run(_read(args.data_dir, accounts))
    except ConnectionError as exc:
        print(f"trading-mcp accounts compare: cannot reach NATS: {exc}", file=sys.stderr)
        return 1
    if not journals:
        print(
            f"trading-mcp accounts compare: no account has a journal stream ({ACCOUNT_STREAM}, "
            f"{ACCOUNT_STREAM}_<id>) yet",
            file=sys.stderr,
        )
        return 1
    if (start is None or end is None) and not any(journals.values()):
        print("trading-mcp accounts compare: the journals are empty: give --start and --end", file=sys.stderr)
        return 1
    comparison = compare(journals, start, end, interval)
    print(comparison.model_dump_json(indent=2) if args.json else render(comparison))
    return 0


def parse_accounts(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    bad = [name for name in names if not re.fullmatch(ACCOUNT_PATTERN, name)]
    if not names or bad:
        raise Usage("invalid_option", f"--accounts takes account ids (letters, digits, _ and -), got {raw!r}")
    return list(dict.fromkeys(names))


def parse_when(name: str, raw: str | None) -> datetime | None:
    """An ISO date or time; without a zone it is UTC."""
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise Usage("invalid_window", f"{name} must be an ISO date like 2026-03-02 or 2026-03-02T09:00Z") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_interval(raw: str) -> timedelta:
    match = _INTERVAL.match(raw)
    interval = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))}) if match else timedelta(0)
    if interval <= timedelta(0):
        raise Usage("invalid_option", f"--interval must be a positive number and a unit s, m, h, d or w: {raw!r}")
    return interval


async def _read(data_dir: Path, accounts: list[str] | None) -> dict[str, list[tuple[int, AccountEvent]]]:
    """Every named account's journal (default: every account with one), read in order to its current end."""
    async with _operator_js(data_dir) as js:
        known = await journal_accounts(js)
        if known is None:
            return {}
        return {account: await read_journal(js, account) for account in (accounts or known)}


async def journal_accounts(js: JetStreamContext) -> list[str] | None:
    """The accounts with a journal stream (ACCOUNT, ACCOUNT_<id>), sorted; None when there is none."""
    from bus.journal import journal_accounts as streams

    return (await streams(js)) or None


async def read_journal(js: JetStreamContext, account: str) -> list[tuple[int, AccountEvent]]:
    """The account's journal as it stands now, in order (empty when it has none)."""
    from bus.journal import read_journal as read

    return await read(js, account, READ_TIMEOUT_S)


COLUMNS = (
    ("account", "account"),
    ("start equity", "starting_equity"),
    ("end equity", "ending_equity"),
    ("return %", "return_pct"),
    ("max DD %", "max_drawdown_pct"),
    ("Sharpe", "sharpe"),
    ("orders", "orders"),
    ("denials", "denials"),
    ("fills", "fills"),
    ("fees", "fees"),
    ("realized", "realized_pnl"),
    ("open pos", "open_positions"),
)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render(comparison: AccountComparison) -> str:
    """A table, best return first, under a line naming the window, and the Sharpe notes below it."""
    rows = [[_cell(getattr(stats, field)) for _, field in COLUMNS] for stats in comparison.accounts]
    header = [title for title, _ in COLUMNS]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(COLUMNS))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded)

    out = [
        f"window {comparison.start.isoformat()} → {comparison.end.isoformat()}, equity sampled every "
        f"{comparison.interval}",
        line(header),
        *(line(row) for row in rows),
    ]
    out.append(f"best: {comparison.best}" if comparison.best else "best: none (no return, or the best is shared)")
    notes = [f"  {s.account}: {s.sharpe_note}" for s in comparison.accounts if s.sharpe_note]
    if notes:
        out += ["no Sharpe ratio:", *notes]
    return "\n".join(out)
