"""What a service start imports: structlog without rich and pygments (cli/__init__.py), and still JSON logs with the
exception's traceback as text. rich is installed here (the dev extra): it is hidden from structlog's import only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
import cli.main, cli.serve  # what every `trading-mcp <service>` imports before it runs
loaded = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("rich", "pygments")})
print(repr(loaded))
from observability.logging import configure_logging, get_logger
configure_logging("probe")
try:
    1 / 0
except ZeroDivisionError:
    get_logger("probe").exception("it failed", token="s3cret")
import rich.traceback  # installed, and importable by anyone after structlog
print("rich", rich.traceback.__name__)
"""


def test_a_service_start_imports_structlog_without_rich_and_still_logs_tracebacks_as_json() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.splitlines()
    assert out[0] == "[]", f"a service start imported {out[0]}"
    assert out[1] == "rich rich.traceback"
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert line["event"] == "it failed" and line["service"] == "probe" and line["token"] == "[redacted]"
    assert "Traceback (most recent call last)" in line["exception"] and "ZeroDivisionError" in line["exception"]
