"""The IAM and ARN checks: what the alert's details say, and in which partition a policy is judged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvs_sentinel.decode import decode_all
from kvs_sentinel.detectors.arn_checks import FieldArgument, foreign_account_arns_check
from kvs_sentinel.detectors.iam_checks import PolicyGrantArguments, event_scope, policy_grant
from kvs_sentinel.envelopes import Document
from kvs_sentinel.events import Event, Location
from kvs_sentinel.examples import wrap
from kvs_sentinel.partitions import partition_of


def event(**fields: Any) -> Event:
    record = {
        "eventVersion": "1.09",
        "eventSource": "iam.amazonaws.com",
        "eventName": "PutRolePolicy",
        "awsRegion": "us-east-1",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/admin/x"},
        "eventID": "3f0c5e2a-0000-4000-8000-0000000000aa",
        "recipientAccountId": "111122223333",
        **fields,
    }
    (decoded,) = decode_all(Document(wrap(record, "record"), Location("test")))
    assert isinstance(decoded, Event)
    return decoded


@pytest.mark.parametrize(
    ("arns", "region", "partition"),
    [
        (["arn:aws-cn:sts::1:assumed-role/a/b"], "cn-north-1", "aws-cn"),
        ([None, "arn:aws-us-gov:iam::1:role/r"], None, "aws-us-gov"),
        ([], "cn-northwest-1", "aws-cn"),
        ([], "us-gov-east-1", "aws-us-gov"),
        ([], "us-isob-east-1", "aws-iso-b"),
        ([], "eu-west-1", "aws"),
        (["not an arn", 5], None, "aws"),
    ],
)
def test_partition_comes_from_the_events_arns_then_its_region(
    arns: list[object], region: str | None, partition: str
) -> None:
    assert partition_of(arns, region) == partition


def test_event_scope_reads_partition_account_and_region() -> None:
    scope = event(
        awsRegion="cn-north-1",
        userIdentity={"type": "AssumedRole", "arn": "arn:aws-cn:sts::111122223333:assumed-role/a/b"},
    )
    assert event_scope(scope).partition == "aws-cn"
    assert event_scope(scope).account == "111122223333"


@pytest.mark.parametrize(
    "identity",
    [{"type": "AssumedRole", "sessionContext": "x"}, {"sessionContext": {"sessionIssuer": 5}}, "s", None],
)
def test_event_scope_never_fails_on_odd_identities(identity: object) -> None:
    assert event_scope(event(userIdentity=identity)).partition == "aws"


def test_policy_grant_details_are_action_by_action() -> None:
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": "kinesisvideo:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "kinesisvideo:Get*", "Resource": "*"},
        ]
    }
    check = policy_grant(PolicyGrantArguments(wildcards_only=True))
    details = check(
        event(requestParameters={"roleName": "r", "policyName": "p", "policyDocument": json.dumps(document)})
    )
    assert details is not None
    assert details["full_kvs_access"] is False
    assert "kinesisvideo:GetMedia" not in details["kvs_actions"]
    assert "kinesisvideo:GetMedia" in details["denied_actions"]
    assert details["granted_by"]["kinesisvideo:PutMedia"] == ["kinesisvideo:*"]
    assert details["policy"] == "p"
    assert details["judged_from"] == "policy document"


def test_policy_grant_narrowed_to_actions_outside_and_within() -> None:
    document = {
        "Statement": {"Effect": "Allow", "Action": ["kinesisvideo:PutMedia", "kinesisvideo:GetMedia"]}
    }
    parameters = {"roleName": "kvs-producer-x", "policyDocument": json.dumps(document)}
    outside = policy_grant(PolicyGrantArguments(outside=["PutMedia"]))
    assert outside(event(requestParameters=parameters))["kvs_actions"] == ["kinesisvideo:GetMedia"]  # type: ignore[index]
    allowed_only = policy_grant(PolicyGrantArguments(outside=["PutMedia", "GetMedia"]))
    assert allowed_only(event(requestParameters=parameters)) is None
    within = policy_grant(PolicyGrantArguments(within=["ListStreams"]))
    assert within(event(requestParameters=parameters)) is None


def test_managed_policy_grant_says_it_was_judged_from_the_snapshot() -> None:
    check = policy_grant(PolicyGrantArguments(source="managed"))
    arn = "arn:aws:iam::aws:policy/AmazonKinesisVideoStreamsReadOnlyAccess"
    details = check(
        event(eventName="AttachRolePolicy", requestParameters={"roleName": "r", "policyArn": arn})
    )
    assert details is not None
    assert "snapshot" in details["judged_from"]
    customer = "arn:aws:iam::111122223333:policy/kvs-all"
    assert check(event(eventName="AttachRolePolicy", requestParameters={"policyArn": customer})) is None


def test_foreign_account_arns_names_only_other_accounts() -> None:
    check = foreign_account_arns_check(FieldArgument(field="requestParameters.targets.arn"))
    targets = [
        {"id": "a", "arn": "arn:aws:sqs:eu-west-1:111122223333:kvs-sentinel-events"},
        {"id": "b", "arn": "arn:aws:sqs:eu-west-1:999988887777:elsewhere"},
        {"id": "c", "arn": "arn:aws:s3:::bucket"},
    ]
    details = check(event(eventSource="events.amazonaws.com", requestParameters={"targets": targets}))
    assert details == {"foreign_arns": ["arn:aws:sqs:eu-west-1:999988887777:elsewhere"]}
    assert check(event(requestParameters={"targets": targets[:1]})) is None
    assert check(event(requestParameters={"targets": targets}, recipientAccountId=None)) is None


def test_foreign_account_arns_rejects_a_field_that_is_not_cloudtrail() -> None:
    with pytest.raises(ValueError, match="not a CloudTrail record field"):
        FieldArgument(field="request.targets.arn")
