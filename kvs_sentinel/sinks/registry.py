"""Every sink type by its `type:` name, and building the configured sinks of a run.

A shipped sink type's module is imported when a configuration first names it, and its heavy clients
(aiohttp, aiobotocore) only when it first sends, so a run pays only for the sinks it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kvs_sentinel.sinks.base import SINK_TYPES, Sink, SinkContext, SinkSpec

# type name → the module whose import registers it (with @register_sink)
SHIPPED_SINK_MODULES = {
    "securityhub": "kvs_sentinel.sinks.securityhub",
    "slack": "kvs_sentinel.sinks.slack",
    "sns": "kvs_sentinel.sinks.sns",
    "stdout": "kvs_sentinel.sinks.stdout",
}


@dataclass(frozen=True)
class SinkSetting:
    """One `sinks.<name>` entry after pass two: its type and its validated Config."""

    name: str
    type: str
    config: BaseModel


def _registered(type_name: str) -> Any:
    if type_name not in SINK_TYPES and type_name in SHIPPED_SINK_MODULES:
        importlib.import_module(SHIPPED_SINK_MODULES[type_name])
    return SINK_TYPES.get(type_name)


def sink_type(type_name: str) -> Any:
    found = _registered(type_name)
    if found is None:
        known = sorted({*SINK_TYPES, *SHIPPED_SINK_MODULES})
        raise ValueError(f"unknown sink type {type_name!r}; known: {', '.join(known)}")
    return found


def validate_sink(name: str, spec: SinkSpec) -> SinkSetting:
    """Check `spec` against its type's Config; raises ValueError or pydantic's ValidationError."""
    cls = sink_type(spec.type)
    options: dict[str, Any] = dict(spec.model_extra or {})
    config = cls.Config.model_validate(options)
    return SinkSetting(name, spec.type, config)


def secret_fields(type_name: str) -> tuple[str, ...]:
    found = _registered(type_name)
    return tuple(found.secret_fields) if found is not None else ()


def build_sinks(settings: Mapping[str, SinkSetting], context: SinkContext | None = None) -> dict[str, Sink]:
    context = context or SinkContext()
    return {
        name: sink_type(setting.type).from_config(name, setting.config, context)
        for name, setting in settings.items()
    }


__all__ = ["SinkSetting", "build_sinks", "secret_fields", "validate_sink"]
