"""The model's final answer: one JSON decision object, parsed strictly."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.agent import AgentAction
from schemas.common import Quantity

FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


class Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: AgentAction
    quantity: Quantity | None = None
    confidence: float = Field(ge=0, le=1)
    rationale: str = Field(min_length=1, max_length=4000)


def parse_verdict(text: str) -> Verdict | None:
    """The decision object in the answer (bare, or in a ```json fence), or None if there is none."""
    candidates = FENCE.findall(text)
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            verdict = Verdict.model_validate(json.loads(candidate, parse_float=Decimal))
        except (ValueError, ValidationError):
            continue
        if verdict.action in ("buy", "sell") and verdict.quantity is None:
            continue
        return verdict
    return None
