"""What a whole IAM policy document grants in Kinesis Video Streams, action by action.

The document is judged the way IAM judges one document (the caller's other policies, SCPs and
boundaries are out of sight):

* Allow statements grant the KVS actions their Action names (plain names or globs, any case) or
  their NotAction leaves in, on the resources their Resource can match or their NotResource leaves
  out; a statement with neither element is ``Resource: "*"``.  Resources are judged per action, in
  the event's own partition: a stream action needs a stream ARN, a channel action a channel ARN, and
  an action without resource-level permissions (ListStreams) needs ``*``.
* An explicit Deny removes an action when it is unconditional and covers every resource the action
  can act on.  A Deny under a Condition, or on some resources only, does not reliably remove it: the
  action stays granted and is named in ``deny_not_counted``.
* An Allow under a Condition still grants (under that condition): the action is named in
  ``conditional_actions``.
* Documents larger than IAM could ever accept (raw > 1 MiB or compact JSON > 20 KiB; IAM caps
  policies at 10,240 non-blank characters) are rejected as ``None``; nothing here raises on bad input.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from kvs_sentinel.iam_actions import (
    KVS_PREFIX,
    kvs_action_database_version,
    kvs_action_resource_types,
    kvs_actions,
    matching_kvs_actions,
)
from kvs_sentinel.iam_patterns import glob_match, may_match_arn

__all__ = [
    "DEFAULT_SCOPE",
    "KvsGrant",
    "Scope",
    "decode_policy_document",
    "document_statements",
    "kvs_action_database_version",
    "kvs_actions",
    "kvs_grant",
    "kvs_grant_of_statements",
    "kvs_wildcard_grant",
    "named_actions",
    "statement_elements",
]

MAX_RAW_CHARS = 1 << 20
MAX_COMPACT_CHARS = 20 * 1024
_MAX_DECODE_LAYERS = 3

_PROBE_REGIONS = {
    "aws": ("us-east-1", "eu-west-1", "ap-southeast-2"),
    "aws-cn": ("cn-north-1", "cn-northwest-1"),
    "aws-us-gov": ("us-gov-west-1", "us-gov-east-1"),
}
_PROBE_NAMES = ("probe/1700000000000", "Cam-01_a.b/1")


@dataclass(frozen=True)
class Scope:
    """Where a document is judged: the partition (and, if known, account and region) of the event."""

    partition: str = "aws"
    account: str | None = None
    region: str | None = None


DEFAULT_SCOPE = Scope()


@dataclass(frozen=True)
class KvsGrant:
    actions: tuple[str, ...]  # sorted KVS actions the document grants, e.g. "kinesisvideo:GetMedia"
    granted_by: Mapping[str, tuple[str, ...]]  # action → the Action entries (or "NotAction ...") granting it
    conditional_actions: tuple[str, ...]  # granted only by statements with a Condition
    wildcard_actions: tuple[str, ...]  # reached through a wildcard or NotAction
    denied_actions: tuple[str, ...] = ()  # allowed, then removed by an explicit Deny
    deny_not_counted: tuple[str, ...] = ()  # named by a conditional or partial Deny: still granted
    partition: str = "aws"
    patterns: tuple[str, ...] = ()  # wildcard entries that grant, as written

    @property
    def full_wildcard(self) -> bool:
        """The grants together cover every KVS action."""
        return len(self.actions) == len(kvs_actions())

    @property
    def conditional(self) -> bool:
        """Every granted action is granted only under a Condition."""
        return len(self.conditional_actions) == len(self.actions)

    def restricted_to(self, actions: frozenset[str] | set[str]) -> KvsGrant | None:
        """The same grant seen through a subset of actions; None when nothing is left."""
        kept = tuple(a for a in self.actions if a in actions)
        if not kept:
            return None
        keep = set(kept)
        granted_by = {a: self.granted_by[a] for a in kept}
        return KvsGrant(
            actions=kept,
            granted_by=granted_by,
            conditional_actions=tuple(a for a in self.conditional_actions if a in keep),
            wildcard_actions=tuple(a for a in self.wildcard_actions if a in keep),
            denied_actions=self.denied_actions,
            deny_not_counted=tuple(a for a in self.deny_not_counted if a in keep),
            partition=self.partition,
            patterns=_wildcard_entries(granted_by),
        )


# --------------------------------------------------------------------------- documents


def _decodings(text: str) -> Iterator[str]:
    """The text as is, then URL-decoded, then with '+' as space: each computed only if still needed."""
    yield text
    if "%" in text or "+" in text:
        unquoted = unquote(text)
        if unquoted != text:
            yield unquoted
        plus = unquote_plus(text)
        if plus != unquoted:
            yield plus


def _json_object(text: str, layers: int) -> dict[str, object] | None:
    stripped = text.strip().lstrip("\ufeff")
    for candidate in _decodings(stripped):
        try:
            parsed: object = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(parsed, str) and layers < _MAX_DECODE_LAYERS:
            return _json_object(parsed, layers + 1)
        if isinstance(parsed, dict):
            return {k: v for k, v in parsed.items() if isinstance(k, str)}
        return None
    return None


def decode_policy_document(value: object) -> dict[str, object] | None:
    """URL-encoded JSON string, plain JSON string, bytes or mapping → dict; else None."""
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if isinstance(k, str)}
    if isinstance(value, bytes | bytearray):
        if len(value) > MAX_RAW_CHARS:
            return None
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or len(value) > MAX_RAW_CHARS:
        return None
    return _json_object(value, 0)


def _compact_size(document: object) -> int | None:
    try:
        return len(json.dumps(document, separators=(",", ":"), default=repr))
    except (ValueError, TypeError, RecursionError):
        return None


def statement_elements(stmt: Mapping[object, object]) -> dict[str, list[object]]:
    """Element name (case-folded) → values of every key spelling of it."""
    out: dict[str, list[object]] = {}
    for key, value in stmt.items():
        if isinstance(key, str):
            out.setdefault(key.casefold(), []).append(value)
    return out


def _strings(values: list[object]) -> list[str]:
    out: list[str] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        out.extend(item for item in items if isinstance(item, str))
    return out


def document_statements(document: Mapping[str, object]) -> Iterator[Mapping[object, object]]:
    for key, value in document.items():
        if key.casefold() != "statement":
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping):
                yield item


# --------------------------------------------------------------------------- resources


@functools.lru_cache(maxsize=256)
def _probes(resource_type: str, scope: Scope) -> tuple[str, ...]:
    """ARNs standing for "every <resource_type> of the account": a pattern covers all of them or not."""
    regions = _PROBE_REGIONS.get(scope.partition, ("region-1",))
    if scope.region and scope.region not in regions:
        regions = (scope.region, *regions)
    account = scope.account or "123456789012"
    return tuple(
        f"arn:{scope.partition}:{KVS_PREFIX}:{region}:{account}:{resource_type}/{name}"
        for region in regions
        for name in _PROBE_NAMES
    )


def _may_touch(pattern: str, types: tuple[str, ...], scope: Scope) -> bool:
    """Can the pattern name some resource the action acts on?"""
    if not types:
        return glob_match(pattern, "*")
    return any(may_match_arn(pattern, scope.partition, KVS_PREFIX, t) for t in types)


def _covers_type(pattern: str, resource_type: str | None, scope: Scope) -> bool:
    if resource_type is None:
        return glob_match(pattern, "*")
    return all(glob_match(pattern, probe) for probe in _probes(resource_type, scope))


def _resource_elements(el: dict[str, list[object]]) -> tuple[list[str] | None, list[str] | None]:
    if "resource" in el:
        return _strings(el["resource"]), None
    if "notresource" in el:
        return None, _strings(el["notresource"])
    return None, None


def _applies_somewhere(el: dict[str, list[object]], types: tuple[str, ...], scope: Scope) -> bool:
    """Does the statement reach at least one resource the action acts on?"""
    resource, not_resource = _resource_elements(el)
    if resource is not None:
        return any(_may_touch(p, types, scope) for p in resource)
    if not_resource is not None:
        kinds: tuple[str | None, ...] = types or (None,)
        return any(not any(_covers_type(p, t, scope) for p in not_resource) for t in kinds)
    return True


def _applies_everywhere(el: dict[str, list[object]], types: tuple[str, ...], scope: Scope) -> bool:
    """Does the statement reach every resource the action acts on?"""
    resource, not_resource = _resource_elements(el)
    kinds: tuple[str | None, ...] = types or (None,)
    if resource is not None:
        return all(any(_covers_type(p, t, scope) for p in resource) for t in kinds)
    if not_resource is not None:
        return not any(_may_touch(p, types, scope) for p in not_resource)
    return True


# --------------------------------------------------------------------------- statements


def named_actions(el: dict[str, list[object]]) -> dict[str, list[str]]:
    """KVS action → the entries that name it ("NotAction a, b" for what a NotAction leaves in)."""
    named: dict[str, list[str]] = {}
    for pattern in _strings(el.get("action", [])):
        for action in matching_kvs_actions(pattern):
            named.setdefault(action, []).append(pattern)
    if "notaction" in el:
        excluded = _strings(el["notaction"])
        left = set(kvs_actions())
        for pattern in excluded:
            left -= matching_kvs_actions(pattern)
        entry = "NotAction " + ", ".join(excluded)
        for action in sorted(left):
            named.setdefault(action, []).append(entry)
    return named


def _is_wildcard(entry: str) -> bool:
    return entry.startswith("NotAction ") or "*" in entry or "?" in entry


def _is_conditional(el: dict[str, list[object]]) -> bool:
    return any(isinstance(v, Mapping) and v for v in el.get("condition", []))


def _effect(el: dict[str, list[object]]) -> str | None:
    effects = {e.strip().casefold() for e in _strings(el.get("effect", []))}
    if "deny" in effects:
        return "deny"
    return "allow" if "allow" in effects else None


def _wildcard_entries(granted_by: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    entries = (e for action in sorted(granted_by) for e in granted_by[action] if _is_wildcard(e))
    return tuple(dict.fromkeys(entries))


def kvs_grant_of_statements(
    statements: list[Mapping[object, object]], scope: Scope = DEFAULT_SCOPE
) -> KvsGrant | None:
    """What these statements grant together; None when no KVS action is left granted."""
    types = kvs_action_resource_types()
    granted_by: dict[str, list[str]] = {}
    unconditional: set[str] = set()
    denied: set[str] = set()
    deny_partial: set[str] = set()
    for stmt in statements:
        el = statement_elements(stmt)
        effect = _effect(el)
        if effect is None:
            continue
        conditional = _is_conditional(el)
        for action, entries in named_actions(el).items():
            if not _applies_somewhere(el, types[action], scope):
                continue
            if effect == "allow":
                granted_by.setdefault(action, []).extend(entries)
                if not conditional:
                    unconditional.add(action)
            elif conditional or not _applies_everywhere(el, types[action], scope):
                deny_partial.add(action)
            else:
                denied.add(action)
    effective = sorted(set(granted_by) - denied)
    if not effective:
        return None
    by_action = {a: tuple(dict.fromkeys(granted_by[a])) for a in effective}
    return KvsGrant(
        actions=tuple(effective),
        granted_by=by_action,
        conditional_actions=tuple(a for a in effective if a not in unconditional),
        wildcard_actions=tuple(a for a in effective if any(map(_is_wildcard, by_action[a]))),
        denied_actions=tuple(sorted(denied & set(granted_by))),
        deny_not_counted=tuple(a for a in effective if a in deny_partial),
        partition=scope.partition,
        patterns=_wildcard_entries(by_action),
    )


def kvs_grant(document: object, scope: Scope = DEFAULT_SCOPE) -> KvsGrant | None:
    """What a raw ``requestParameters.policyDocument`` value grants in KVS, or None."""
    if isinstance(document, str) and len(document) <= _CACHED_DOCUMENT_CHARS:
        return _kvs_grant_of_text(document, scope)
    return _kvs_grant(document, scope)


# Infrastructure as code puts the same document on many roles; the judgement is pure, so small ones are kept.
_CACHED_DOCUMENT_CHARS = 8192


@functools.lru_cache(maxsize=512)
def _kvs_grant_of_text(document: str, scope: Scope) -> KvsGrant | None:
    return _kvs_grant(document, scope)


def _kvs_grant(document: object, scope: Scope) -> KvsGrant | None:
    decoded = decode_policy_document(document)
    if decoded is None:
        return None
    size = _compact_size(decoded)
    if size is None or size > MAX_COMPACT_CHARS:
        return None
    return kvs_grant_of_statements(list(document_statements(decoded)), scope)


def kvs_wildcard_grant(document: object, scope: Scope = DEFAULT_SCOPE) -> KvsGrant | None:
    """The part of the document's grant reached through wildcards or NotAction, or None."""
    grant = kvs_grant(document, scope)
    return None if grant is None else grant.restricted_to(set(grant.wildcard_actions))
