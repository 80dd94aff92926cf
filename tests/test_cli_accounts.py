"""`trading-mcp accounts compare` against a real nats-server: journals appended for two accounts, read back,
compared, printed as a table or as JSON (run in-process through the subcommand's own parser)."""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

from bus.embedded import EmbeddedNats
from bus.jetstream import connect
from bus.journal import ensure_journal
from cli.accounts import add_parser
from schemas.account import AccountEvent, journal_subject
from tests.tools.test_compare import Journal, at

D = Decimal


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trading-mcp")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def fast_and_slow() -> dict[str, list[tuple[int, AccountEvent]]]:
    """tests/tools/test_compare.py's two accounts on the same marks: fast +5 %, slow −2.55 %."""
    fast = Journal("fast").begin(at(0), 10_000)
    fast.mark(at(0), "XYZ", "100").trade(at(0), "f-1", "buy", 100, "100")
    fast.mark(at(1), "XYZ", "110").mark(at(2), "XYZ", "95").mark(at(3), "XYZ", "105")
    slow = Journal("slow").begin(at(0), 10_000)
    slow.mark(at(0), "XYZ", "100").mark(at(1), "XYZ", "110")
    slow.trade(at(1), "s-1", "buy", 50, "110", fee="5")
    slow.mark(at(2), "XYZ", "95").mark(at(3), "XYZ", "105").deny(at(3), "s-2")
    return {"fast": fast.entries, "slow": slow.entries}


async def append(url: str, journals: dict[str, list[tuple[int, AccountEvent]]]) -> None:
    nc = await connect(url, "test-journal")
    try:
        js = nc.jetstream()
        for account, entries in journals.items():
            await ensure_journal(js, account)  # each account's journal is its own stream
            for _, event in entries:
                await js.publish(journal_subject(account), event.model_dump_json().encode())
    finally:
        await nc.close()


@pytest.fixture
def journals(nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NATS_URL", nats_server.url)
    asyncio.run(append(nats_server.url, fast_and_slow()))
    return nats_server.url


def test_compare_as_json_reads_every_account_with_a_journal_and_puts_the_best_return_first(
    journals: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["accounts", "compare", "--data-dir", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [a["account"] for a in shown["accounts"]] == ["fast", "slow"] and shown["best"] == "fast"
    fast, slow = shown["accounts"]
    assert (D(fast["starting_equity"]), D(fast["ending_equity"]), D(fast["return_pct"])) == (D(10_000), D(10_500), 5)
    assert (D(slow["ending_equity"]), D(slow["return_pct"]), D(slow["max_drawdown_pct"])) == (
        D(9745),
        D("-2.55"),
        D("7.55"),
    )
    assert (slow["orders"], slow["denials"], slow["fills"], D(slow["fees"])) == (1, 1, 1, 5)
    assert shown["start"].startswith("2026-03-02T09:00:00") and shown["end"].startswith("2026-03-02T12:00:00")


def test_compare_as_a_table_for_the_named_accounts_in_a_window_with_its_interval(
    journals: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["accounts", "compare", "--data-dir", str(tmp_path), "--accounts", "slow,fast"]
    argv += ["--start", "2026-03-02T09:00", "--end", "2026-03-02T10:30:00+00:00", "--interval", "30m"]
    assert run(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "window 2026-03-02T09:00:00+00:00 → 2026-03-02T10:30:00+00:00, equity sampled every 0:30:00"
    assert lines[1].split()[:4] == ["account", "start", "equity", "end"]
    # to 10:30 fast holds 100 at 110 (+10 %), slow 50 bought at 110 with a 5 fee (−0.05 %)
    fast, slow = (line.split() for line in lines[2:4])
    assert fast[:4] == ["fast", "10,000.00", "11,000.00", "10.00"]
    assert slow[:4] == ["slow", "10,000.00", "9,995.00", "-0.05"]
    assert lines[4] == "best: fast"


def test_an_account_without_a_journal_compares_flat_and_a_bad_interval_is_refused(
    journals: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["accounts", "compare", "--data-dir", str(tmp_path), "--accounts", "fast,ghost", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(a["account"], a["return_pct"]) for a in shown["accounts"]] == [("fast", "5.000000"), ("ghost", "0.000000")]
    assert run(["accounts", "compare", "--data-dir", str(tmp_path), "--interval", "soon"]) == 2
    assert "invalid_option: --interval" in capsys.readouterr().err


def test_without_an_account_stream_it_says_no_account_has_a_journal(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NATS_URL", nats_server.url)
    assert run(["accounts", "compare", "--data-dir", str(tmp_path)]) == 1
    assert "no account has a journal stream (ACCOUNT, ACCOUNT_<id>) yet" in capsys.readouterr().err


def test_owners_names_the_member_and_fence_holding_each_account_and_fails_for_an_unowned_one(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bus.lease import AccountLeases

    monkeypatch.setenv("NATS_URL", nats_server.url)
    (tmp_path / "accounts.toml").write_text('[[accounts]]\nid = "momo"\n\n[[accounts]]\nid = "meanrev"\n')

    async def hold(role: str, accounts: list[str]) -> tuple[AccountLeases, object]:
        nc = await connect(nats_server.url, f"{role}-member")

        async def nothing(*_: object) -> None:
            return None

        leases = AccountLeases(
            nc.jetstream(), role=role, member=f"{role}-1", accounts=accounts, on_acquired=nothing, on_lost=nothing
        )
        await leases.start()
        stop = asyncio.Event()
        task = asyncio.create_task(leases.run(stop))
        while len(leases.held) < len(accounts):
            await asyncio.sleep(0.05)
        stop.set()
        await task
        return leases, nc

    async def scenario() -> tuple[int, dict, int]:  # type: ignore[type-arg]
        authority, nc1 = await hold("authority", ["momo", "meanrev"])
        simulator, nc2 = await hold("execsim", ["momo"])  # nobody simulates meanrev
        code = await asyncio.to_thread(run, ["accounts", "owners", "--data-dir", str(tmp_path), "--json"])
        shown = json.loads(capsys.readouterr().out)
        await simulator.stop(release=True)
        await authority.stop(release=True)
        after = await asyncio.to_thread(run, ["accounts", "owners", "--data-dir", str(tmp_path), "--json"])
        for nc in (nc1, nc2):
            await nc.close()  # type: ignore[attr-defined]
        return code, shown, after

    code, shown, after = asyncio.run(scenario())
    assert code == 1, "meanrev has no simulator: the exit code says an account is not fully owned"
    assert shown["momo"]["authority"]["member"] == "authority-1" and shown["momo"]["execsim"]["member"] == "execsim-1"
    assert shown["meanrev"]["execsim"] is None
    assert shown["momo"]["authority"]["fence"] != shown["meanrev"]["authority"]["fence"]
    assert after == 1 and json.loads(capsys.readouterr().out)["momo"]["authority"] is None
