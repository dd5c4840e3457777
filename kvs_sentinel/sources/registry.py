"""Every source type `run` can consume, by its `type:` name, and building the configured ones.

A source type is a class with a `Config` (a SourceConfig model) and `from_config(config)`, registered
with `@register_source("name")`. A shipped type's module is imported when a configuration names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from kvs_sentinel.sources.base import ConsumedSource, SourceConfig


class SourceType(Protocol):
    Config: type[SourceConfig]

    @classmethod
    def from_config(cls, config: SourceConfig) -> ConsumedSource: ...


SOURCE_TYPES: dict[str, SourceType] = {}
# type name → the module whose import registers it
SHIPPED_SOURCE_MODULES = {"sqs": "kvs_sentinel.sources.sqs"}

_T = TypeVar("_T")


def register_source(type_name: str) -> Callable[[_T], _T]:
    def register(cls: _T) -> _T:
        SOURCE_TYPES[type_name] = cls  # type: ignore[assignment]
        return cls

    return register


def source_type(type_name: str) -> SourceType:
    if type_name not in SOURCE_TYPES and type_name in SHIPPED_SOURCE_MODULES:
        importlib.import_module(SHIPPED_SOURCE_MODULES[type_name])
    found = SOURCE_TYPES.get(type_name)
    if found is None:
        known = ", ".join(sorted({*SOURCE_TYPES, *SHIPPED_SOURCE_MODULES}))
        raise ValueError(f"unknown source type {type_name!r}; known: {known}")
    return found


def source_type_of(config: SourceConfig) -> SourceType:
    for registered in SOURCE_TYPES.values():
        if type(config) is registered.Config:
            return registered
    raise ValueError(f"no source type takes {type(config).__name__}")


def build_sources(configs: Sequence[SourceConfig]) -> list[ConsumedSource]:
    return [source_type_of(config).from_config(config) for config in configs]
