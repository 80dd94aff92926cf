"""`trading-mcp`: up · serve · agent · gateway · execsim · authority · send-signal · risk · reset · backtest · demo."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from authority.settings import AuthoritySettings
from bus.embedded import default_data_dir
from cli import flags
from decisions.agent.settings import AgentSettings
from decisions.settings import DecisionSettings
from execsim.settings import ExecSimSettings
from gateway import signing
from gateway.settings import SECRET_FILE, GatewaySettings
from mcp_server.settings import ServeSettings
from schemas.common import DEFAULT_ACCOUNT

if TYPE_CHECKING:
    from pydantic import ValidationError


def load_or_create_secret(data_dir: Path) -> str:
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = signing.new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def _configure_logging(service: str) -> None:
    from observability.logging import configure_logging

    configure_logging(service, os.environ.get("TRADING_MCP_LOG_LEVEL", "INFO"), cache=True)


# ---------------------------------------------------------------- services


def cmd_gateway(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from gateway.service import main

    _configure_logging("gateway")
    try:
        settings = GatewaySettings(**flags.given(args, GatewaySettings, data_dir=args.data_dir))
    except ValidationError as exc:
        for line in settings_problems(exc):
            print(f"trading-mcp gateway: {line}", file=sys.stderr)
        return 2
    main(settings)
    return 0


def settings_problems(exc: ValidationError) -> list[str]:
    """One line per problem, `code: message`, never the input (it may hold a secret)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        cause = (err.get("ctx") or {}).get("error")
        code = getattr(cause, "code", "invalid_settings")
        where = ".".join(str(p) for p in err["loc"])
        message = str(cause) if cause is not None else err["msg"]
        lines.append(f"{code}: {where + ': ' if where else ''}{message}")
    return lines


def cmd_execsim(args: argparse.Namespace) -> int:
    from execsim.service import main

    _configure_logging("execsim")
    main(ExecSimSettings(**flags.given(args, ExecSimSettings, data_dir=args.data_dir)))
    return 0


