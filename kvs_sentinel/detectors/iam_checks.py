"""Checks on IAM events that YAML can't express: what a policy document or managed policy opens up in KVS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvs_sentinel.detectors.checks import CheckFunction, NoArguments, check
from kvs_sentinel.events import Event
from kvs_sentinel.iam_policy import KvsGrant, kvs_wildcard_grant, managed_policy_kvs_grant


def _details(grant: KvsGrant, policy: Any) -> Mapping[str, Any]:
    return {
        "kvs_actions": list(grant.actions),
        "granted_by": list(grant.patterns),
        "full_kvs_access": grant.full_wildcard,
        "conditional": grant.conditional,
        "policy": policy,
    }


@check("kvs_wildcard_grant", NoArguments)
def kvs_wildcard_grant_check(_: NoArguments) -> CheckFunction:
    """An inline or customer policy document (`requestParameters.policyDocument`, URL-encoded JSON) whose
    Allow statements grant KVS actions through a wildcard: `*`, `kinesisvideo:*`, `kinesisvideo:Get*`,
    a NotAction that leaves KVS in, …"""

    def run(event: Event) -> Mapping[str, Any] | None:
        parameters = event.lazy("requestParameters")
        if not isinstance(parameters, dict):
            return None
        grant = kvs_wildcard_grant(parameters.get("policyDocument"))
        if grant is None:
            return None
        return _details(grant, parameters.get("policyName") or parameters.get("policyArn"))

    return run


@check("kvs_managed_policy_grant", NoArguments)
def kvs_managed_policy_grant_check(_: NoArguments) -> CheckFunction:
    """An AWS managed policy (`requestParameters.policyArn`) that grants KVS actions through a wildcard:
    AmazonKinesisVideoStreamsFullAccess, AdministratorAccess, PowerUserAccess, …"""

    def run(event: Event) -> Mapping[str, Any] | None:
        parameters = event.lazy("requestParameters")
        if not isinstance(parameters, dict):
            return None
        grant = managed_policy_kvs_grant(parameters.get("policyArn"))
        return None if grant is None else _details(grant, parameters.get("policyArn"))

    return run
