"""Pass two of validation: compile detector specs to plain predicates, once, at load.

Condition grammar (YAML):
  <field.path>: <scalar>          equals                     all: [cond, ...]
  <field.path>: [a, b]            in the list                any: [cond, ...]
  <field.path>: null              absent                     not: cond
  <field.path>: {op: arg, ...}    every operator holds       check: name | {name: ..., with: {...}}
A mapping with several keys means all of them. `$name` in an argument is the named list `name`
(`$$` starts a literal `$`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvs_sentinel.detectors.checks import CompiledCheck, compile_check
from kvs_sentinel.detectors.operators import compile_operator
from kvs_sentinel.detectors.spec import SEVERITY_NAMES, DetectorSpec, Severity
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import Event, Getter, field_getter

Predicate = Callable[[Event], bool]

PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")
# Fields of the alert that a summary template may name besides CloudTrail paths.
ALERTPLACEHOLDERS = frozenset(
    {
        "principal",
        "principal_type",
        "action",
        "event_source",
        "event_name",
        "resource",
        "source_ip",
        "account",
        "region",
        "access_key_id",
        "user_agent",
        "error_code",
        "event_time",
        "event_id",
    }
)
DEFAULT_SUMMARY = "{principal} called {action} on {resource} from {source_ip}"


@dataclass(frozen=True, slots=True)
class Escalation:
    when: Predicate
    severity: Severity
    reason: str


@dataclass(frozen=True, slots=True)
class SummaryTemplate:
    text: str
    event_fields: Mapping[str, Getter]  # placeholders that are CloudTrail paths, compiled


@dataclass(frozen=True, slots=True)
class Detector:
    id: str
    title: str
    severity: Severity
    description: str
    remediation: str
    practice: str | None
    tags: tuple[str, ...]
    needs_data_events: bool
    summary: SummaryTemplate
    predicate: Predicate
    escalations: tuple[Escalation, ...]
    checks: tuple[CompiledCheck, ...]
    event_sources: frozenset[str] | None  # index keys: None means any
    event_names: frozenset[str] | None
    spec: DetectorSpec
    origin: Path

    def severity_for(self, event: Event) -> tuple[Severity, str | None]:
        for escalation in self.escalations:
            if escalation.when(event):
                return escalation.severity, escalation.reason
        return self.severity, None


def all_of(predicates: Sequence[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda event: first(event) and second(event)

    def every(event: Event) -> bool:
        for predicate in predicates:
            if not predicate(event):
                return False
        return True

    return every


def any_of(predicates: Sequence[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]

    def some(event: Event) -> bool:
        for predicate in predicates:
            if predicate(event):
                return True
        return False

    return some


class DetectorCompiler:
    """Compiles the detectors of one file against the named lists in force."""

    def __init__(self, lists: Mapping[str, Sequence[Any]], origin: Path) -> None:
        self.lists = lists
        self.origin = origin
        self._checks: list[CompiledCheck] = []

    def detector(self, spec: DetectorSpec, position: int) -> Detector:
        where = f"detectors[{position}] ({spec.id})"
        self._checks = []
        predicate = self.condition(spec.match, f"{where}.match")
        escalations = tuple(
            Escalation(
                self.condition(rule.when, f"{where}.escalate[{i}].when"),
                SEVERITY_NAMES[rule.severity],
                rule.reason,
            )
            for i, rule in enumerate(spec.escalate)
        )
        return Detector(
            id=spec.id,
            title=spec.title,
            severity=SEVERITY_NAMES[spec.severity],
            description=spec.description,
            remediation=spec.remediation,
            practice=spec.practice,
            tags=tuple(spec.tags),
            needs_data_events=spec.needs_data_events,
            summary=self.summary(spec.summary or DEFAULT_SUMMARY, f"{where}.summary"),
            predicate=predicate,
            escalations=escalations,
            checks=tuple(self._checks),
            event_sources=self.constraint(spec.match, "eventSource"),
            event_names=self.constraint(spec.match, "eventName"),
            spec=spec,
            origin=self.origin,
        )

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin}: {path}: {message}")

    def condition(self, node: Any, path: str) -> Predicate:
        if isinstance(node, list):
            if not node:
                raise self.fail(path, "an empty list of conditions")
            return all_of([self.condition(child, f"{path}[{i}]") for i, child in enumerate(node)])
        if not isinstance(node, dict) or not node:
            raise self.fail(path, "a condition is a mapping of field paths, or all/any/not/check")
        predicates: list[Predicate] = []
        for key, value in node.items():
            here = f"{path}.{key}"
            if key in ("all", "any"):
                if not isinstance(value, list) or not value:
                    raise self.fail(here, f"{key} takes a non-empty list of conditions")
                children = [self.condition(child, f"{here}[{i}]") for i, child in enumerate(value)]
                predicates.append(all_of(children) if key == "all" else any_of(children))
            elif key == "not":
                inner = self.condition(value, here)
                predicates.append(lambda event, inner=inner: not inner(event))  # type: ignore[misc]
            elif key == "check":
                try:
                    compiled = compile_check(value)
                except ValueError as exc:
                    raise self.fail(here, str(exc)) from None
                self._checks.append(compiled)
                predicates.append(compiled)
            else:
                predicates.append(self.field(str(key), value, here))
        return all_of(predicates)

    def field(self, path_text: str, spec: Any, here: str) -> Predicate:
        try:
            getter = field_getter(path_text)
        except ValueError as exc:
            raise self.fail(here, str(exc)) from None
        operations: list[tuple[str, Any]]
        if spec is None:
            operations = [("exists", False)]
        elif isinstance(spec, dict):
            if not spec:
                raise self.fail(here, "an empty mapping of operators")
            operations = list(spec.items())
        elif isinstance(spec, list) or (isinstance(spec, str) and self._is_reference(spec)):
            operations = [("in", spec)]
        else:
            operations = [("eq", spec)]
        tests = []
        for name, argument in operations:
            where = f"{here}.{name}" if isinstance(spec, dict) else here
            try:
                tests.append(compile_operator(str(name), self.resolve(argument, where)))
            except ValueError as exc:
                raise self.fail(where, str(exc)) from None
        if len(tests) == 1:
            test = tests[0]
            return lambda event: test(getter(event))

        def every(event: Event) -> bool:
            value = getter(event)
            return all(test(value) for test in tests)

        return every

    @staticmethod
    def _is_reference(text: str) -> bool:
        return text.startswith("$") and not text.startswith("$$")

    def resolve(self, argument: Any, where: str) -> Any:
        if isinstance(argument, str):
            if self._is_reference(argument):
                return list(self._list(argument[1:], where))
            return argument[1:] if argument.startswith("$$") else argument
        if isinstance(argument, list):
            resolved: list[Any] = []
            for element in argument:
                if isinstance(element, str) and self._is_reference(element):
                    resolved.extend(self._list(element[1:], where))
                else:
                    resolved.append(self.resolve(element, where))
            return resolved
        return argument

    def _list(self, name: str, where: str) -> Sequence[Any]:
        if name not in self.lists:
            known = ", ".join(sorted(self.lists)) or "none"
            raise self.fail(where, f"unknown list ${name} (defined lists: {known})")
        return self.lists[name]

    def summary(self, text: str, where: str) -> SummaryTemplate:
        fields: dict[str, Getter] = {}
        for name in PLACEHOLDER.findall(text):
            if name in ALERTPLACEHOLDERS or name in fields:
                continue
            try:
                fields[name] = field_getter(name)
            except ValueError as exc:
                raise self.fail(
                    where, f"{{{name}}}: {exc}; alert fields: {', '.join(sorted(ALERTPLACEHOLDERS))}"
                ) from None
        return SummaryTemplate(text, fields)

    def constraint(self, node: Any, field: str) -> frozenset[str] | None:
        """The literal values `field` must take for `node` to match, if the node says so (index keys)."""
        if isinstance(node, list):
            return self._intersect(self.constraint(child, field) for child in node)
        if not isinstance(node, dict):
            return None
        found: list[frozenset[str] | None] = []
        for key, value in node.items():
            if key == field:
                found.append(self._literals(value))
            elif key == "all":
                found.append(self.constraint(value, field))
            elif key == "any" and isinstance(value, list) and value:
                options = [self.constraint(child, field) for child in value]
                if all(option is not None for option in options):
                    found.append(frozenset().union(*options))  # type: ignore[arg-type]
        return self._intersect(found)

    @staticmethod
    def _intersect(sets: Any) -> frozenset[str] | None:
        result: frozenset[str] | None = None
        for values in sets:
            if values is not None:
                result = values if result is None else result & values
        return result

    def _literals(self, spec: Any) -> frozenset[str] | None:
        if isinstance(spec, dict):
            if len(spec) != 1 or next(iter(spec)) not in ("eq", "in"):
                return None
            spec = next(iter(spec.values()))
        values = self.resolve(spec, "")
        values = values if isinstance(values, list) else [values]
        if values and all(isinstance(value, str) for value in values):
            return frozenset(values)
        return None
