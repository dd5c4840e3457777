"""Every sink type by its `type:` name, and building the configured sinks of a run.

Importing this module registers the shipped sink types. Their heavy clients (aiohttp, aiobotocore) are
imported only when a sink first sends, so validating a configuration stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kvs_sentinel.sinks import securityhub, slack, sns, stdout  # noqa: F401  (registration)
from kvs_sentinel.sinks.base import SINK_TYPES, Sink, SinkContext, SinkSpec


@dataclass(frozen=True)
class SinkSetting:
    """One `sinks.<name>` entry after pass two: its type and its validated Config."""

    name: str
    type: str
    config: BaseModel


def sink_type(type_name: str) -> Any:
    found = SINK_TYPES.get(type_name)
    if found is None:
        raise ValueError(f"unknown sink type {type_name!r}; known: {', '.join(sorted(SINK_TYPES))}")
    return found


def validate_sink(name: str, spec: SinkSpec) -> SinkSetting:
    """Check `spec` against its type's Config; raises ValueError or pydantic's ValidationError."""
    cls = sink_type(spec.type)
    options: dict[str, Any] = dict(spec.model_extra or {})
    config = cls.Config.model_validate(options)
    return SinkSetting(name, spec.type, config)


def secret_fields(type_name: str) -> tuple[str, ...]:
    found = SINK_TYPES.get(type_name)
    return tuple(found.secret_fields) if found is not None else ()


def build_sinks(settings: Mapping[str, SinkSetting], context: SinkContext | None = None) -> dict[str, Sink]:
    context = context or SinkContext()
    return {
        name: SINK_TYPES[setting.type].from_config(name, setting.config, context)
        for name, setting in settings.items()
    }


__all__ = ["SinkSetting", "build_sinks", "secret_fields", "validate_sink"]