def cmd_authority(args: argparse.Namespace) -> int:
    from authority.service import main

    _configure_logging("authority")
    given = flags.given(args, AuthoritySettings, data_dir=args.data_dir)
    if args.max_signal_age_seconds is not None:
        given["max_signal_age_seconds"] = args.max_signal_age_seconds
    main(AuthoritySettings(**given))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bus.accounts import AccountsFileError
    from cli.serve import serve_main
    from decisions.settings import ConfigError as DecisionConfigError
    from mcp_server.settings import ConfigError

    _configure_logging("mcp_server")
    extra = {
        "data_dir": args.data_dir,
        "allowed_hosts": ",".join(args.allowed_host) if args.allowed_host else None,
        "allowed_origins": ",".join(args.allowed_origin) if args.allowed_origin else None,
    }
    try:
        serve_main(
            ServeSettings(**flags.given(args, ServeSettings, **extra)),
            DecisionSettings(**flags.given(args, DecisionSettings, data_dir=args.data_dir)),
        )
    except (ConfigError, DecisionConfigError, AccountsFileError) as exc:
        print(f"trading-mcp serve: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from cli.serve import agent_main
    from decisions.settings import ConfigError

    _configure_logging("agent")
    try:
        agent_main(AgentSettings(**flags.given(args, AgentSettings, data_dir=args.data_dir)))
    except ConfigError as exc:
        print(f"trading-mcp agent: {exc}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------- up


def cmd_up(args: argparse.Namespace) -> int:
    from bus.embedded import EmbeddedNats, ensure_embedded
    from cli.supervisor import ChildSpec, StartFailed, Supervisor, die_with_parent

    data_dir: Path = args.data_dir
    load_or_create_secret(data_dir)
    embedded = None
    nats_url = os.environ.get("NATS_URL")
    if not nats_url:
        embedded = ensure_embedded(data_dir, preexec_fn=die_with_parent)  # a kill -9 of `up` orphans nothing
        nats_url = embedded.url
    env = {**os.environ, "NATS_URL": nats_url, "TRADING_MCP_DATA_DIR": str(data_dir)}
    me = [sys.executable, "-m", "cli.main"]
    ports = {
        "execsim": args.execsim_port,
        "authority": args.authority_port,
        "mcp_server": args.mcp_port,
        "gateway": args.gateway_port,
    }
    specs = [
        ChildSpec(name, [*me, *argv], f"http://127.0.0.1:{ports[name]}/healthz")
        for name, argv in service_commands(args).items()
    ]

    def restart_nats(port: int) -> EmbeddedNats:
        server = ensure_embedded(data_dir, port, preexec_fn=die_with_parent)
        if server.port != port:  # the port was taken meanwhile: the children only know the old one
            server.stop()
            raise RuntimeError(f"port {port} is taken")
        return server

    supervisor = Supervisor(specs, env=env, nats=embedded, nats_restart=restart_nats)
    stopping = False

    def shutdown(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    code = 0
    try:
        supervisor.start(lambda: stopping)
        _banner(args, data_dir, nats_url)
        supervisor.run(lambda: stopping)
    except StartFailed as exc:
        if not stopping:
            print(f"trading-mcp up: {exc}; stopping everything", file=sys.stderr)
            code = 1
    finally:
        # stop in reverse: the gateway stops taking signals first, then the bridge, the authority, the
        # simulator, and last the nats-server this process started
        supervisor.stop()
    return code


def service_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """The `trading-mcp` arguments of each service that `up` starts, in start order.

    docker-compose.yml runs the same commands (tests/ops checks it), with `--host 0.0.0.0` added.
    """
    d = ["--data-dir", str(args.data_dir)]
    return {
        "execsim": ["execsim", *d, "--port", str(args.execsim_port), *_bps(args)],
        "authority": ["authority", *d, "--port", str(args.authority_port), *_limits(args)],
        "mcp_server": [
            "serve",
            *d,
            "--transport",
            "streamable-http",
            "--port",
            str(args.mcp_port),
            "--bridge",
            *_mode(args),
        ],
        "gateway": ["gateway", *d, "--port", str(args.gateway_port)],
    }


def _mode(args: argparse.Namespace) -> list[str]:
    """strategy mode also sizes for the simulator's costs, as the backtester does."""
    out: list[str] = []
    mode = getattr(args, "mode", None)
    if mode is None:
        return out
    out += ["--bridge-mode", mode]
    if mode == "strategy":
        if args.fee_bps is not None:
            out += ["--strategy-commission", str(Decimal(args.fee_bps) / 10_000)]
        if args.slippage_bps is not None:
            out += ["--strategy-slippage-bps", str(args.slippage_bps)]
    return out


def _limits(args: argparse.Namespace) -> list[str]:
    """The account's limits belong to the authority, the one component that enforces them."""
    out = [] if getattr(args, "max_position", None) is None else ["--max-position", str(args.max_position)]
    if getattr(args, "risk_limits_file", None) is not None:
        out += ["--risk-limits-file", str(args.risk_limits_file)]
    return out


def _bps(args: argparse.Namespace) -> list[str]:
    out = []
    if args.slippage_bps is not None:
        out += ["--slippage-bps", str(args.slippage_bps)]
    if args.fee_bps is not None:
        out += ["--fee-bps", str(args.fee_bps)]
    return out


def _banner(args: argparse.Namespace, data_dir: Path, nats_url: str) -> None:
    exe = str(Path(sys.executable).parent / "trading-mcp")
    desktop = {
        "mcpServers": {
            "trading-mcp": {"command": exe, "args": ["serve", "--transport", "stdio", "--data-dir", str(data_dir)]}
        }
    }
    print(
        f"""
trading-mcp is up.
  webhook (POST, Standard Webhooks)  http://127.0.0.1:{args.gateway_port}/webhook
  MCP (streamable HTTP)              http://127.0.0.1:{args.mcp_port}/mcp
  /healthz, /metrics                 :{args.gateway_port} gateway  :{args.mcp_port} mcp  \
:{args.authority_port} authority  :{args.execsim_port} execsim
  NATS JetStream                     {nats_url}
  webhook secret                     {data_dir / SECRET_FILE}

Send a signal:   {exe} send-signal --data-dir {data_dir} --url http://127.0.0.1:{args.gateway_port}/webhook \\
                   --symbol AAPL --price 190.25 --action buy --quantity 10
Claude Desktop (claude_desktop_config.json):
{json.dumps(desktop, indent=2)}

A service that dies is restarted (so is the embedded nats-server). Ctrl-C stops everything.""",
        flush=True,
    )


# ---------------------------------------------------------------- send-signal


def cmd_send_signal(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("TRADING_MCP_WEBHOOK_SECRET")
    if not secret:
        path = args.data_dir / SECRET_FILE
        if not path.exists():
            print(
                f"no webhook secret: {path} does not exist (run `trading-mcp up` first, or pass --secret)",
                file=sys.stderr,
            )
            return 2
        secret = path.read_text().strip()
    signal_body: dict[str, object] = {"symbol": args.symbol, "price": args.price}
    if args.action:
        signal_body["action"] = args.action
    if args.quantity is not None:
        signal_body["quantity"] = int(args.quantity) if args.quantity.isdigit() else args.quantity
    if args.comment:
        signal_body["comment"] = args.comment
    body = json.dumps(signal_body).encode()
    msg_id = args.id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time())
    request = urllib.request.Request(
        args.url,
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signing.sign(secret, msg_id, ts, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    except OSError as e:
        print(f"could not reach {args.url}: {e} (is `trading-mcp up` running?)", file=sys.stderr)
        return 2
    print(f"{status} {text}")
    return 0 if status < 400 else 1


# ---------------------------------------------------------------- reset

# Kept by `reset` unless --all: the secrets and credentials (and the sources file, which a person wrote).
RESET_KEEPS = ("webhook_secret", "operator_token", "authority_key", "nats-auth.json")
RESET_NEVER = ("sources.toml",)
RESET_STREAMS = ("SIGNALS", "DECISIONS", "EXECUTIONS", "ACCOUNT")
# the account's KV buckets, and the gateway's seen-id buckets (their records name signals that reset deletes)
RESET_BUCKETS = (
    "RISK_CONTROL",
    "ACCOUNT_SNAPSHOT",
    "EXECSIM_SNAPSHOT",
    "STRATEGY_SNAPSHOT",
    "webhook_ids",
    "idempotency_keys",
)


def _running_nats(data_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the embedded nats-server that nats.json names, if that process lives."""
    from bus.embedded import STATE_FILE, _pid_alive

    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        pid, port = int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(pid):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # a recycled pid is not a running system
        try:
            if b"nats-server" not in cmdline.read_bytes():
                return None
        except OSError:
            return None
    return pid, port


def _confirm_reset(args: argparse.Namespace, what: list[str]) -> int | None:
    """None when confirmed, else the exit code."""
    if args.yes:
        return None
    if not sys.stdin.isatty():
        print(
            "trading-mcp reset: refusing without --yes when stdin is not a terminal (it deletes the account)",
            file=sys.stderr,
        )
        return 2
    print("This deletes:\n" + "\n".join(f"  {w}" for w in what))
    name = args.data_dir.name
    try:
        answer = input(f"Type the data dir name ({name}) to confirm: ")
    except EOFError:
        answer = ""
    if answer.strip() != name:
        print("not confirmed; nothing was deleted", file=sys.stderr)
        return 1
    return None


def cmd_reset(args: argparse.Namespace) -> int:
    """A fresh account: no signals, orders, fills or positions. Secrets stay unless --all."""
    import shutil

    from schemas.subjects import STREAMS

    data_dir: Path = args.data_dir
    nats_url = os.environ.get("NATS_URL")
    if nats_url:
        streams = list(dict.fromkeys([*(s.name for s in STREAMS), *RESET_STREAMS]))
        what = [f"stream {s} on {nats_url}" for s in [*streams, "ACCOUNT_<id> (every other account's journal)"]]
        what += [f"KV bucket {b}" for b in RESET_BUCKETS]
        if (code := _confirm_reset(args, what)) is not None:
            return code
        return _reset_external(nats_url, data_dir, streams)

    if not data_dir.is_dir():
        print(f"{data_dir} does not exist: nothing to reset")
        return 0
    if running := _running_nats(data_dir):
        print(
            f"trading-mcp reset: a system is running on {data_dir} (nats-server pid {running[0]}, port {running[1]}); "
            "stop `trading-mcp up` (and any `trading-mcp serve` on this data dir) first",
            file=sys.stderr,
        )
        return 2
    entries = sorted(data_dir.iterdir())
    if entries and not any((data_dir / m).exists() for m in ("nats", "nats.json", SECRET_FILE)):
        print(
            f"trading-mcp reset: {data_dir} does not look like a trading-mcp data dir (no nats/, nats.json "
            "or webhook_secret); nothing deleted",
            file=sys.stderr,
        )
        return 2
    keep = set(RESET_NEVER) | (set() if args.all else set(RESET_KEEPS))
    doomed = [p for p in entries if p.name not in keep]
    if not doomed:
        print(f"{data_dir} holds no account state: nothing to reset")
        return 0
    if (code := _confirm_reset(args, [str(p) + ("/" if p.is_dir() else "") for p in doomed])) is not None:
        return code
    for p in doomed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
            print(f"removed {p}/")
        else:
            p.unlink(missing_ok=True)
            print(f"removed {p}")
    kept = [p.name for p in entries if p.name in keep]
    if kept:
        print(f"kept {', '.join(kept)}")
    return 0


def _reset_external(url: str, data_dir: Path, streams: list[str]) -> int:
    import asyncio

    from nats.js.errors import NotFoundError

    from bus.jetstream import connect

    async def run() -> int:
        try:
            nc = await asyncio.wait_for(connect(url, "reset", role="admin", data_dir=data_dir), 10)
        except Exception as exc:
            print(f"trading-mcp reset: cannot reach {url}: {exc!r}", file=sys.stderr)
            return 1
        try:
            js = nc.jetstream()
            for name in streams:
                try:
                    await js.delete_stream(name)
                    print(f"deleted stream {name}")
                except NotFoundError:
                    pass
            from schemas.account import account_of_stream

            for info in await js.streams_info():  # every other account's journal
                name = info.config.name
                if name not in streams and account_of_stream(name) is not None:
                    await js.delete_stream(name)
                    print(f"deleted stream {name}")
            for bucket in RESET_BUCKETS:
                try:
                    await js.delete_key_value(bucket)
                    print(f"deleted KV bucket {bucket}")
                except NotFoundError:
                    pass
        finally:
            await nc.close()
        print("restart the services: they recreate the streams empty")
        return 0

    return asyncio.run(run())


# ---------------------------------------------------------------- risk (operator)


NO_OPERATOR_RECORD = (
    "no operator record yet: nobody has run `trading-mcp risk set|halt|resume` on this account, so the limits "
    "above are the order authority's start-up ones (paper defaults, TRADING_MCP_* settings, `trading-mcp "
    "authority --max-position N --risk-limits-file F`). Change them at run time with `trading-mcp risk set "
    "--set FIELD=VALUE`; halt with `trading-mcp risk halt`."
)


def cmd_risk(args: argparse.Namespace) -> int:
    import asyncio

    from authority.control import TOKEN_FILE, load_or_create_token, read_signed, write_signed
    from bus.embedded import ensure_embedded
    from bus.jetstream import connect
    from tools.risk import RiskLimits, TradingState
    from tools.risk_control import ControlRefused, next_control, patched_limits, sign, verify

    patch: dict[str, object] = {}
    for item in args.assignments:
        name, sep, raw = item.partition("=")
        if not sep or name not in RiskLimits.model_fields:
            print(
                f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(RiskLimits.model_fields)}",
                file=sys.stderr,
            )
            return 2
        try:
            patch[name] = json.loads(raw)
        except json.JSONDecodeError:
            patch[name] = raw
    try:
        patched_limits(RiskLimits(), patch)
    except ValueError as e:
        print(f"invalid limits: {e}", file=sys.stderr)
        return 2
    if args.action == "set" and not patch:
        print("risk set needs at least one --set FIELD=VALUE", file=sys.stderr)
        return 2
    token = load_or_create_token(args.token_file or args.data_dir / TOKEN_FILE)
    url = os.environ.get("NATS_URL") or ensure_embedded(args.data_dir).url

    async def in_force(js, wait_for_revision: int = 0) -> dict[str, object] | None:  # type: ignore[no-untyped-def]
        """What the authority's journal says is in force (after it applied `wait_for_revision`, bounded)."""
        from bus.journal import JournalFollower
        from bus.snapshot import read_snapshot
        from tools.account import Account

        restored = await read_snapshot(js, args.account)
        account = restored[1] if restored is not None else Account(account_id=args.account)
        follower = JournalFollower(js, lambda seq, ev: account.apply(ev, seq), args.account, after=account.seq)
        await follower.start()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 30)
            deadline = asyncio.get_running_loop().time() + (5 if wait_for_revision else 0)
            while account.control_revision < wait_for_revision and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
        finally:
            await follower.stop()
        if account.seq == 0:
            return None
        return {
            "trading_state": account.gate.state.value,
            "state_reason": account.gate.state_reason,
            "operator_revision_applied": account.control_revision,
            "journal_seq": account.seq,
            "limits": account.gate.limits.model_dump(mode="json"),
        }

    async def from_journal(js):  # type: ignore[no-untyped-def]
        """The record to build on when the stored one is unusable: the journal's applied revision, with the limits
        and state it has in force pinned (so a halt written over a forged record loosens nothing)."""
        from datetime import UTC, datetime

        from tools.risk_control import RiskControl

        shown = await in_force(js)
        if shown is None or not shown["operator_revision_applied"]:
            return None  # no operator record was ever applied: the configured limits are in force
        return RiskControl(
            revision=int(shown["operator_revision_applied"]),  # type: ignore[call-overload]
            limits_patch=dict(shown["limits"]),  # type: ignore[call-overload]
            state=TradingState(shown["trading_state"]),
            reason=str(shown["state_reason"]),
            operator="journal",
            issued_at=datetime.now(UTC),
        )

    async def run() -> int:
        nc = await connect(url, "risk-cli", role="operator", data_dir=args.data_dir)
        try:
            js = nc.jetstream()
            previous, refused = None, None
            try:
                signed = await read_signed(js, args.account)
                previous = verify(signed, token) if signed is not None else None
            except ControlRefused as exc:  # forged, foreign or malformed: the authority ignores it
                refused = exc
                print(f"the stored operator record is refused ({refused.code}): {refused}", file=sys.stderr)
                if args.action != "show":  # the operator must still be able to halt: start from what is in force
                    previous = await from_journal(js)
                    print(
                        "writing a new record over it, starting from what the order authority's journal has in force",
                        file=sys.stderr,
                    )
            if args.action == "show":
                shown = await in_force(js)
                if shown is None:
                    from authority.settings import AuthoritySettings

                    shown = {
                        "trading_state": "ACTIVE",
                        "note": "the order authority has not run on this data dir yet: these are the limits it "
                        "will start with (paper defaults, TRADING_MCP_* settings)",
                        "limits": AuthoritySettings(data_dir=args.data_dir).risk_limits().model_dump(mode="json"),
                    }
                if previous is not None:
                    shown["operator_record"] = previous.model_dump(mode="json")
                print(json.dumps(shown, indent=2))
                if previous is None and refused is None:
                    print(NO_OPERATOR_RECORD, file=sys.stderr)
                return 0
            state = {"halt": TradingState.HALTED, "resume": TradingState.ACTIVE}.get(args.action)
            from datetime import UTC, datetime

            control = next_control(
                previous,
                datetime.now(UTC),
                patch=patch,
                state=state,
                reason=args.reason or args.action,
                operator=args.operator,
            )
            await write_signed(js, sign(control, token), args.account)
            print(json.dumps(control.model_dump(mode="json"), indent=2))
            shown = await in_force(js, control.revision)
            if shown is not None and int(shown["operator_revision_applied"]) >= control.revision:  # type: ignore[call-overload]
                print(f"applied by the order authority: trading state {shown['trading_state']}", file=sys.stderr)
            else:
                print(
                    "recorded; the order authority has not applied it yet (is it running?): it applies it as soon "
                    "as it runs, before any order",
                    file=sys.stderr,
                )
            return 0
        finally:
            await nc.close()

    return asyncio.run(run())


# ---------------------------------------------------------------- parser


def account_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--account",
        default=os.environ.get("TRADING_MCP_ACCOUNT", DEFAULT_ACCOUNT),
        help="the account to act on (default paper; env TRADING_MCP_ACCOUNT)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trading-mcp", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def data_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--data-dir",
            type=Path,
            default=default_data_dir(),
            help="NATS store and webhook secret (default $XDG_DATA_HOME/trading-mcp)",
        )

    up = sub.add_parser(
        "up",
        help="start NATS (embedded unless NATS_URL), execsim, the order authority, MCP server + bridge, gateway; "
        "restart any of them that dies",
    )
    data_dir(up)
    up.add_argument("--gateway-port", type=int, default=8001, help="webhook gateway HTTP port (default 8001)")
    up.add_argument(
        "--mcp-port", type=int, default=8002, help="MCP server (streamable HTTP at /mcp) and bridge port (default 8002)"
    )
    up.add_argument("--execsim-port", type=int, default=8004, help="execution simulator health/metrics port (8004)")
    up.add_argument("--authority-port", type=int, default=8003, help="order authority health/metrics port (8003)")
    up.add_argument("--slippage-bps", type=str, default=None, help="simulated slippage in basis points (default 0)")
    up.add_argument("--fee-bps", type=str, default=None, help="simulated fee in basis points of notional (default 0)")
    up.add_argument("--max-position", default=None, help="risk: max absolute units per symbol (default 1000)")
    up.add_argument(
        "--risk-limits-file", type=Path, default=None, help="risk: JSON of limits on top of the paper defaults"
    )
    up.add_argument(
        "--mode",
        choices=["follow", "strategy", "agent"],
        default=None,
        help="the bridge's mode (default follow); "
        "strategy runs TRADING_MCP_STRATEGIES (hybrid by default) and sizes with --fee-bps / --slippage-bps; "
        "agent lets an LLM decide through the MCP tools (needs ANTHROPIC_API_KEY)",
    )
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run the MCP server")
    data_dir(serve)
    flags.add(
        serve,
        ServeSettings,
        "transport",
        "host",
        "port",
        "toolsets",
        "read_only",
        "confirmation",
        "confirmation_ttl_seconds",
        "price_band_bps",
        "elicitation_timeout_seconds",
        "rate_limit_per_minute",
        "rate_limit_burst",
        "account",
        "accounts_file",
    )
    flags.add(
        serve,
        DecisionSettings,
        "bridge",
        "bridge_mode",
        "default_quantity",
        "strategies_file",
        "strategy_commission",
        "strategy_slippage_bps",
        "strategy_fractional",
    )
    serve.add_argument("--allowed-host", action="append", help="extra Host header accepted over HTTP (repeatable)")
    serve.add_argument("--allowed-origin", action="append", help="extra Origin accepted over HTTP (repeatable)")
    serve.set_defaults(func=cmd_serve)

    agent = sub.add_parser(
        "agent", help="an LLM decides on each signal through the MCP tools (needs ANTHROPIC_API_KEY)"
    )
    data_dir(agent)
    flags.add(
        agent, AgentSettings, "model", "max_tool_calls", "max_tokens", "max_tokens_per_turn", "dry_run", "toolsets"
    )
    agent.set_defaults(func=cmd_agent)

    gw = sub.add_parser("gateway", help="run the webhook gateway")
    data_dir(gw)
    flags.add(gw, GatewaySettings, "host", "port", "source", "sources_file", "max_body_bytes")
    gw.set_defaults(func=cmd_gateway)

    ex = sub.add_parser("execsim", help="run the execution simulator")
    ex.add_argument("--data-dir", type=Path, default=None, help="the account's data dir (default: none)")
    flags.add(
        ex,
        ExecSimSettings,
        "host",
        "port",
        "slippage_bps",
        "volatility_slippage",
        "fee_bps",
        "spread_bps",
        "fee_per_share",
        "fee_min",
        "latency_ms",
        "latency_jitter_ms",
        "participation",
        "intrabar_path",
        "seed",
        "accounts_file",
        "member",
        "lease_ttl_seconds",
    )
    ex.set_defaults(func=cmd_execsim)

    au = sub.add_parser("authority", help="run the order authority: the one admitter of the account's orders")
    data_dir(au)
    flags.add(
        au,
        AuthoritySettings,
        "host",
        "port",
        "starting_cash",
        "max_position",
        "risk_limits_file",
        "account",
        "accounts_file",
        "member",
        "lease_ttl_seconds",
    )
    au.add_argument(  # kept short: `up` and the runbook use it
        "--max-signal-age",
        dest="max_signal_age_seconds",
        type=float,
        default=None,
        help="seconds from a signal's firing to its trade, at most (default 5; env TRADING_MCP_MAX_SIGNAL_AGE_SECONDS)",
    )
    au.set_defaults(func=cmd_authority)

    rs = sub.add_parser(
        "reset",
        help="a fresh account: delete the NATS store (or, with NATS_URL, the streams and buckets); keeps the secrets",
    )
    data_dir(rs)
    rs.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    rs.add_argument("--all", action="store_true", help="also delete the secrets and tokens (a new identity)")
    rs.set_defaults(func=cmd_reset)

    rk = sub.add_parser(
        "risk", help="operator: show or change risk limits and the trading state (signed with the operator token)"
    )
    data_dir(rk)
    rk.add_argument("action", choices=["show", "halt", "resume", "set"], help="halt is the kill switch")
    rk.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a RiskLimits field, value as JSON (e.g. max_position=500, mcp_may_loosen=true)",
    )
    rk.add_argument("--reason", default="")
    rk.add_argument("--operator", default=os.environ.get("USER", "operator"))
    rk.add_argument("--token-file", type=Path, default=None, help="default <data-dir>/operator_token")
    account_flag(rk)
    rk.set_defaults(func=cmd_risk)

    ss = sub.add_parser("send-signal", help="sign and send one generic JSON signal to the gateway")
    data_dir(ss)
    ss.add_argument("--symbol", required=True)
    ss.add_argument("--price", required=True)
    ss.add_argument("--action", choices=["buy", "sell", "close"])
    ss.add_argument("--quantity", default=None)
    ss.add_argument("--comment", default=None)
    ss.add_argument("--id", default=None, help="webhook-id (default: a new random id)")
    ss.add_argument("--secret", default=None, help="default: TRADING_MCP_WEBHOOK_SECRET or <data-dir>/webhook_secret")
    ss.add_argument("--url", default="http://127.0.0.1:8001/webhook")
    ss.set_defaults(func=cmd_send_signal)

    from cli.backtest import add_backtest_parser

    add_backtest_parser(sub)
    from cli.accounts import add_parser as add_accounts_parser

    add_accounts_parser(sub)
    from cli.demo import add_demo_parser

    add_demo_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
