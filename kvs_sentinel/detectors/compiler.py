"""Pass two of validation: compile detector specs to plain predicates, once, at load.

Condition grammar (YAML):
  <field.path>: <scalar>          equals                     all: [cond, ...]
  <field.path>: [a, b]            in the list                any: [cond, ...]
  <field.path>: null              absent                     not: cond
  <field.path>: {op: arg, ...}    every operator holds       check: name | {name: ..., with: {...}}
  <field.path>: {ieq_field: <other.path>}   the two fields' texts are equal, ignoring case
A mapping with several keys means all of them. `$name` in an argument is the named list `name`
(`$$` starts a literal `$`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvs_sentinel.alert_fields import EVENT_FIELDS
from kvs_sentinel.detectors.checks import CompiledCheck, compile_check
from kvs_sentinel.detectors.conditions import (
    FALSE,
    LAZY_FIELD_COST,
    OPERATOR_COST,
    AllOf,
    AnyOf,
    CheckCall,
    FieldPair,
    FieldTest,
    Node,
    NotOf,
    Predicate,
    build,
    specialise,
    with_memo,
)
from kvs_sentinel.detectors.operators import compile_operator
from kvs_sentinel.detectors.spec import DetectorSpec, ExampleSpec
from kvs_sentinel.detectors.stateful import StatefulRule, compile_first_seen, compile_threshold
from kvs_sentinel.detectors.text_operators import RELATIONS
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import LAZY_FIELDS, Event, Getter, field_getter, split_field_path
from kvs_sentinel.severity import SEVERITY_NAMES, Severity

PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")
# Fields of the alert that a summary template may name besides CloudTrail paths.
ALERT_PLACEHOLDERS = frozenset({*EVENT_FIELDS, "action"})
DEFAULT_SUMMARY = "{principal} called {action} on {resource} from {source_ip}"


@dataclass(frozen=True, slots=True)
class Escalation:
    when: Node
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
    references: tuple[str, ...]
    author: str | None
    needs_data_events: bool
    summary: SummaryTemplate
    condition: Node
    escalations: tuple[Escalation, ...]
    checks: tuple[CompiledCheck, ...]
    stateful: StatefulRule | None  # None: every match alerts; else the store decides (stateful.py)
    event_sources: frozenset[str] | None  # index keys: None means any
    event_names: frozenset[str] | None
    spec: DetectorSpec
    origin: Path

    def plan(self, known: dict[str, Any] | None = None) -> Plan | None:
        """Closures for this detector, specialised to the known eventSource/eventName if given.

        None when the detector can never match events with those values.
        """
        condition = specialise(self.condition, known) if known else self.condition
        if condition is FALSE:
            return None
        escalations = []
        for escalation in self.escalations:
            when = specialise(escalation.when, known) if known else escalation.when
            if when is not FALSE:
                escalations.append((build(when), escalation.severity, escalation.reason))
        return Plan(self, build(condition), tuple(escalations))

    @property
    def predicate(self) -> Predicate:
        """The unspecialised predicate (tests and tools; the engine uses plans)."""
        return build(self.condition)


@dataclass(frozen=True, slots=True)
class Plan:
    """A detector ready to run on the events of one API call."""

    detector: Detector
    predicate: Predicate
    escalations: tuple[tuple[Predicate, Severity, str], ...]

    def severity_for(self, event: Event) -> tuple[Severity, str | None]:
        for when, severity, reason in self.escalations:
            if when(event):
                return severity, reason
        return self.detector.severity, None


SHARE_ABOVE_COST = 3.0


def condition_key(node: Any) -> str:
    return json.dumps(node, sort_keys=True, default=str)


def count_conditions(node: Any, counts: Counter[str]) -> None:
    """Count every sub-condition by its canonical text (YAML anchors make repeats common)."""
    if isinstance(node, dict | list):
        counts[condition_key(node)] += 1
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                count_conditions(child, counts)


def _all(children: list[Node]) -> Node:
    return children[0] if len(children) == 1 else AllOf(tuple(children))


class DetectorCompiler:
    """Compiles the detectors of one file against the named lists in force."""

    def __init__(
        self,
        lists: Mapping[str, Sequence[Any]],
        origin: Path,
        repeated: Collection[str] = frozenset(),
        list_origins: Mapping[str, Path] | None = None,
    ) -> None:
        self.lists = lists
        self.origin = origin
        # the file each list's values come from: a bad value is reported there, not in the detector
        self.list_origins = list_origins or {}
        self.repeated = repeated  # condition keys used more than once in the config: evaluated once per event
        self._checks: list[CompiledCheck] = []

    def detector(self, spec: DetectorSpec, position: int) -> Detector:
        where = f"detectors[{position}] ({spec.id})"
        self._checks = []
        condition = self.condition(spec.match, f"{where}.match")
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
            references=tuple(spec.references),
            author=spec.author,
            needs_data_events=spec.needs_data_events,
            summary=self.summary(spec.summary or DEFAULT_SUMMARY, f"{where}.summary"),
            condition=condition,
            escalations=escalations,
            checks=tuple(self._checks),
            stateful=self.stateful(spec, where),
            event_sources=self.constraint(spec.match, "eventSource"),
            event_names=self.constraint(spec.match, "eventName"),
            spec=spec,
            origin=self.origin,
        )

    def stateful(self, spec: DetectorSpec, where: str) -> StatefulRule | None:
        for position, example in enumerate(spec.examples):
            self.example(example, f"{where}.examples[{position}]")
        if spec.threshold is not None and spec.first_seen is not None:
            raise self.fail(where, "threshold and first_seen exclude each other: write two detectors")
        try:
            if spec.threshold is not None:
                return compile_threshold(spec.threshold)
            if spec.first_seen is not None:
                return compile_first_seen(spec.first_seen)
        except ValueError as exc:
            kind = "threshold" if spec.threshold is not None else "first_seen"
            raise self.fail(f"{where}.{kind}", str(exc)) from None
        return None

    def example(self, example: ExampleSpec, where: str) -> None:
        given = [name for name in ("event", "file", "steps") if getattr(example, name) is not None]
        if len(given) != 1:
            raise self.fail(where, "an example has exactly one of event, file or steps")
        if example.steps is None and example.expect is None:
            raise self.fail(where, "expect: match or no_match is required with event or file")
        if example.steps is not None and example.expect is not None:
            raise self.fail(where, "steps say what to expect after each event: no expect beside them")

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin}: {path}: {message}")

    def condition(self, node: Any, path: str) -> Node:
        """Compile a YAML condition; a costly one used in several places is evaluated once per event."""
        compiled = self._condition(node, path)
        if compiled.cost >= SHARE_ABOVE_COST and self.repeated:
            key = condition_key(node)
            if key in self.repeated:
                return with_memo(compiled, "condition:" + key)
        return compiled

    def _condition(self, node: Any, path: str) -> Node:
        if isinstance(node, list):
            if not node:
                raise self.fail(path, "an empty list of conditions")
            return _all([self.condition(child, f"{path}[{i}]") for i, child in enumerate(node)])
        if not isinstance(node, dict) or not node:
            raise self.fail(path, "a condition is a mapping of field paths, or all/any/not/check")
        parts: list[Node] = []
        for key, value in node.items():
            here = f"{path}.{key}"
            if key in ("all", "any"):
                if not isinstance(value, list) or not value:
                    raise self.fail(here, f"{key} takes a non-empty list of conditions")
                children = [self.condition(child, f"{here}[{i}]") for i, child in enumerate(value)]
                parts.append(_all(children) if key == "all" else AnyOf(tuple(children)))
            elif key == "not":
                parts.append(NotOf(self.condition(value, here)))
            elif key == "check":
                if isinstance(value, dict) and isinstance(value.get("with"), dict):
                    # `$name` in a check's arguments is a named list, as everywhere else
                    arguments = {k: self.resolve(v, f"{here}.with.{k}") for k, v in value["with"].items()}
                    value = {**value, "with": arguments}
                try:
                    compiled = compile_check(value)
                except ValueError as exc:
                    raise self.fail(here, str(exc)) from None
                self._checks.append(compiled)
                parts.append(CheckCall(compiled))
            elif isinstance(value, dict) and len(value) == 1 and next(iter(value)) in RELATIONS:
                parts.append(self.pair(str(key), value, here))
            else:
                parts.append(self.field(str(key), value, here))
        return _all(parts)

    def pair(self, path_text: str, spec: dict[str, Any], here: str) -> FieldPair:
        ((name, other),) = spec.items()
        for path, where in ((path_text, here), (other, f"{here}.{name}")):
            try:
                if not isinstance(path, str):
                    raise ValueError(f"{name} takes a field path, got {path!r}")
                split_field_path(path)
            except ValueError as exc:
                raise self.fail(where, str(exc)) from None
        heads = (path_text.split(".", 1)[0], other.split(".", 1)[0])
        cost = 2.0 + sum(LAZY_FIELD_COST for head in heads if head in LAZY_FIELDS)
        return FieldPair(path_text, other, RELATIONS[name], cost)

    def field(self, path_text: str, spec: Any, here: str) -> FieldTest:
        try:
            split_field_path(path_text)
        except ValueError as exc:
            raise self.fail(here, str(exc)) from None
        operations: list[tuple[str, Any]]
        if spec is None:
            operations = [("exists", False)]
        elif isinstance(spec, dict):
            if not spec:
                raise self.fail(here, "an empty mapping of operators")
            operations = [(str(name), argument) for name, argument in spec.items()]
        elif isinstance(spec, list) or (isinstance(spec, str) and self._is_reference(spec)):
            operations = [("in", spec)]
        else:
            operations = [("eq", spec)]
        tests = []
        for name, argument in operations:
            where = f"{here}.{name}" if isinstance(spec, dict) else here
            value = self.resolve(argument, where)
            try:
                tests.append(compile_operator(name, value))
            except ValueError as exc:
                raise self._blame_lists(name, argument, where) or self.fail(where, str(exc)) from None
        head = path_text.split(".", 1)[0]
        cost = (LAZY_FIELD_COST if head in LAZY_FIELDS else 1.0) + path_text.count(".") * 0.25
        cost += sum(OPERATOR_COST.get(name, 1.0) for name, _ in operations)
        return FieldTest(path_text, tuple(tests), cost)

    def _blame_lists(self, operator: str, argument: Any, where: str) -> ConfigError | None:
        """When an operator fails on the values of named lists, every bad entry, named in its list's file."""
        references = argument if isinstance(argument, list) else [argument]
        names = [r[1:] for r in references if isinstance(r, str) and self._is_reference(r)]
        problems: dict[Path, list[str]] = {}
        for name in names:
            for i, element in enumerate(self.lists.get(name, ())):
                try:
                    compile_operator(operator, [element])
                except ValueError as exc:
                    origin = self.list_origins.get(name, self.origin)
                    problems.setdefault(origin, []).append(f"lists.{name}[{i}]: {exc}")
        if not problems:
            return None
        origin, lines = next(iter(problems.items()))
        return ConfigError(f"{origin}: {'; '.join(lines)} (used by {self.origin.name}: {where})")

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
            if name in ALERT_PLACEHOLDERS or name in fields:
                continue
            try:
                fields[name] = field_getter(name)
            except ValueError as exc:
                raise self.fail(
                    where, f"{{{name}}}: {exc}; alert fields: {', '.join(sorted(ALERT_PLACEHOLDERS))}"
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
            # the index ignores case (see index.py), so case-insensitive literals are index keys too
            if len(spec) != 1 or next(iter(spec)) not in ("eq", "in", "ieq", "iin", "text_ieq"):
                return None
            spec = next(iter(spec.values()))
        values = self.resolve(spec, "")
        values = values if isinstance(values, list) else [values]
        if values and all(isinstance(value, str) for value in values):
            return frozenset(values)
        return None
