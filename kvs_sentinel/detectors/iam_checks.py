"""Checks on IAM events that YAML can't express: what a policy document or managed policy grants in KVS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kvs_sentinel.customer_policies import active_catalog
from kvs_sentinel.detectors.checks import CheckFunction, NoArguments, check
from kvs_sentinel.events import Event
from kvs_sentinel.iam_actions import KVS_PREFIX
from kvs_sentinel.iam_policy import KvsGrant, Scope, kvs_grant, kvs_grant_of_statements
from kvs_sentinel.managed_policies import (
    is_aws_managed,
    managed_policy,
    managed_policy_kvs_grant,
    snapshot_source,
)
from kvs_sentinel.partitions import partition_of


class PolicyGrantArguments(BaseModel):
    """Which part of what the event's policy grants in KVS makes the check match."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    # policyDocument; policyArn of an AWS managed (snapshot) or customer managed (IAM, in run) policy;
    # policyArn of an AWS managed policy only; any of them
    source: Literal["any", "document", "managed", "aws_managed"] = "any"
    wildcards_only: bool = False  # only actions reached through `*`, `?` or NotAction
    outside: list[str] = []  # ignore these actions (bare names, e.g. $producer_allowed_apis)
    within: list[str] | None = None  # only these actions (e.g. $kvs_media_read_apis)


def event_scope(event: Event) -> Scope:
    """The partition, account and region the event's policy is judged in."""
    identity = event.lazy("userIdentity")
    arns: list[object] = []
    if isinstance(identity, dict):
        arns.append(identity.get("arn"))
        context = identity.get("sessionContext")
        issuer = context.get("sessionIssuer") if isinstance(context, dict) else None
        if isinstance(issuer, dict):
            arns.append(issuer.get("arn"))
    parameters = event.lazy("requestParameters")
    if isinstance(parameters, dict):
        arns.append(parameters.get("policyArn"))
    region = event.doc.awsRegion
    account = event.doc.recipientAccountId
    return Scope(
        partition=partition_of(arns, region),
        account=account if isinstance(account, str) else None,
        region=region if isinstance(region, str) else None,
    )


def _event_grant(event: Event, source: str) -> tuple[KvsGrant | None, str | None, str]:
    """(grant, the policy's name or ARN, where the statements came from), once per event and source."""
    found: tuple[KvsGrant | None, str | None, str] = event.remember(
        f"iam:policy-grant:{source}", lambda e: _judge_event_policy(e, source)
    )
    return found


def _judge_event_policy(event: Event, source: str) -> tuple[KvsGrant | None, str | None, str]:
    parameters = event.lazy("requestParameters")
    if not isinstance(parameters, dict):
        return None, None, ""
    scope = event_scope(event)
    document = parameters.get("policyDocument")
    if document is not None and source in ("any", "document"):
        name = parameters.get("policyName") or parameters.get("policyArn")
        return kvs_grant(document, scope), name if isinstance(name, str) else None, "policy document"
    arn = parameters.get("policyArn")
    if source == "document" or not isinstance(arn, str):
        return None, None, ""
    if managed_policy(arn) is not None:
        snapshot = snapshot_source()
        origin = f"AWS managed policy snapshot of {snapshot['generated']}"
        return managed_policy_kvs_grant(arn, scope), arn, origin
    catalog = active_catalog()
    if catalog is not None and source != "aws_managed" and not is_aws_managed(arn):
        policy = catalog.get(arn)  # a miss is fetched from IAM for next time
        if policy is not None:
            origin = f"IAM: default version {policy.version} of the customer managed policy"
            return kvs_grant_of_statements(list(policy.statements), scope), arn, origin
    return None, None, ""


def grant_details(grant: KvsGrant, policy: str | None, origin: str) -> Mapping[str, Any]:
    return {
        "kvs_actions": list(grant.actions),
        "granted_by": {action: list(entries) for action, entries in grant.granted_by.items()},
        "conditional_actions": list(grant.conditional_actions),
        "denied_actions": list(grant.denied_actions),
        "deny_not_counted": list(grant.deny_not_counted),
        "full_kvs_access": grant.full_wildcard,
        "conditional": grant.conditional,
        "partition": grant.partition,
        "policy": policy,
        "judged_from": origin,
    }


def _qualified(names: list[str]) -> set[str]:
    return {n if ":" in n else f"{KVS_PREFIX}:{n}" for n in names}


def policy_grant(arguments: PolicyGrantArguments) -> CheckFunction:
    """What the event's policy grants in KVS after its own Deny statements, narrowed by the arguments;
    no match when nothing is left. The policy: requestParameters.policyDocument; an AWS managed
    policyArn, from the shipped snapshot; a customer managed policyArn, from IAM when `run` looks
    them up (service.iam_policy_lookup)."""
    outside = _qualified(arguments.outside)
    within = None if arguments.within is None else _qualified(arguments.within)

    def run(event: Event) -> Mapping[str, Any] | None:
        grant, policy, origin = _event_grant(event, arguments.source)
        if grant is None:
            return None
        kept = {a for a in grant.actions if a not in outside and (within is None or a in within)}
        if arguments.wildcards_only:
            kept &= set(grant.wildcard_actions)
        narrowed = grant.restricted_to(kept)
        return None if narrowed is None else grant_details(narrowed, policy, origin)

    return run


@check("kvs_policy_grant", PolicyGrantArguments)
def kvs_policy_grant_check(arguments: PolicyGrantArguments) -> CheckFunction:
    return policy_grant(arguments)


@check("kvs_wildcard_grant", NoArguments)
def kvs_wildcard_grant_check(_: NoArguments) -> CheckFunction:
    """A policy document granting KVS actions through a wildcard (kvs_policy_grant: document, wildcards)."""
    return policy_grant(PolicyGrantArguments(source="document", wildcards_only=True))


@check("kvs_managed_policy_grant", NoArguments)
def kvs_managed_policy_grant_check(_: NoArguments) -> CheckFunction:
    """An AWS managed policy granting KVS through a wildcard (kvs_policy_grant: managed, wildcards)."""
    return policy_grant(PolicyGrantArguments(source="aws_managed", wildcards_only=True))
