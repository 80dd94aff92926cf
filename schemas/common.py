"""Shared field types: money and quantities are Decimal, timestamps are timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

MAX_DIGITS = 20
# Accounts: the unit of partitioning. Every order, report, fill, denial and journal entry names one; a signal
# names the accounts it is routed to. Stored messages from before accounts existed belong to DEFAULT_ACCOUNT.
DEFAULT_ACCOUNT = "paper"
ACCOUNT_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
ACCOUNT_HEADER = "Trading-Account"


def scoped_id(account: str, msg_id: str) -> str:
    """A message id unique across accounts (JetStream dedupes per stream): the default account's ids stay as
    they were before accounts existed, so the duplicate window keeps working across an upgrade."""
    return msg_id if account == DEFAULT_ACCOUNT else f"{account}:{msg_id}"


MAX_DECIMALS = 10


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    return value


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone (UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:59:59-14:00 is past the year 9999 in UTC
        raise ValueError("timestamp is out of range once converted to UTC") from exc


# Decimals travel as strings so that no JSON parser on the way turns them into floats.
_as_str = PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json")

Money = Annotated[Decimal, AfterValidator(_finite), _as_str]
PositiveDecimal = Annotated[
    Decimal,
    Field(gt=0, max_digits=MAX_DIGITS, decimal_places=MAX_DECIMALS),
    AfterValidator(_finite),
    _as_str,
]
Quantity = PositiveDecimal
Price = PositiveDecimal
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]

Side = Literal["buy", "sell"]
Action = Literal["buy", "sell", "close"]


class Contract(BaseModel):
    """Base for every message on the bus: strict about unknown fields, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def now_utc() -> datetime:
    """The wall clock, for the edges only; the core takes a clock instead."""
    return datetime.now(UTC)


M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def construct_trusted(cls: type[M], values: dict[str, Any]) -> M:
    """Build a model from values already known to be valid, without validation: the hot paths only (the
    engine's events, the backtest's orders). `values` must hold every field of `cls`; the tests check the
    engine's against the schema."""
    obj = cls.__new__(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj
