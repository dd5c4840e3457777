"""What the audit read from one account, as plain data: collect.py fills it, the checks judge it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kvs_sentinel.iam_policy import decode_policy_document, document_statements
from kvs_sentinel.managed_policies import managed_policy

Statement = Mapping[object, object]


@dataclass(frozen=True)
class HeldPolicy:
    """One policy an identity holds: an inline policy by name, or a managed policy by ARN."""

    name: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class AccessKey:
    id: str
    active: bool
    created: datetime | None
    last_used: datetime | None = None


@dataclass(frozen=True)
class Identity:
    kind: str  # "user" or "role"
    name: str
    arn: str
    policies: tuple[HeldPolicy, ...]
    boundary: HeldPolicy | None = None
    access_keys: tuple[AccessKey, ...] = ()


@dataclass(frozen=True)
class Trail:
    name: str
    arn: str
    home_region: str
    logging: bool
    multi_region: bool
    log_file_validation: bool
    records_reads: bool
    records_writes: bool
    records_kvs_data: bool


@dataclass(frozen=True)
class Rule:
    name: str
    state: str
    target_arns: tuple[str, ...]


@dataclass(frozen=True)
class Queue:
    url: str
    arn: str
    has_dead_letter_queue: bool


@dataclass
class AccountState:
    account: str
    region: str
    partition: str = "aws"
    identities: list[Identity] = field(default_factory=list)
    root_access_keys: int = 0
    root_mfa: bool = True
    trails: list[Trail] = field(default_factory=list)
    queues: list[Queue] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)


def identities_from_details(pages: Iterable[Mapping[str, Any]]) -> list[Identity]:
    """Users (with their groups' policies) and roles from GetAccountAuthorizationDetails pages."""
    users: list[Mapping[str, Any]] = []
    roles: list[Mapping[str, Any]] = []
    groups: dict[str, Mapping[str, Any]] = {}
    documents: dict[str, object] = {}
    for page in pages:
        users.extend(page.get("UserDetailList", ()))
        roles.extend(page.get("RoleDetailList", ()))
        groups.update({group["GroupName"]: group for group in page.get("GroupDetailList", ())})
        for policy in page.get("Policies", ()):
            default = next(
                (v for v in policy.get("PolicyVersionList", ()) if v.get("IsDefaultVersion")), None
            )
            if default is not None:
                documents[policy["Arn"]] = default.get("Document")

    def attached(entity: Mapping[str, Any]) -> list[HeldPolicy]:
        return [_managed(item["PolicyArn"], documents) for item in entity.get("AttachedManagedPolicies", ())]

    def inline(entity: Mapping[str, Any], key: str, owner: str) -> list[HeldPolicy]:
        return [
            HeldPolicy(f"inline {item['PolicyName']} on {owner}", _statements(item.get("PolicyDocument")))
            for item in entity.get(key, ())
        ]

    def boundary(entity: Mapping[str, Any]) -> HeldPolicy | None:
        arn = (entity.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        return _managed(arn, documents) if arn else None

    identities = []
    for user in users:
        held = inline(user, "UserPolicyList", f"user {user['UserName']}") + attached(user)
        for group_name in user.get("GroupList", ()):
            group = groups.get(group_name, {})
            held += inline(group, "GroupPolicyList", f"group {group_name}") + attached(group)
        identities.append(Identity("user", user["UserName"], user["Arn"], tuple(held), boundary(user)))
    for role in roles:
        held = inline(role, "RolePolicyList", f"role {role['RoleName']}") + attached(role)
        identities.append(Identity("role", role["RoleName"], role["Arn"], tuple(held), boundary(role)))
    return identities


def _managed(arn: str, documents: Mapping[str, object]) -> HeldPolicy:
    if arn in documents:
        return HeldPolicy(arn, _statements(documents[arn]))
    known = managed_policy(arn)  # an AWS managed policy the response left out: the shipped snapshot
    return HeldPolicy(arn, known.statements if known is not None else ())


def _statements(document: object) -> tuple[Statement, ...]:
    decoded = decode_policy_document(document) if not isinstance(document, dict) else document
    return tuple(document_statements(decoded)) if decoded is not None else ()
