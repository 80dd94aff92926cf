"""Subject names, and the registry mapping each subject to its model and schema version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from schemas.agent import AgentDecision
from schemas.orders import Fill, OrderCancel, OrderEvent, OrderIntent, RiskDenied, SimulatorOwner
from schemas.signals import NormalizedSignal


class Subject(StrEnum):
    SIGNALS_NORMALIZED = "signals.normalized"
    ORDER_INTENT = "decisions.order_intent"
    RISK_DENIED = "decisions.risk_denied"
    ORDER_CANCEL = "decisions.order_cancel"
    EXECUTION_REPORT = "executions.report"
    EXECUTION_FILL = "executions.fill"
    EXECUTION_OWNER = "executions.owner"
    AGENT_DECISION = "decisions.agent"


@dataclass(frozen=True)
class Stream:
    name: str
    subjects: tuple[str, ...]


STREAMS: tuple[Stream, ...] = (
    Stream("SIGNALS", ("signals.>",)),
    Stream("DECISIONS", ("decisions.>",)),
    Stream("EXECUTIONS", ("executions.>",)),
)


@dataclass(frozen=True)
class Entry:
    subject: Subject
    model: type[BaseModel]
    version: int


REGISTRY: dict[Subject, Entry] = {
    Subject.SIGNALS_NORMALIZED: Entry(Subject.SIGNALS_NORMALIZED, NormalizedSignal, 1),
    Subject.ORDER_INTENT: Entry(Subject.ORDER_INTENT, OrderIntent, 1),
    Subject.RISK_DENIED: Entry(Subject.RISK_DENIED, RiskDenied, 1),
    Subject.ORDER_CANCEL: Entry(Subject.ORDER_CANCEL, OrderCancel, 1),
    Subject.EXECUTION_REPORT: Entry(Subject.EXECUTION_REPORT, OrderEvent, 1),
    Subject.EXECUTION_FILL: Entry(Subject.EXECUTION_FILL, Fill, 1),
    Subject.EXECUTION_OWNER: Entry(Subject.EXECUTION_OWNER, SimulatorOwner, 1),
    Subject.AGENT_DECISION: Entry(Subject.AGENT_DECISION, AgentDecision, 1),
}

JSON_DIR = Path(__file__).parent / "json"


def json_schema_files() -> dict[str, str]:
    """File name -> JSON Schema text for every registered subject (what `schemas/json/` must hold)."""
    files = {}
    for entry in REGISTRY.values():
        schema = entry.model.model_json_schema(mode="serialization")
        schema["$id"] = f"trading-mcp/{entry.subject.value}/v{entry.version}"
        files[f"{entry.subject.value}.v{entry.version}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def write_json_schemas(directory: Path = JSON_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in json_schema_files().items():
        (directory / name).write_text(text)


if __name__ == "__main__":
    write_json_schemas()
