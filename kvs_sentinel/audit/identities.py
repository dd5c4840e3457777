"""Identity checks: what each user and role can do in Kinesis Video Streams, judged by the detectors' own
policy analysis (iam_policy.py) over every policy it holds together, within its permissions boundary."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kvs_sentinel.alerts import Alert
from kvs_sentinel.audit.account import AccountState, HeldPolicy, Identity
from kvs_sentinel.audit.findings import finding
from kvs_sentinel.iam_patterns import glob_match
from kvs_sentinel.iam_policy import KvsGrant, Scope, kvs_grant_of_statements

KVS = "kinesisvideo:"


@dataclass(frozen=True)
class Effective:
    """The KVS actions an identity can use, and which of its policies grant each."""

    actions: tuple[str, ...]
    granted_by: Mapping[str, tuple[str, ...]]
    wildcard_policies: tuple[str, ...]


def effective_kvs_actions(identity: Identity, scope: Scope) -> Effective:
    statements = [stmt for policy in identity.policies for stmt in policy.statements]
    together = kvs_grant_of_statements(statements, scope)  # Deny in one policy removes another's Allow
    if together is None:
        return Effective((), {}, ())
    actions = set(together.actions)
    if identity.boundary is not None:
        bounded = kvs_grant_of_statements(list(identity.boundary.statements), scope)
        actions &= set(bounded.actions) if bounded is not None else set()
    granted_by: dict[str, list[str]] = {}
    wildcard: list[str] = []
    for policy in identity.policies:
        alone = _grant(policy, scope)
        if alone is None:
            continue
        for action in alone.actions:
            if action in actions:
                granted_by.setdefault(action, []).append(policy.name)
        if alone.wildcard_actions:
            wildcard.append(policy.name)
    kept = tuple(sorted(actions))
    return Effective(kept, {a: tuple(granted_by.get(a, ())) for a in kept}, tuple(wildcard))


def _grant(policy: HeldPolicy, scope: Scope) -> KvsGrant | None:
    return kvs_grant_of_statements(list(policy.statements), scope)


def identity_findings(
    state: AccountState, lists: Mapping[str, Sequence[object]], now: datetime | None = None
) -> Iterator[Alert]:
    now = now or datetime.now(UTC)
    scope = Scope(state.partition, state.account)
    producers = [str(p) for p in lists.get("producer_principals", ())]
    allowed = {KVS + str(api) for api in lists.get("producer_allowed_apis", ())}
    media_reads = {KVS + str(api) for api in lists.get("kvs_media_read_apis", ())}
    media_reads |= {KVS + str(api) for api in lists.get("kvs_signaling_viewer_apis", ())}
    wildcard_holders: dict[str, list[Identity]] = {}
    for identity in state.identities:
        effective = effective_kvs_actions(identity, scope)
        if not effective.actions:
            continue
        if any(glob_match(pattern, identity.arn) for pattern in producers):
            yield from _producer_excess(state, identity, effective, allowed, media_reads, now)
        if identity.kind == "user":
            yield from _long_term_keys(state, identity, effective, now)
        for policy in effective.wildcard_policies:
            wildcard_holders.setdefault(policy, []).append(identity)
    for policy, holders in wildcard_holders.items():
        yield _wildcard(state, policy, holders, now)


def _producer_excess(
    state: AccountState,
    identity: Identity,
    effective: Effective,
    allowed: set[str],
    media_reads: set[str],
    now: datetime,
) -> Iterator[Alert]:
    excess = [action for action in effective.actions if action not in allowed]
    if not excess:
        return
    reads = [action for action in excess if action in media_reads]
    yield finding(
        "kvs-audit-producer-excess-grant",
        "critical" if reads else "high",
        "Producer can use Kinesis Video Streams actions beyond its job"
        + (" (it can read video)" if reads else ""),
        f"{identity.kind} {identity.name} is a producer and can use {len(excess)} kinesisvideo action(s) "
        f"outside producer_allowed_apis: {', '.join(a.removeprefix(KVS) for a in excess)}",
        practice="least-privilege",
        resource=identity.arn,
        account=state.account,
        principal=identity.arn,
        principal_type="IAMUser" if identity.kind == "user" else "Role",
        remediation=(
            "Remove these actions from the policies named in details.granted_by; a producer needs only "
            "PutMedia, GetDataEndpoint and DescribeStream (`kvs-sentinel audit --suggest-policy` prints one)."
        ),
        details={
            "excess_actions": excess,
            "media_reads": reads,
            "granted_by": {action: list(effective.granted_by[action]) for action in excess},
            "bounded_by": identity.boundary.name if identity.boundary else None,
        },
        now=now,
    )


def _long_term_keys(
    state: AccountState, identity: Identity, effective: Effective, now: datetime
) -> Iterator[Alert]:
    for key in identity.access_keys:
        if not key.active:
            continue
        age = (now - key.created).days if key.created else None
        used = key.last_used.strftime("%Y-%m-%d") if key.last_used else "never"
        days = "?" if age is None else str(age)
        yield finding(
            "kvs-audit-user-access-key",
            "high",
            "IAM user with a long-term access key can use Kinesis Video Streams",
            f"user {identity.name} has active access key {key.id} ({days} days old, "
            f"last used {used}) and can use {len(effective.actions)} kinesisvideo action(s)",
            practice="iam-roles",
            resource=identity.arn,
            account=state.account,
            principal=identity.arn,
            principal_type="IAMUser",
            access_key_id=key.id,
            remediation=(
                "Give the device or service an IAM role (IAM Roles Anywhere, the credentials provider of "
                "AWS IoT, an ECS task role) and deactivate, then delete, the access key."
            ),
            details={
                "age_days": age,
                "last_used": key.last_used.isoformat() if key.last_used else None,
                "actions": list(effective.actions),
            },
            now=now,
        )


def _wildcard(state: AccountState, policy: str, holders: list[Identity], now: datetime) -> Alert:
    names = ", ".join(f"{holder.kind} {holder.name}" for holder in holders[:5])
    more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
    return finding(
        "kvs-audit-wildcard-grant",
        "high",
        "Policy grants Kinesis Video Streams actions through a wildcard",
        f"{policy} grants kinesisvideo actions through a wildcard or NotAction, held by {names}{more}",
        practice="least-privilege",
        resource=policy if policy.startswith("arn:") else holders[0].arn,
        account=state.account,
        remediation="Name the actions the holders need instead of kinesisvideo:* or *.",
        details={"policy": policy, "held_by": [holder.arn for holder in holders]},
        now=now,
    )


def root_findings(state: AccountState, now: datetime | None = None) -> Iterator[Alert]:
    root = f"arn:{state.partition}:iam::{state.account}:root"
    if state.root_access_keys:
        yield finding(
            "kvs-audit-root-access-key",
            "critical",
            "The root user has an access key",
            f"account {state.account}: the root user has {state.root_access_keys} access key(s)",
            practice="iam-roles",
            resource=root,
            account=state.account,
            principal=root,
            principal_type="Root",
            remediation="Delete the root user's access keys; use IAM roles for every workload.",
            now=now,
        )
    if not state.root_mfa:
        yield finding(
            "kvs-audit-root-no-mfa",
            "high",
            "The root user has no MFA",
            f"account {state.account}: the root user signs in without MFA",
            practice="iam-roles",
            resource=root,
            account=state.account,
            principal=root,
            principal_type="Root",
            remediation="Enable MFA for the root user (a hardware key or passkey).",
            now=now,
        )
