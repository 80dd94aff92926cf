"""What the simulator published and was asked, folded in stream order: the state an engine is restored from.

`StreamFold` takes the messages `execsim.service.rebuild` reads (EXECUTIONS: reports and fills; DECISIONS: signed
intents and cancels; SIGNALS up to the market consumer's ack floor: bars), remembers the stream sequence it holds
each stream up to, and can take more later (`absorb_*`, then `settle`). It stays small whatever the history: an
order that finished leaves it once more than FINISHED_KEPT newer ones have, keeping only its 64-bit key (as
`execsim.service.FinishedOrders` does in the live simulator), and per symbol only what an engine keeps of its bars
(the first, for its volume budget, the last, and the opens of the last OPENS_KEPT). So it can be stored
(`to_snapshot`, plain JSON: the bucket is network input) and a later rebuild reads only the streams' tails after it.
What the authority voids (reports and fills of a simulator owner that lost its lease, stamped with an older fence
than an earlier event of the account) the fold ignores too, so a new owner works those orders again.

No I/O here; `execsim.service` reads the streams and the snapshot bucket.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from execsim.engine import Engine
from execsim.engine.core import OPENS_KEPT
from schemas.common import DEFAULT_ACCOUNT
from schemas.market import Bar
from schemas.orders import TERMINAL_STATUSES, OrderIntent, fence_step
from schemas.subjects import Subject
from tools.account import order_key
from tools.ledger import Ledger

ZERO = Decimal(0)
FINISHED_KEPT = 1_000  # finished orders kept whole (the live simulator's FinishedOrders keeps as many)
SNAPSHOT_FORMAT = 2  # 2: with the newest simulator fence per account
FILL, REPORT, OWNER = Subject.EXECUTION_FILL.value, Subject.EXECUTION_REPORT.value, Subject.EXECUTION_OWNER.value
INTENT, CANCEL = Subject.ORDER_INTENT.value, Subject.ORDER_CANCEL.value


@dataclass
class Record:
    """What EXECUTIONS says about one order so far."""

    status: str = "accepted"
    filled: Decimal = ZERO
    fills: int = 0
    notional: Decimal = ZERO
    triggered: bool = False
    terminal: bool = False
    fill_ids: set[str] = field(default_factory=set)

    def to_json(self) -> list[Any]:
        return [
            self.status,
            str(self.filled),
            self.fills,
            str(self.notional),
            self.triggered,
            self.terminal,
            sorted(self.fill_ids),
        ]

    @classmethod
    def from_json(cls, raw: list[Any]) -> Record:
        status, filled, fills, notional, triggered, terminal, fill_ids = raw
        return cls(
            status, Decimal(filled), int(fills), Decimal(notional), bool(triggered), bool(terminal), set(fill_ids)
        )


@dataclass
class _Market:
    """What an engine keeps of a symbol's bars: its volume budget from the first, the opens of the last OPENS_KEPT
    (for orders `at_open_of` one of them), price and range from the last."""

    first: Bar
    last: Bar
    opens: deque[tuple[datetime, Decimal]]

    def replay(self) -> list[Bar]:
        """Bars that restore an engine's market state for the symbol as all the bars applied would."""
        symbol = self.first.symbol
        between = [
            Bar(symbol=symbol, ts=ts, open=o, high=o, low=o, close=o) for ts, o in self.opens if ts != self.last.ts
        ]
        return [self.first, *between, self.last]


@dataclass
class StreamFold:
    account: str | None = None  # None: every account's orders
    exec_seq: int = 0
    decision_seq: int = 0
    signal_seq: int = 0
    records: dict[str, Record] = field(default_factory=dict)
    intents: dict[str, bytes] = field(default_factory=dict)  # as stored (parsed when restored), in DECISIONS order
    cancels: dict[str, None] = field(default_factory=dict)  # cancels of orders with no intent seen
    finished: deque[str] = field(default_factory=deque)  # finished orders kept whole, oldest first
    forgotten: Ledger = field(default_factory=Ledger)  # keys of the finished orders that left (16 bytes each)
    market: dict[str, _Market] = field(default_factory=dict)
    fences: dict[str, int] = field(default_factory=dict)  # per account, the newest simulator fence in EXECUTIONS
    kept: int = FINISHED_KEPT  # finished orders kept whole

    def _mine(self, doc: dict[str, Any]) -> bool:
        return self.account is None or doc.get("account", DEFAULT_ACCOUNT) == self.account

    def _void(self, doc: dict[str, Any]) -> bool:
        """The authority's rule (`authority.service`): an event stamped with an older simulator fence than an earlier
        event of its account is void (a simulator that lost its lease spoke after the new owner did); a newer fence
        raises the bar. So the fold, like the journal, ignores what a stale owner published, and the new owner
        works those orders again."""
        account = doc.get("account", DEFAULT_ACCOUNT)
        void, newest = fence_step(doc.get("fence"), self.fences.get(account))
        if newest is not None:
            self.fences[account] = newest
        return void

    def _gone(self, coid: str) -> bool:
        return bool(self.forgotten) and order_key(coid) in self.forgotten

    # ------------------------------------------------------------------ absorbing stream messages

    def absorb_execution(self, seq: int, subject: str, data: bytes) -> None:
        """One message of EXECUTIONS as stored (`executions.fill`: a Fill, `executions.report`: an OrderEvent,
        `executions.owner`: a new owner's marker, which only raises the account's fence bar; the simulator alone
        writes them, so only the fields the fold needs are read, without validating the rest)."""
        self.exec_seq = max(self.exec_seq, seq)
        if subject not in (FILL, REPORT, OWNER):
            return
        doc = json.loads(data)
        if subject == OWNER:
            if self._mine(doc):
                self._void(doc)
            return
        coid = doc["client_order_id"]
        if not self._mine(doc) or self._void(doc) or self._gone(coid):
            return
        rec = self.records.setdefault(coid, Record())
        if subject == FILL:
            if doc["fill_id"] in rec.fill_ids:
                return
            quantity = Decimal(str(doc["quantity"]))
            rec.fill_ids.add(doc["fill_id"])
            rec.fills += 1
            rec.filled += quantity
            rec.notional += quantity * Decimal(str(doc["price"]))
            return
        if doc.get("reason") == "duplicate_client_order_id" and str(doc["event_id"]).count(".") > 1:
            return  # a refused second intent with this id: says nothing about the first
        status = doc["status"]
        if status == "triggered":
            rec.triggered = True
        if not rec.terminal:
            rec.status = status
            rec.terminal = status in TERMINAL_STATUSES

    def absorb_decision(self, seq: int, subject: str | None, data: bytes) -> None:
        """One message of DECISIONS as stored: a signed intent (`decisions.order_intent`) or cancel
        (`decisions.order_cancel`); None for any other message, or one not signed: only its sequence counts."""
        self.decision_seq = max(self.decision_seq, seq)
        if subject not in (INTENT, CANCEL):
            return
        doc = json.loads(data)
        coid = doc["client_order_id"]
        if not self._mine(doc) or self._gone(coid):
            return
        if subject == INTENT:
            self.intents.setdefault(coid, data)
            self.cancels.pop(coid, None)
        elif coid not in self.intents:
            self.cancels[coid] = None

    def absorb_bar(self, seq: int, bar: Bar | None) -> None:
        """A bar the market consumer acked (None: a signal for another account); skipped as `on_bar` skipped it."""
        self.signal_seq = max(self.signal_seq, seq)
        if bar is None:
            return
        kept = self.market.get(bar.symbol)
        if kept is None:
            self.market[bar.symbol] = _Market(bar, bar, deque([(bar.ts, bar.open)], maxlen=OPENS_KEPT))
        elif bar.ts > kept.last.ts:
            kept.last = bar
            kept.opens.append((bar.ts, bar.open))

    def settle(self) -> None:
        """After a read of EXECUTIONS then DECISIONS: every execution read has its intent read (an intent is stored
        before the simulator answers it). Records with no intent say nothing (another process's, or unsigned);
        finished orders beyond the newest FINISHED_KEPT leave, keeping their key."""
        for coid in [c for c in self.records if c not in self.intents]:
            del self.records[coid]
        held = set(self.finished)
        for coid, raw in self.intents.items():
            rec = self.records.get(coid)
            if (
                rec is not None
                and not rec.terminal
                and rec.fills
                and rec.filled >= Decimal(str(json.loads(raw)["quantity"]))
            ):  # the fill that completed the order finished it (no `filled` report follows it in the stream)
                rec.status, rec.terminal = "filled", True
            if rec is not None and rec.terminal and coid not in held:
                self.finished.append(coid)
                held.add(coid)
        while len(self.finished) > self.kept:
            old = self.finished.popleft()
            self.intents.pop(old, None)
            self.records.pop(old, None)
            self.forgotten[order_key(old)] = 0

    # ------------------------------------------------------------------ an engine from it

    def restore(self, engine: Engine) -> tuple[int, list[str], Ledger]:
        """Restore `engine`: every order with an intent and a report, the cancels that came before their intent,
        each symbol's bars. Returns how many orders came back, the finished ones among them (oldest first, for
        `FinishedOrders`) and the keys of those that left."""
        restored = 0
        for coid, raw in self.intents.items():
            rec = self.records.get(coid)
            if rec is None:
                continue  # never answered: the intent was not acked and will be delivered again
            intent = OrderIntent.model_validate_json(raw)
            status = rec.status
            if not rec.terminal and rec.filled >= intent.quantity:
                status = "filled"
            elif not rec.terminal and rec.fills:
                status = "partially_filled"
            engine.restore(
                intent,
                status=status,
                filled=rec.filled,
                fills=rec.fills,
                notional=rec.notional,
                triggered=rec.triggered,
            )
            restored += 1
        for coid in self.cancels:
            if coid not in self.intents:
                engine.cancel(coid)
        for kept in self.market.values():
            for bar in kept.replay():
                engine.restore_market(bar)
        finished = [c for c in self.finished if c in self.records]
        return restored, finished, self.forgotten.copy()

    # ------------------------------------------------------------------ snapshot

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "account": self.account,
            "seqs": [self.exec_seq, self.decision_seq, self.signal_seq],
            "intents": [[coid, raw.decode()] for coid, raw in self.intents.items()],
            "records": {coid: rec.to_json() for coid, rec in self.records.items()},
            "cancels": list(self.cancels),
            "finished": list(self.finished),
            "forgotten": base64.b64encode(self.forgotten.records()).decode(),
            "fences": self.fences,
            "market": {
                symbol: [
                    kept.first.model_dump(mode="json"),
                    kept.last.model_dump(mode="json"),
                    [[ts.isoformat(), str(o)] for ts, o in kept.opens],
                ]
                for symbol, kept in self.market.items()
            },
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> StreamFold:
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"simulator snapshot format {data.get('format')!r}, not {SNAPSHOT_FORMAT}")
        exec_seq, decision_seq, signal_seq = (int(s) for s in data["seqs"])
        return cls(
            account=data["account"],
            exec_seq=exec_seq,
            decision_seq=decision_seq,
            signal_seq=signal_seq,
            records={coid: Record.from_json(raw) for coid, raw in data["records"].items()},
            intents={coid: raw.encode() for coid, raw in data["intents"]},
            cancels=dict.fromkeys(data["cancels"]),
            finished=deque(data["finished"]),
            forgotten=Ledger.from_records(base64.b64decode(data["forgotten"])),
            fences={str(a): int(f) for a, f in data["fences"].items()},
            market={
                symbol: _Market(
                    Bar.model_validate(first),
                    Bar.model_validate(last),
                    deque(((datetime.fromisoformat(ts), Decimal(o)) for ts, o in opens), maxlen=OPENS_KEPT),
                )
                for symbol, (first, last, opens) in data["market"].items()
            },
        )
