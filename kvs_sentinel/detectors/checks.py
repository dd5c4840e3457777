"""Python-side checks for what YAML can't express well, registered by name like operators.

A check is a factory taking its validated arguments and returning a callable that looks at an event and
returns None (no match) or a mapping of details that the alert carries (empty mapping: match, no details).
Results are remembered per event, so detectors sharing a check compute it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from kvs_sentinel.events import Event


class CheckFunction(Protocol):
    def __call__(self, event: Event) -> Mapping[str, Any] | None: ...


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True)
class _Registered:
    arguments: type[BaseModel]
    factory: Callable[[Any], CheckFunction]


CHECKS: dict[str, _Registered] = {}


def check(
    name: str, arguments: type[BaseModel] = NoArguments
) -> Callable[[Callable[[Any], CheckFunction]], Any]:
    """Register a check factory: `factory(arguments) -> CheckFunction`."""

    def register(factory: Callable[[Any], CheckFunction]) -> Callable[[Any], CheckFunction]:
        CHECKS[name] = _Registered(arguments, factory)
        return factory

    return register


@dataclass(frozen=True, slots=True)
class CompiledCheck:
    name: str
    key: str  # the memo key: name plus arguments, so differently configured uses don't share results
    function: CheckFunction

    def result(self, event: Event) -> Mapping[str, Any] | None:
        return event.remember(self.key, self.function)  # type: ignore[no-any-return]

    def __call__(self, event: Event) -> bool:
        return self.result(event) is not None


def compile_check(spec: Any) -> CompiledCheck:
    """`check: name` or `check: {name: ..., with: {...}}`; ValueError says what is wrong."""
    raw_arguments: dict[str, Any]
    if isinstance(spec, str):
        name, raw_arguments = spec, {}
    elif isinstance(spec, dict) and set(spec) <= {"name", "with"} and isinstance(spec.get("name"), str):
        name, raw_arguments = spec["name"], spec.get("with") or {}
    else:
        raise ValueError("check takes a check name, or {name: <check>, with: {arguments}}")
    registered = CHECKS.get(name)
    if registered is None:
        raise ValueError(f"unknown check {name!r}; known: {', '.join(sorted(CHECKS)) or 'none'}")
    try:
        arguments = registered.arguments.model_validate(raw_arguments)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"check {name!r} arguments: {problems}") from None
    key = "check:" + name + ":" + json.dumps(arguments.model_dump(), sort_keys=True, default=str)
    return CompiledCheck(name, key, registered.factory(arguments))
