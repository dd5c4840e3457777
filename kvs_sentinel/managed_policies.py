"""What an AWS managed policy grants in KVS, from a snapshot shipped in the package.

The snapshot (``data/aws_managed_policies.json``) lists every AWS managed policy by name with the
statements of its default version that name a kinesisvideo action; ``scripts/refresh_managed_policies.py``
regenerates it from github.com/iann0036/iam-dataset (MIT).  Names are unique across paths, so an ARN
is looked up by its last segment in any partition.  A policy missing from the snapshot is unknown
(``None`` from :func:`managed_policy`); customer managed policies are never in it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvs_sentinel.iam_actions import matching_kvs_actions
from kvs_sentinel.iam_policy import (
    DEFAULT_SCOPE,
    KvsGrant,
    Scope,
    document_statements,
    kvs_grant_of_statements,
    named_actions,
    statement_elements,
)

__all__ = ["SNAPSHOT_PATH", "ManagedPolicy", "kvs_statements", "managed_policy", "managed_policy_kvs_grant"]

SNAPSHOT_PATH = Path(__file__).parent / "data" / "aws_managed_policies.json"

_AWS_MANAGED_ARN = re.compile(
    r"arn:aws(?:-[a-z]+(?:-[a-z]+)?)?:iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,128})"
)


@dataclass(frozen=True)
class ManagedPolicy:
    name: str
    arn: str
    version: str | None
    statements: tuple[Mapping[object, object], ...]  # only those naming a kinesisvideo action


def kvs_statements(document: Mapping[str, object]) -> list[Mapping[object, object]]:
    """The statements of a policy document that name a kinesisvideo action, Action lists cut to the
    entries that match one (NotAction lists are kept whole: what they leave out is what they grant)."""
    kept: list[Mapping[object, object]] = []
    for stmt in document_statements(document):
        if not named_actions(statement_elements(stmt)):
            continue
        trimmed = dict(stmt)
        for key, value in stmt.items():
            if isinstance(key, str) and key.casefold() == "action":
                entries = value if isinstance(value, list) else [value]
                trimmed[key] = [e for e in entries if isinstance(e, str) and matching_kvs_actions(e)]
        kept.append(trimmed)
    return kept


@functools.cache
def _snapshot_file() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(SNAPSHOT_PATH.read_text(encoding="utf-8"))
    return raw


@functools.cache
def _snapshot() -> dict[str, ManagedPolicy]:
    raw = _snapshot_file()
    policies: dict[str, ManagedPolicy] = {}
    for name, entry in raw["policies"].items():
        policies[name] = ManagedPolicy(
            name=name,
            arn=entry["arn"],
            version=entry.get("version"),
            statements=tuple(entry["statements"]),
        )
    return policies


@functools.cache
def snapshot_source() -> dict[str, str]:
    raw = _snapshot_file()
    return {key: str(raw.get(key, "")) for key in ("source", "commit", "generated")}


def managed_policy(policy_arn: object) -> ManagedPolicy | None:
    """The AWS managed policy an ARN (any partition, any path) names, if the snapshot knows it."""
    if not isinstance(policy_arn, str) or len(policy_arn) > 2048:
        return None
    match = _AWS_MANAGED_ARN.fullmatch(policy_arn.strip())
    if match is None:
        return None
    return _snapshot().get(match.group(1))


def is_aws_managed(policy_arn: object) -> bool:
    return isinstance(policy_arn, str) and _AWS_MANAGED_ARN.fullmatch(policy_arn.strip()) is not None


def managed_policy_kvs_grant(policy_arn: object, scope: Scope = DEFAULT_SCOPE) -> KvsGrant | None:
    """What an AWS managed policy grants in KVS; None when it grants nothing or is unknown."""
    if not isinstance(policy_arn, str):
        return None
    return _managed_policy_kvs_grant(policy_arn, scope)


@functools.lru_cache(maxsize=1024)  # a pure function of the shipped snapshot; attaches repeat the same few
def _managed_policy_kvs_grant(policy_arn: str, scope: Scope) -> KvsGrant | None:
    policy = managed_policy(policy_arn)
    if policy is None or not policy.statements:
        return None
    return kvs_grant_of_statements(list(policy.statements), scope)
