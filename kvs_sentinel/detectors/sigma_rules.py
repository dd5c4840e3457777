"""Sigma rules as detector specs: pySigma parses, this module translates to the detector language.

A Sigma rule becomes an ordinary DetectorSpec whose `match` is written in the YAML packs' own language,
so the compiler, the eventSource/eventName index and the generated code are the same for both. Sigma's
semantics are kept: strings match case-insensitively (`|cased` opts out) as text, so `'true'` matches a
JSON boolean and `|contains` on an object searches all of it; `*` and `?` are wildcards; `null` is absent.
Field names are CloudTrail's own, as in SigmaHQ's rules; `status: success|failure` means errorCode is
absent or present. Anything we cannot run is a load error naming the rule file and the construct.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.modifiers import reverse_modifier_mapping
from sigma.policy.profiles import TrustedPolicy
from sigma.rule import SigmaDetectionItem, SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from kvs_sentinel.detectors.operators import compile_operator
from kvs_sentinel.detectors.spec import DetectorSpec
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import split_field_path
from kvs_sentinel.severity import SeverityName

RULE_SUFFIXES = (".yml", ".yaml")
LEVELS: dict[str, SeverityName] = {
    "informational": "info",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}
_COMPARISONS = {
    CompareOperators.GT: "gt",
    CompareOperators.GTE: "gte",
    CompareOperators.LT: "lt",
    CompareOperators.LTE: "lte",
}
# Operators that take a list meaning "any of these": alternatives on one field merge into one test.
_MERGEABLE = frozenset(
    {"text_eq", "text_ieq", "text_icontains", "text_contains", "text_iprefix", "text_prefix"}
    | {"text_isuffix", "text_suffix", "text_regex", "cidr"}
)
_REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_FLAG_LETTERS = {"IGNORECASE": "i", "MULTILINE": "m", "DOTALL": "s"}


def rule_files(path: Path) -> list[Path]:
    """The Sigma rule files of `path`: the file itself, or every *.yml/*.yaml below a folder, sorted."""
    if path.is_file():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
    if not found:
        raise ConfigError(f"{path}: no Sigma rules (*.yml, *.yaml) in this folder")
    return found


def load_sigma_rules(path: Path) -> Iterator[tuple[Path, list[DetectorSpec]]]:
    """(rule file, its detectors) for each rule file of `path`; ConfigError names the file and construct."""
    for file in rule_files(path):
        yield file, translate_file(file)


def translate_file(file: Path) -> list[DetectorSpec]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read this Sigma rule: {exc}") from None
    try:
        # pySigma only checks regexes with Python's engine here (its RE2 check would log to stderr);
        # ours are compiled for RE2 by `checked`, whose error names the construct
        collection = SigmaCollection.from_yaml(text, policy=TrustedPolicy)
    except SigmaError as exc:
        raise ConfigError(f"{file}: not a valid Sigma rule: {_one_line(exc)}") from None
    specs = []
    for rule in collection.rules:
        if not isinstance(rule, SigmaRule):
            kind = type(rule).__name__.removeprefix("Sigma")
            raise ConfigError(f"{file}: a Sigma {kind}: only detection rules are supported")
        specs.append(RuleTranslator(file, rule).spec())
    return specs


def _slug(stem: str) -> str:
    """A detector id from a rule file's name, for a rule without an id."""
    return re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-")[:70] or "rule"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class RuleTranslator:
    """One Sigma rule → one DetectorSpec."""

    def __init__(self, file: Path, rule: SigmaRule) -> None:
        self.file = file
        self.rule = rule

    def fail(self, construct: str, why: str) -> ConfigError:
        return ConfigError(f"{self.file}: {construct}: {why}")

    def spec(self) -> DetectorSpec:
        rule = self.rule
        self._check_logsource()
        try:
            conditions = [condition.parse() for condition in rule.detection.parsed_condition]
        except SigmaError as exc:
            raise self.fail("detection.condition", _one_line(exc)) from None
        parts = [self.node(condition) for condition in conditions]
        match = parts[0] if len(parts) == 1 else {"any": parts}
        level = str(rule.level.name).lower() if rule.level is not None else "medium"
        title = rule.title.strip()
        description = " ".join((rule.description or "").split()) or f"Sigma rule: {title}"
        falsepositives = "; ".join(str(fp) for fp in rule.falsepositives or [])
        remediation = "Confirm the activity was expected and authorised; the references say more."
        if falsepositives:
            remediation += f" Known false positives: {falsepositives}."
        try:
            return DetectorSpec(
                id=str(rule.id) if rule.id is not None else "sigma." + _slug(self.file.stem),
                title=title if len(title) <= 120 else title[:119] + "…",
                severity=LEVELS.get(level, "medium"),
                description=description if len(description) >= 10 else f"Sigma rule: {description}",
                remediation=remediation,
                tags=["sigma", *(str(tag) for tag in rule.tags)],
                references=[str(reference) for reference in rule.references],
                author=rule.author,
                match=match,
            )
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise self.fail("rule", problems) from None

    def _check_logsource(self) -> None:
        source = self.rule.logsource
        if (source.product or "aws") != "aws" or (source.service or "cloudtrail") != "cloudtrail":
            raise self.fail(
                f"logsource (product: {source.product}, service: {source.service})",
                "only AWS CloudTrail rules (product: aws, service: cloudtrail) can run on CloudTrail events",
            )

    # ------------------------------------------------------------------ the condition tree
    def node(self, node: Any) -> Any:
        if isinstance(node, ConditionAND):
            children = [self.node(child) for child in node.args]
            flat = [grand for child in children for grand in _unwrap(child, "all")]
            return flat[0] if len(flat) == 1 else {"all": flat}
        if isinstance(node, ConditionOR):
            children = [self.node(child) for child in node.args]
            merged = _merge_alternatives([grand for child in children for grand in _unwrap(child, "any")])
            return merged[0] if len(merged) == 1 else {"any": merged}
        if isinstance(node, ConditionNOT):
            return {"not": self.node(node.args[0])}
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.field_test(node)
        if isinstance(node, ConditionValueExpression):
            raise self.fail(
                self.where(node), f"keyword search ({node.value}) is not supported: name the field"
            )
        raise self.fail("detection.condition", f"{type(node).__name__} is not supported")

    def where(self, node: Any) -> str:
        """`detection.NAME: field|modifiers`, for error messages."""
        item: Any = node
        while item is not None and not isinstance(item, SigmaDetectionItem):
            item = getattr(item, "parent", None)
        if item is None:
            return "detection"
        modifiers = "".join(
            "|" + reverse_modifier_mapping.get(m.__name__, m.__name__) for m in item.modifiers
        )
        text = f"{item.field or '(keywords)'}{modifiers}"
        holder: Any = item
        while holder is not None and not hasattr(holder, "identifier"):
            holder = getattr(holder, "parent", None)
        return f"detection.{holder.identifier}: {text}" if holder is not None else f"detection: {text}"

    def field_test(self, node: ConditionFieldEqualsValueExpression) -> Any:
        where = self.where(node)
        if node.field == "status":
            return self.status(node.value, where)
        field = self.field_name(node.field, where)
        return self.value_test(field, node.value, where)

    def field_name(self, name: str, where: str) -> str:
        try:
            split_field_path(name)
        except ValueError as exc:
            raise self.fail(where, f"{exc} (Sigma rules here use CloudTrail's own field names)") from None
        return name

    def status(self, value: Any, where: str) -> Any:
        """`status: success` (failure): the call succeeded (failed), which CloudTrail says by errorCode."""
        plain = (
            value.to_plain().lower()
            if isinstance(value, SigmaString) and not value.contains_special()
            else None
        )
        if plain == "success":
            return {"errorCode": None}
        if plain == "failure":
            return {"errorCode": {"exists": True}}
        raise self.fail(where, "status takes success or failure (CloudTrail records no status field)")

    def value_test(self, field: str, value: Any, where: str) -> Any:
        if isinstance(value, SigmaNull):
            return {field: None}
        if isinstance(value, SigmaExists):
            return {field: {"exists": bool(value.exists)}}
        if isinstance(value, SigmaFieldReference):
            if value.starts_with or value.ends_with:
                raise self.fail(where, "fieldref with startswith or endswith is not supported")
            return {field: {"ieq_field": self.field_name(value.field, where)}}
        if isinstance(value, SigmaString):
            return self.string_test(field, value, where, cased=isinstance(value, SigmaCasedString))
        if isinstance(value, SigmaBool):
            return {field: {"text_ieq": "true" if value.boolean else "false"}}
        if isinstance(value, SigmaTimestampPart):
            raise self.fail(where, "time-part modifiers (minute, hour, day...) are not supported")
        if isinstance(value, SigmaNumber):
            return {"any": [{field: {"eq": value.number}}, {field: {"text_ieq": json.dumps(value.number)}}]}
        if isinstance(value, SigmaRegularExpression):
            flags = "".join(sorted(_FLAG_LETTERS[flag.name] for flag in value.flags))
            pattern = (f"(?{flags})" if flags else "") + str(value.regexp.original)
            return self.checked(field, "text_regex", pattern, where)
        if isinstance(value, SigmaCIDRExpression):
            return {field: {"cidr": str(value.network)}}
        if isinstance(value, SigmaCompareExpression):
            if value.op is CompareOperators.NEQ:
                return {"not": self.value_test(field, value.number, where)}
            return {field: {_COMPARISONS[value.op]: value.number.number}}
        if isinstance(value, SigmaExpansion):
            return {"any": [self.value_test(field, item, where) for item in value.values]}
        raise self.fail(where, f"a {type(value).__name__.removeprefix('Sigma')} value is not supported")

    def string_test(self, field: str, value: SigmaString, where: str, *, cased: bool) -> Any:
        """Plain, prefix, suffix and contains become text operators; other wildcards an anchored RE2 regex."""
        if value.contains_placeholder():
            raise self.fail(where, "placeholders (%name%, the expand modifier) are not supported")
        prefix = "text_" if cased else "text_i"
        parts = list(value.s)
        if not value.contains_special():
            return {field: {prefix + "eq": _literal(_plain(value))}}
        leading = parts[0] is SpecialChars.WILDCARD_MULTI
        trailing = parts[-1] is SpecialChars.WILDCARD_MULTI
        middle = parts[int(leading) : len(parts) - int(trailing)]
        if len(middle) == 1 and isinstance(middle[0], str):
            operator = "contains" if leading and trailing else "suffix" if leading else "prefix"
            return {field: {prefix + operator: _literal(middle[0])}}
        pattern = "".join(_regex_piece(part) for part in parts)
        flags = "(?s)" if cased else "(?is)"
        return self.checked(field, "text_regex", f"{flags}^(?:{pattern})$", where)

    def checked(self, field: str, operator: str, argument: str, where: str) -> Any:
        try:
            compile_operator(operator, argument)
        except ValueError as exc:
            note = "(regular expressions run on RE2: no lookaround, no backreferences)"
            raise self.fail(where, f"{exc} {note}") from None
        return {field: {operator: _literal(argument)}}


def _plain(value: SigmaString) -> str:
    """The text of a string without wildcards (`to_plain` would escape `*` and `?` again)."""
    return "".join(str(part) for part in value.s)


def _literal(text: str) -> str:
    """A string as the detector language reads it literally: a leading `$` would name a list."""
    return "$" + text if text.startswith("$") else text


def _regex_piece(part: Any) -> str:
    if part is SpecialChars.WILDCARD_MULTI:
        return ".*"
    if part is SpecialChars.WILDCARD_SINGLE:
        return "."
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in str(part))


def _unwrap(node: Any, key: str) -> list[Any]:
    """The children of an `all`/`any` node of that kind, to flatten nesting; the node itself otherwise."""
    if isinstance(node, dict) and len(node) == 1 and key in node:
        return list(node[key])
    return [node]


def _merge_alternatives(children: list[Any]) -> list[Any]:
    """`{f: {op: a}}, {f: {op: b}}` → `{f: {op: [a, b]}}` for operators whose list means any."""
    merged: list[Any] = []
    slots: dict[tuple[str, str], list[Any]] = {}
    for child in children:
        if isinstance(child, dict) and len(child) == 1:
            ((field, test),) = child.items()
            if isinstance(test, dict) and len(test) == 1 and next(iter(test)) in _MERGEABLE:
                ((operator, argument),) = test.items()
                values = slots.get((field, operator))
                if values is None:
                    values = slots[field, operator] = []
                    merged.append({field: {operator: values}})
                values.extend(argument if isinstance(argument, list) else [argument])
                continue
        merged.append(child)
    return merged
