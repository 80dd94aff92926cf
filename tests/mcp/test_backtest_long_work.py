"""run_backtest as long work through a real SDK client: progress notifications, cancellation that stops the worker,
and the artifacts (trades JSON, equity CSV, plot PNG) as resource links the client reads back."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from bus.account_view import AppState
from mcp_server.backtest_runs import Job, runs_of
from mcp_server.server import TradingServer, build_server
from tests.conftest import wait_for
from tests.mcp.helpers import add_signal, offline_state

AAPL = {"symbol": "bundled:AAPL", "strategy": "momentum", "commission": "0.001"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _server(state: AppState) -> TradingServer:
    return build_server(state, toolsets_enabled=["strategies"])


def _text(result) -> str:  # type: ignore[no-untyped-def]
    return next(c.text for c in result.content if c.type == "text")


async def test_run_backtest_sends_progress_notifications_that_only_grow_up_to_the_last_bar() -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(_server(offline_state())) as client:
        result = await client.call_tool("run_backtest", AAPL, progress_callback=on_progress)
    assert not result.is_error, _text(result)
    bars = [p for p in progress if p[1] == 3270]
    assert len(bars) >= 10, f"a run of 3270 bars reports in chunks, got {progress}"
    done = [p[0] for p in progress]
    assert done == sorted(done) and len(set(done)) == len(done), "progress only grows"
    assert progress[-1] == (3270, 3270, "3270 of 3270 bars")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_cancelled_backtest_ends_the_call_and_its_worker_and_sends_no_more_progress(mode: str) -> None:
    """legacy: the client sends notifications/cancelled over JSON-RPC; 2026-07-28 in process: the call's scope
    is cancelled. The worker is held after its first chunk until the server has seen the cancel, so the run is
    caught mid-way every time."""
    server = _server(offline_state())
    store = runs_of(server)
    held: list[Job] = []

    def hold_first_chunk(job: Job) -> None:
        if not held:
            held.append(job)
            assert job.cancel_requested.wait(10), "the server never passed the cancellation to the worker"

    store.after_chunk = hold_first_chunk
    progress: list[float] = []
    ended: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with Client(server, mode=mode) as client:
        scope = anyio.CancelScope()

        async def call() -> None:
            with scope:
                await client.call_tool("run_backtest", AAPL, progress_callback=on_progress)
                ended.append("returned")
            ended.append("cancelled" if scope.cancelled_caught else "finished")

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await wait_for(lambda: bool(held), 10, "the first chunk")
            scope.cancel()
        job = held[0]
        await wait_for(job.finished.is_set, 10, "the worker to return")
        await client.call_tool("list_strategies", {})  # a round trip: any progress sent before it has arrived
        seen = list(progress)
        store.after_chunk = None
        again = await client.call_tool("run_backtest", {**AAPL, "strategy": "mean_reversion"})

    assert ended == ["cancelled"], "the call ended by the cancellation, without a result"
    assert job.outcome == "cancelled" and 0 < job.reported < job.total == 3270
    assert max(seen) <= job.reported, "no progress after the worker stopped"
    assert store.jobs == {} and len(store) == 1, "nothing left running, and the cancelled run kept nothing"
    assert not again.is_error and again.structured_content["run_id"] != job.run_id


async def test_run_backtest_links_trades_equity_and_plot_and_each_link_reads_back() -> None:
    async with Client(_server(offline_state())) as client:
        result = await client.call_tool("run_backtest", {**AAPL, "max_trades": 3})
        links = [c for c in result.content if c.type == "resource_link"]
        read = {str(link.uri): (await client.read_resource(str(link.uri))).contents[0] for link in links}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    body = result.structured_content
    run_id = body["run_id"]
    uris = {
        "trades": f"backtest://{run_id}/trades.json",
        "equity": f"backtest://{run_id}/equity.csv",
        "plot": f"backtest://{run_id}/plot.png",
    }
    assert body["artifacts"] == uris
    assert [str(link.uri) for link in links] == list(uris.values())
    assert [link.mime_type for link in links] == ["application/json", "text/csv", "image/png"]
    assert {"backtest://{run_id}/trades.json", "backtest://{run_id}/equity.csv", "backtest://{run_id}/plot.png"} <= (
        templates
    )

    trades = json.loads(read[uris["trades"]].text)
    assert trades["symbol"] == "AAPL" and len(trades["trades"]) == body["trades_total"] > 3
    assert trades["trades"][-3:] == body["trades"], "the inline list is the tail of the full one"
    rows = list(csv.reader(io.StringIO(read[uris["equity"]].text)))
    assert rows[0] == ["time", "close", "position", "equity"] and len(rows) == 1 + 3270
    assert rows[1][0].startswith("2000-03-01") and rows[-1][3] == f"{body['stats']['final_equity']:.2f}"
    png = base64.b64decode(read[uris["plot"]].blob)
    assert png.startswith(PNG_SIGNATURE) and read[uris["plot"]].mime_type == "image/png"


async def test_run_backtest_text_reads_right_for_a_text_only_client_and_the_structure_keeps_full_numbers() -> None:
    async with Client(_server(offline_state())) as client:
        result = await client.call_tool("run_backtest", {**AAPL, "cash": "50000", "max_trades": 5})
    text = _text(result)
    stats = result.structured_content["stats"]
    run_id = result.structured_content["run_id"]
    assert text.startswith("momentum on AAPL (bundled, 3270 bars 2000-03-01 to 2013-03-01): equity 50000.00 -> ")
    assert re.search(r"-> \d+\.\d\d, return [+-]\d+\.\d % against buy-and-hold [+-]\d+\.\d %", text), text
    assert f"max drawdown {abs(stats['max_drawdown']) * 100:.1f} %" in text
    assert f"win rate {stats['win_rate'] * 100:.1f} %" in text
    assert f"{result.structured_content['trades_total']} trade(s) (the last 5 are in the result)" in text
    assert f"resources/read backtest://{run_id}/trades.json" in text
    assert f"backtest://{run_id}/equity.csv" in text and f"backtest://{run_id}/plot.png" in text
    assert len(repr(stats["max_drawdown"])) > 8, "the structured content keeps the unrounded ratio"


async def test_reading_an_unknown_or_evicted_run_is_an_error_that_says_what_to_do() -> None:
    state = offline_state()
    for i in range(40):
        add_signal(state, i, price=str(100 + (i % 9)))
    server = _server(state)
    runs_of(server).capacity = 2
    async with Client(server) as client:
        first, second, third = [
            (
                await client.call_tool("run_backtest", {"symbol": "AAPL", "strategy": "mean_reversion"})
            ).structured_content["run_id"]
            for _ in range(3)
        ]
        with pytest.raises(MCPError, match=r"no backtest run 'feedfacecafe' here: .* call run_backtest again"):
            await client.read_resource("backtest://feedfacecafe/trades.json")
        with pytest.raises(MCPError, match=f"no backtest run '{first}' here: this server keeps .* last 2 runs"):
            await client.read_resource(f"backtest://{first}/equity.csv")
        kept = await client.read_resource(f"backtest://{third}/equity.csv")
        also_kept = await client.read_resource(f"backtest://{second}/trades.json")
    assert kept.contents[0].text.count("\n") == 1 + 40
    assert json.loads(also_kept.contents[0].text)["symbol"] == "AAPL"
