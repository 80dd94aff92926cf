"""The strategy catalog a model reads: names, variants and parameters, from each strategy's pydantic param model."""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from strategies.registry import STRATEGIES


class ParamInfo(BaseModel):
    name: str
    type: str
    default: Any
    description: str | None = None
    constraints: dict[str, Any] = Field(default_factory=dict, description="gt / ge / lt / le bounds")


class StrategyInfo(BaseModel):
    name: str
    description: str
    variants: list[str]
    warmup_bars: int
    parameters: list[ParamInfo]


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _constraints(info: FieldInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in info.metadata:
        for key in ("gt", "ge", "lt", "le"):
            value = getattr(item, key, None)
            if value is not None:
                out[key] = value
    return out


def _params(model: type[BaseModel], prefix: str = "") -> list[ParamInfo]:
    out: list[ParamInfo] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _params(annotation, f"{prefix}{name}.")
            continue
        default = info.get_default(call_default_factory=True)
        out.append(
            ParamInfo(
                name=prefix + name,
                type=_type_name(annotation),
                default=default,
                description=info.description,
                constraints=_constraints(info),
            )
        )
    return out


def _variants(model: type[BaseModel]) -> list[str]:
    field = model.model_fields.get("variant")
    if field is None or typing.get_origin(field.annotation) is not Literal:
        return []
    return [str(a) for a in typing.get_args(field.annotation)]


def catalog() -> list[StrategyInfo]:
    out = []
    for name, cls in STRATEGIES.items():
        doc = inspect.cleandoc(cls.__doc__ or sys.modules[cls.__module__].__doc__ or name)
        doc = doc.split("\n\n")[0].replace("\n", " ")
        out.append(
            StrategyInfo(
                name=name,
                description=doc,
                variants=_variants(cls.params_model),
                warmup_bars=cls().warmup,
                parameters=_params(cls.params_model),
            )
        )
    return out
