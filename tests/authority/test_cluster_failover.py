"""Real processes on a three-node JetStream cluster, every stream and bucket R3: a gateway, a bridge in follow mode
for two accounts, two authority and two execsim pool members, all on one seed list and one data dir (the authority
signing key is the data dir's). Buy and sell signals go through the gateway at ~40/s for ~36 s while, in turn,
the node leading SIGNALS is killed with SIGKILL (and restarted), the authority owning an account is killed with
SIGKILL (and restarted), and an execsim member is killed with SIGKILL (and restarted). Then, once quiet:

- every signal the gateway accepted (HTTP 202, by its signal id) is in SIGNALS exactly once (and no signal id is
  stored twice at all);
- every decided signal has exactly one outcome per account: one admitted intent or one denial in the account's
  journal, and exactly one message (intent or denial) about it in DECISIONS;
- the distinct fills in EXECUTIONS of each account, but the void ones (a simulator that lost its lease spoke
  after the new owner), sum to the positions folded from its journal (`tools.account.Account`), and no order of it
  is still working: what a stale owner did, the new owner did again;
- no account's position exceeds its max_position at any point of the journal fold;
- no account was decided for by two authorities at once. What the data proves, from the journal (the one record
  every admission must be appended to, with an expected-sequence check): its `owner` entries never go back in
  fence, and a fence always names one member (an owner entry about a new simulator owner repeats the current
  authority fence; a new authority owner has a strictly newer one); every admitted intent carries exactly the
  fence of the latest owner entry before it, so the admissions of two owners never interleave in the journal. In
  DECISIONS, each intent is one the journal admitted, its fence is at least the journaled one (a newer owner
  re-publishes with its own) and it is a fence some owner entry holds, stamped with that owner's member name.
  DECISIONS' stream order alone proves nothing more: an old owner may publish an intent it journaled before the
  handover just after the new owner's first publish, legitimately.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bus import authority_key
from bus.embedded import provision
from bus.jetstream import connect
from bus.journal import journal_stream
from bus.lease import LeaseRecord, lease_bucket, read_lease
from gateway.settings import SECRET_FILE
from schemas.account import AccountEvent, journal_subject
from schemas.orders import Fill, OrderEvent, OrderIntent, RiskDenied, SimulatorOwner
from schemas.signals import NormalizedSignal
from schemas.subjects import Subject
from tests.cluster import NatsCluster, nats_cluster  # noqa: F401 (the fixture)
from tests.conftest import SECRET, Webhook, wait_for
from tests.execsim.process_helpers import Service, read_stream, services
from tools.account import Account

D = Decimal
ACCOUNTS = {"alpha": 5, "beta": 8}  # max_position of each
SYMBOLS = ("AAA", "BBB")
RATE_PER_S = 40
SEND_SECONDS = 36.0
NO_OTHER_LIMITS = {
    "max_order_notional": None,
    "max_gross_exposure": None,
    "max_open_orders": None,
    "max_orders_per_window": None,
    "daily_loss_limit": None,
    "max_drawdown": None,
}


def write_config(data: Path) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    (data / SECRET_FILE).write_text(SECRET + "\n")
    (data / "accounts.toml").write_text(
        "".join(f'[[accounts]]\nid = "{a}"\nmax_position = {m}\n\n' for a, m in ACCOUNTS.items())
    )
    limits = data / "limits.json"
    limits.write_text(json.dumps(NO_OTHER_LIMITS))
    return limits


@pytest.mark.timeout(480)
async def test_kill_9_of_a_stream_leader_an_authority_and_a_simulator_under_load_breaks_no_invariant(
    nats_cluster: NatsCluster,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = nats_cluster
    data = tmp_path / "data"
    limits = write_config(data)
    # provisioned once, as the runbook says (every stream and bucket R3); just after its election the cluster may
    # still answer "no suitable peers for placement" for a moment
    monkeypatch.setenv("TRADING_MCP_NATS_REPLICAS", "3")
    for attempt in range(40):
        try:
            await provision(cluster.seeds, data)
            break
        except Exception:
            if attempt == 39:
                raise
            await asyncio.sleep(0.25)
    env = {
        "TRADING_MCP_NATS_REPLICAS": "3",
        "TRADING_MCP_DATA_DIR": str(data),
        "TRADING_MCP_MAX_SIGNAL_AGE_SECONDS": "3600",
        "TRADING_MCP_SOURCE_ACCOUNTS": ",".join(ACCOUNTS),
        "TRADING_MCP_LOG_LEVEL": "INFO",
        authority_key.ENV: "",  # the data dir's key, shared by every process
    }
    d = ["--data-dir", str(data)]

    def svc(name: str, args: list[str]) -> Service:
        return Service(args, cluster.seeds, tmp_path / f"{name}.log", env=env)

    authorities = {
        m: svc(m, ["authority", *d, "--member", m, "--risk-limits-file", str(limits)]) for m in ("auth-1", "auth-2")
    }
    execsims = {m: svc(m, ["execsim", *d, "--member", m]) for m in ("sim-1", "sim-2")}
    gateway = svc("gateway", ["gateway", *d])
    bridge = svc(
        "bridge",
        ["serve", *d, "--transport", "streamable-http", "--bridge", "--bridge-mode", "follow", "--account", "alpha"],
    )
    everything = [gateway, bridge, *authorities.values(), *execsims.values()]
    nc = await connect(cluster.seeds, "test")
    js = nc.jetstream()
    kv = None
    try:
        with services(*everything):
            for s in [*execsims.values(), *authorities.values(), bridge, gateway]:
                await s.start()
            kv = await lease_bucket(js)

            async def owned() -> bool:
                for role in ("authority", "execsim"):
                    for a in ACCOUNTS:
                        if await read_lease(kv, role, a) is None:
                            return False
                return True

            await wait_for(owned, 30, "every account owned by an authority and a simulator")
            hook = Webhook(f"http://127.0.0.1:{gateway.port}/webhook", SECRET)
            accepted: list[str] = []
            refused: Counter[int] = Counter()
            events: list[str] = []
            started = time.monotonic()

            async def send_one(http: httpx.AsyncClient, payload: dict[str, object]) -> None:
                msg_id, ts = f"msg_{uuid.uuid4().hex}", int(time.time())
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # a retry is the same webhook (same id, timestamp, body)
                    try:
                        r = await hook.send(http, payload, msg_id=msg_id, ts=ts)
                    except httpx.HTTPError:
                        refused[0] += 1
                        await asyncio.sleep(0.5)
                        continue
                    if r.status_code == 202:
                        accepted.append(r.json()["signal_id"])
                        return
                    refused[r.status_code] += 1
                    await asyncio.sleep(0.5)

            async def drive() -> None:
                rng = random.Random(13)
                prices = {s: D(100) for s in SYMBOLS}
                pending: set[asyncio.Task[None]] = set()
                async with httpx.AsyncClient(timeout=10) as http:
                    n = 0
                    while time.monotonic() - started < SEND_SECONDS:
                        sym = SYMBOLS[n % len(SYMBOLS)]
                        prices[sym] += D(rng.choice((-1, 0, 1)))
                        payload = {
                            "symbol": sym,
                            "price": str(prices[sym]),
                            "action": rng.choice(("buy", "sell")),
                            "quantity": rng.randint(1, 3),
                        }
                        task = asyncio.create_task(send_one(http, payload))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                        n += 1
                        await asyncio.sleep(max(0.0, started + n / RATE_PER_S - time.monotonic()))
                    await asyncio.gather(*pending)

            async def at(t: float) -> None:
                await asyncio.sleep(max(0.0, started + t - time.monotonic()))

            def note(what: str) -> None:
                events.append(f"{time.monotonic() - started:6.1f} s  {what}")

            async def owner_of(role: str, account: str) -> LeaseRecord:
                found: list[LeaseRecord] = []

                async def held() -> bool:
                    try:
                        lease = await read_lease(kv, role, account)
                    except Exception:  # the bucket's leader is being elected: read again
                        return False
                    if lease is not None:
                        found.append(lease)
                    return lease is not None

                t0 = time.monotonic()
                await wait_for(held, 30, f"an {role} owning {account}")
                if time.monotonic() - t0 > 0.1:
                    note(f"{account} had no {role} owner for {time.monotonic() - t0:.1f} s")
                return found[-1]

            async def faults() -> None:
                await at(5)
                node = await cluster.leader_of("SIGNALS", js)
                note(f"kill -9 {cluster.nodes[node].name}, the SIGNALS leader")
                cluster.kill(node)
                await at(12)
                await asyncio.to_thread(cluster.restart, node, 60)
                note(f"{cluster.nodes[node].name} restarted and healthy")
                await at(15)
                # a node restart can move the lease bucket's leader; while it is elected no owner can renew, and
                # a lease may lapse for a few seconds (the runbook's ttl advice). The invariant is one owner at a
                # time (checked from the fences below), not an owner at every instant: wait for one, bounded.
                lease = await owner_of("authority", "alpha")
                note(f"kill -9 {lease.member}, the authority owning alpha (fence {lease.fence})")
                authorities[lease.member].kill9()
                await asyncio.sleep(7)
                await authorities[lease.member].start()
                note(f"{lease.member} restarted")
                await asyncio.sleep(4)
                sim = await owner_of("execsim", "alpha")
                note(f"kill -9 {sim.member}, the simulator owning alpha (fence {sim.fence})")
                execsims[sim.member].kill9()
                await asyncio.sleep(5)
                await execsims[sim.member].start()
                note(f"{sim.member} restarted")

            await asyncio.gather(drive(), faults())
            sent_for = time.monotonic() - started
            assert len(accepted) > RATE_PER_S * SEND_SECONDS * 0.5, (
                len(accepted),
                refused,
                events,
            )  # 503s while a leader is elected

            nudged = [0.0]

            last_seen: list[object] = [None]

            async def quiet() -> bool:
                try:
                    state = await snapshot(js)
                except Exception:  # a read of ours hit a consumer still settling: read again
                    return False
                done = all(state.decided_all(a, state.actionable) and not state.working(a) for a in ACCOUNTS)
                last_seen[0] = {
                    a: {
                        "undecided": sorted(state.undecided(a, state.actionable))[:5],
                        "working": state.working(a)[:5],
                        "fills": state.fill_positions(a),
                        "journal": state.journal_positions(a),
                    }
                    for a in ACCOUNTS
                }
                if not done and time.monotonic() - nudged[0] > 3:  # a price keeps anything left moving
                    nudged[0] = time.monotonic()
                    with contextlib.suppress(Exception):
                        async with httpx.AsyncClient(timeout=5) as http:
                            for sym in SYMBOLS:
                                await hook.send(http, {"symbol": sym, "price": "100"})
                return done and all(state.fill_positions(a) == state.journal_positions(a) for a in ACCOUNTS)

            replicas = {}
            for info in await js.streams_info():
                replicas[info.config.name] = info.config.num_replicas
            try:
                await wait_for(quiet, 180, f"every signal decided and every order done (faults: {events})")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last seen: {last_seen[0]}\n{_warnings(tmp_path)}") from None
            for attempt in range(10):
                try:
                    state = await snapshot(js)
                    break
                except Exception:
                    if attempt == 9:
                        raise
                    await asyncio.sleep(1)
    finally:
        await nc.close()

    print(f"replicas: {replicas}")
    assert all(n == 3 for n in replicas.values()), replicas
    print(f"sent for {sent_for:.1f} s; accepted {len(accepted)}; retried {dict(refused)}", *events, sep="\n")
    # 1. every accepted signal stored exactly once
    stored = Counter(s.signal_id for s in state.signals)
    assert all(stored[sid] == 1 for sid in accepted), {sid: stored[sid] for sid in accepted if stored[sid] != 1}
    assert max(stored.values()) == 1, [sid for sid, n in stored.items() if n > 1]
    assert set(accepted) <= set(stored) and len(set(accepted)) == len(accepted)
    for a, max_position in ACCOUNTS.items():
        journal = state.journals[a]
        routed = {sid for sid in state.actionable if a in state.by_id[sid].accounts}
        # 2. one outcome per (account, signal): in the journal and in DECISIONS
        outcomes = Counter(e.intent.signal_id for e in journal if e.kind == "admitted" and e.intent)
        outcomes.update(e.denied.signal_id for e in journal if e.kind == "denied" and e.denied)
        assert outcomes == Counter(dict.fromkeys(routed, 1)), f"{a}: outcomes per signal in the journal"
        published = Counter(i.signal_id for i in state.intents if i.account == a)
        published.update(x.signal_id for x in state.denials if x.account == a)
        assert published == Counter(dict.fromkeys(routed, 1)), f"{a}: messages per signal in DECISIONS"
        reasons = Counter(e.denied.reason_code for e in journal if e.kind == "denied" and e.denied)
        assert reasons["max_position"] > 0 and set(reasons) == {"max_position"}, (a, reasons)
        # 3. fills sum to the journal's positions
        assert state.fill_positions(a) == state.journal_positions(a), a
        assert not state.working(a)
        # 4. never past max_position, at any point of the fold
        fold = Account(account_id=a)
        for seq, event in enumerate(journal, 1):
            fold.apply(event, seq)
            for sym in SYMBOLS:
                assert abs(fold.position(sym)) <= max_position, f"{a} {sym} at journal seq {seq}"
        # 5. one owner at a time
        fence: int | None = None
        members: dict[int, str] = {}
        admitted: dict[str, int] = {}
        for seq, event in enumerate(journal, 1):
            if event.kind == "owner" and event.owner:
                o = event.owner
                assert fence is None or o.fence >= fence, f"{a}: owner fence back from {fence} to {o.fence} at {seq}"
                assert members.setdefault(o.fence, o.member) == o.member, f"{a}: fence {o.fence} of two members"
                fence = o.fence
            elif event.kind == "admitted" and event.intent:
                assert fence is not None and event.intent.fence == fence, (
                    f"{a}: intent {event.intent.client_order_id} at {seq} has fence {event.intent.fence}, the owner "
                    f"entry before it {fence}"
                )
                assert event.intent.owner == members[fence]
                admitted[event.intent.client_order_id] = fence
        if a == "alpha":
            assert len(members) >= 2, f"{a}: its authority was killed, yet one owner: {members}"
        for intent in (i for i in state.intents if i.account == a):
            assert intent.client_order_id in admitted, f"{a}: {intent.client_order_id} published, not journaled"
            assert intent.fence is not None and intent.fence >= admitted[intent.client_order_id]
            assert members.get(intent.fence) == intent.owner, (a, intent.client_order_id, intent.fence, members)


class Snapshot:
    def __init__(
        self,
        signals: list[NormalizedSignal],
        intents: list[OrderIntent],
        denials: list[RiskDenied],
        executions: list[Fill | OrderEvent | SimulatorOwner],
        journals: dict[str, list[AccountEvent]],
    ) -> None:
        self.signals, self.intents, self.denials, self.executions = signals, intents, denials, executions
        self.journals = journals
        self.by_id = {s.signal_id: s for s in signals}
        self.actionable = {s.signal_id for s in signals if s.action is not None}
        self.folds = {}
        # decided from the entries themselves: a fold keeps only the newest finished orders and denials whole
        self.decided: dict[str, set[str]] = {}
        for a, journal in journals.items():
            fold = Account(account_id=a)
            for seq, event in enumerate(journal, 1):
                fold.apply(event, seq)
            self.folds[a] = fold
            self.decided[a] = {e.intent.signal_id for e in journal if e.kind == "admitted" and e.intent} | {
                e.denied.signal_id for e in journal if e.kind == "denied" and e.denied
            }

    def decided_all(self, account: str, signal_ids: set[str]) -> bool:
        return not self.undecided(account, signal_ids)

    def undecided(self, account: str, signal_ids: set[str]) -> set[str]:
        return {s for s in signal_ids if account in self.by_id[s].accounts} - self.decided[account]

    def working(self, account: str) -> list[str]:
        return list(self.folds[account].working)

    def journal_positions(self, account: str) -> dict[str, Decimal]:
        return {sym: self.folds[account].position(sym) for sym in SYMBOLS}

    def fill_positions(self, account: str) -> dict[str, Decimal]:
        """The account's distinct fills in EXECUTIONS, but the void ones: stamped with an older simulator fence than
        an earlier report, fill or owner marker of the account (a simulator that lost its lease spoke after the new
        owner took it)."""
        total: dict[str, Decimal] = defaultdict(Decimal)
        seen: set[str] = set()
        newest: int | None = None
        for e in self.executions:
            if e.account != account:
                continue
            if e.fence is not None and newest is not None and e.fence < newest:
                continue
            if e.fence is not None:
                newest = e.fence if newest is None else max(newest, e.fence)
            if isinstance(e, Fill) and e.fill_id not in seen:
                seen.add(e.fill_id)
                total[e.symbol] += e.quantity if e.side == "buy" else -e.quantity
        return {sym: total[sym] for sym in SYMBOLS}


async def snapshot(js) -> Snapshot:  # type: ignore[no-untyped-def]
    signals = [
        NormalizedSignal.model_validate_json(d)
        for _, d in await read_stream(js, "SIGNALS", Subject.SIGNALS_NORMALIZED.value)
    ]
    decisions = await read_stream(js, "DECISIONS", "decisions.>")
    intents = [OrderIntent.model_validate_json(d) for s, d in decisions if s == Subject.ORDER_INTENT.value]
    denials = [RiskDenied.model_validate_json(d) for s, d in decisions if s == Subject.RISK_DENIED.value]
    parse = {
        Subject.EXECUTION_FILL.value: Fill.model_validate_json,
        Subject.EXECUTION_REPORT.value: OrderEvent.model_validate_json,
        Subject.EXECUTION_OWNER.value: SimulatorOwner.model_validate_json,
    }
    executions: list[Fill | OrderEvent | SimulatorOwner] = [
        parse[s](d) for s, d in await read_stream(js, "EXECUTIONS", "executions.>")
    ]
    journals = {
        a: [
            AccountEvent.model_validate_json(d) for _, d in await read_stream(js, journal_stream(a), journal_subject(a))
        ]
        for a in ACCOUNTS
    }
    return Snapshot(signals, intents, denials, executions, journals)


def _warnings(logs: Path, per_log: int = 40) -> str:
    """The services' last warnings and errors, for a failure's message: a rare failure on CI is read from these."""
    out = []
    for log in sorted(logs.glob("*.log")):
        lines = [
            line for line in log.read_text(errors="replace").splitlines() if '"warning"' in line or '"error"' in line
        ]
        out.append(f"--- {log.name}: {len(lines)} warnings or errors, the last {per_log}:")
        out.extend(lines[-per_log:])
    return "\n".join(out)
