from __future__ import annotations

import json
import time
from urllib.parse import quote, quote_plus

import pytest

from kvs_sentinel.iam_actions import kvs_action_resource_types
from kvs_sentinel.iam_policy import (
    KvsGrant,
    Scope,
    decode_policy_document,
    kvs_action_database_version,
    kvs_actions,
    kvs_grant,
    kvs_wildcard_grant,
)
from kvs_sentinel.managed_policies import managed_policy_kvs_grant

ALL = set(kvs_actions())
GET_ACTIONS = {a for a in ALL if a.startswith("kinesisvideo:Get")}
# Actions without resource-level permissions (ListStreams...): IAM judges them against Resource "*".
UNSCOPED = {a for a, types in kvs_action_resource_types().items() if not types}
STREAM_OR_CHANNEL = ALL - UNSCOPED


def doc(*statements: dict[str, object], as_list: bool = True) -> dict[str, object]:
    body: object = list(statements) if as_list or len(statements) != 1 else statements[0]
    return {"Version": "2012-10-17", "Statement": body}


def allow(action: object = None, resource: object = "*", **extra: object) -> dict[str, object]:
    stmt: dict[str, object] = {"Effect": "Allow", "Resource": resource, **extra}
    if action is not None:
        stmt["Action"] = action
    return stmt


def grant(document: object) -> KvsGrant:
    result = kvs_wildcard_grant(document)
    assert result is not None
    return result


# ---------------------------------------------------------------- action database


def test_database_is_complete_and_current() -> None:
    for name in (
        "GetMedia",
        "PutMedia",
        "GetImages",
        "GetClip",
        "JoinStorageSession",
        "JoinStorageSessionAsViewer",
        "GetHLSStreamingSessionURL",
        "DescribeMappedResourceConfiguration",
        "StartEdgeConfigurationUpdate",
        "UpdateStreamStorageConfiguration",
        "ConnectAsMaster",
        "ListStreams",
    ):
        assert f"kinesisvideo:{name}" in ALL
    assert len(ALL) >= 46
    assert list(kvs_actions()) == sorted(ALL)
    assert kvs_actions() is kvs_actions()  # loaded once
    assert kvs_action_database_version().startswith("0.1.")


# ---------------------------------------------------------------- document forms

KVS_ALL = doc(allow("kinesisvideo:*"))


@pytest.mark.parametrize(
    "raw",
    [
        KVS_ALL,
        json.dumps(KVS_ALL),
        json.dumps(KVS_ALL, indent=4),
        quote(json.dumps(KVS_ALL, indent=2), safe=""),
        quote_plus(json.dumps(KVS_ALL, indent=2)),
        json.dumps(json.dumps(KVS_ALL)),  # JSON string containing the JSON
        json.dumps(KVS_ALL).encode(),
        "\ufeff" + json.dumps(KVS_ALL),
    ],
    ids=["dict", "json", "pretty", "urlencoded", "plus-encoded", "double-json", "bytes", "bom"],
)
def test_document_encodings(raw: object) -> None:
    assert decode_policy_document(raw) is not None
    g = grant(raw)
    assert g.full_wildcard
    assert set(g.actions) == ALL
    assert g.patterns == ("kinesisvideo:*",)


def test_plain_json_with_percent_and_plus_is_not_mangled() -> None:
    d = doc(allow("kinesisvideo:Get*", Sid="a+b%20c"))
    decoded = decode_policy_document(json.dumps(d))
    assert decoded == d


def test_statement_object_and_list_and_action_string_and_list() -> None:
    single = grant(doc(allow("kinesisvideo:Get*"), as_list=False))
    listed = grant(doc(allow(["kinesisvideo:Get*"])))
    assert single.actions == listed.actions
    assert set(single.actions) == GET_ACTIONS


def test_get_wildcard_opens_reads_not_writes() -> None:
    g = grant(doc(allow("kinesisvideo:Get*")))
    assert "kinesisvideo:GetMedia" in g.actions
    assert "kinesisvideo:GetClip" in g.actions
    assert "kinesisvideo:GetImages" in g.actions
    assert "kinesisvideo:PutMedia" not in g.actions
    assert not g.full_wildcard
    assert not g.conditional
    assert list(g.actions) == sorted(g.actions)


@pytest.mark.parametrize(
    "pattern", ["*", "kinesisvideo:*", "*:*", "kinesis*:*", "KINESISVIDEO:*", "kinesisvideo:**"]
)
def test_full_wildcards(pattern: str) -> None:
    g = grant(doc(allow(pattern)))
    assert g.full_wildcard
    assert set(g.actions) == ALL
    assert g.patterns == (pattern,)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("KinesisVideo:get*", GET_ACTIONS),
        ("kinesisvideo:*Media", {"kinesisvideo:GetMedia", "kinesisvideo:PutMedia"}),
        ("*:GetMedia", {"kinesisvideo:GetMedia"}),
        ("kinesisvideo:G?tClip", {"kinesisvideo:GetClip"}),
        ("kinesisvideo:Connect*", {"kinesisvideo:ConnectAsMaster", "kinesisvideo:ConnectAsViewer"}),
        (
            "kinesisvideo:JoinStorageSession*",
            {"kinesisvideo:JoinStorageSession", "kinesisvideo:JoinStorageSessionAsViewer"},
        ),
    ],
)
def test_partial_wildcards(pattern: str, expected: set[str]) -> None:
    g = grant(doc(allow(pattern)))
    assert set(g.actions) == expected
    assert not g.full_wildcard


def test_mixed_list_reports_only_wildcards_that_hit_kvs() -> None:
    g = grant(doc(allow(["s3:Get*", "kinesisvideo:PutMedia", "kinesisvideo:List*", "kinesis:*"])))
    assert g.patterns == ("kinesisvideo:List*",)
    assert "kinesisvideo:PutMedia" not in g.actions
    assert all(a.startswith("kinesisvideo:List") for a in g.actions)


def test_union_of_partial_wildcards_can_be_full() -> None:
    letters = sorted({a.split(":")[1][0] for a in ALL})
    g = grant(doc(allow([f"kinesisvideo:{c}*" for c in letters])))
    assert g.full_wildcard


@pytest.mark.parametrize(
    "action",
    [
        "kinesisvideo:PutMedia",
        ["kinesisvideo:GetMedia", "kinesisvideo:PutMedia", "kinesisvideo:GetClip"],
        "s3:*",
        "kinesis:*",
        "kinesisvideos:*",
        "kinesisvideo:Nothing*",
        ["iam:*", "ec2:Describe*"],
    ],
)
def test_non_kvs_or_explicit_actions_are_not_findings(action: object) -> None:
    assert kvs_wildcard_grant(doc(allow(action))) is None


# ---------------------------------------------------------------- NotAction


def test_not_action_other_service_grants_all_kvs() -> None:
    g = grant(doc({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}))
    assert g.full_wildcard
    assert g.patterns == ("NotAction s3:*",)


def test_not_action_excluding_kvs_grants_nothing() -> None:
    assert (
        kvs_wildcard_grant(doc({"Effect": "Allow", "NotAction": "kinesisvideo:*", "Resource": "*"})) is None
    )
    assert kvs_wildcard_grant(doc({"Effect": "Allow", "NotAction": ["s3:*", "*"], "Resource": "*"})) is None


def test_not_action_partial_exclusion_grants_the_rest() -> None:
    g = grant(doc({"Effect": "Allow", "NotAction": ["kinesisvideo:Get*", "iam:*"], "Resource": "*"}))
    assert not g.full_wildcard
    assert "kinesisvideo:PutMedia" in g.actions
    assert not GET_ACTIONS & set(g.actions)


def test_not_action_explicit_kvs_action_grants_the_rest() -> None:
    g = grant(doc({"Effect": "Allow", "NotAction": "kinesisvideo:GetMedia", "Resource": "*"}))
    assert set(g.actions) == ALL - {"kinesisvideo:GetMedia"}


# ---------------------------------------------------------------- effect / key case


@pytest.mark.parametrize("effect", ["Deny", "deny", "DENY", None, 1, ["Deny"], ""])
def test_deny_and_missing_effect_never_alert(effect: object) -> None:
    stmt: dict[str, object] = {"Action": "*", "Resource": "*"}
    if effect is not None:
        stmt["Effect"] = effect
    assert kvs_wildcard_grant(doc(stmt)) is None
    assert kvs_wildcard_grant(doc({**stmt, "NotAction": "s3:*"})) is None


def test_deny_in_the_same_document_removes_what_it_covers() -> None:
    deny_all = {"Effect": "Deny", "Action": "kinesisvideo:*", "Resource": "*"}
    assert kvs_grant(doc(deny_all, allow("kinesisvideo:Get*"))) is None
    g = grant(
        doc(allow("kinesisvideo:*"), {"Effect": "Deny", "Action": "kinesisvideo:Get*", "Resource": "*"})
    )
    assert set(g.actions) == ALL - GET_ACTIONS
    assert set(g.denied_actions) == GET_ACTIONS
    assert not g.full_wildcard


def test_deny_on_some_resources_only_is_not_counted() -> None:
    partial = {
        "Effect": "Deny",
        "Action": "kinesisvideo:GetMedia",
        "Resource": "arn:aws:kinesisvideo:*:*:stream/lobby/*",
    }
    g = kvs_grant(doc(allow("kinesisvideo:GetMedia"), partial))
    assert g is not None
    assert g.actions == ("kinesisvideo:GetMedia",)
    assert g.deny_not_counted == ("kinesisvideo:GetMedia",)
    every_stream = partial | {"Resource": "arn:aws:kinesisvideo:*:*:stream/*"}
    assert kvs_grant(doc(allow("kinesisvideo:GetMedia"), every_stream)) is None


def test_deny_with_a_condition_is_not_counted_as_removing() -> None:
    conditional = {
        "Effect": "Deny",
        "Action": "kinesisvideo:*",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}},
    }
    g = grant(doc(allow("kinesisvideo:*"), conditional))
    assert g.full_wildcard
    assert set(g.deny_not_counted) == ALL
    assert g.denied_actions == ()


def test_deny_not_resource_removes_only_when_it_excludes_nothing_kvs() -> None:
    deny_except_s3 = {"Effect": "Deny", "Action": "*", "NotResource": "arn:aws:s3:::b/*"}
    assert kvs_grant(doc(allow("kinesisvideo:*"), deny_except_s3)) is None
    deny_except_lobby = {
        "Effect": "Deny",
        "Action": "*",
        "NotResource": "arn:aws:kinesisvideo:*:*:stream/lobby/*",
    }
    g = grant(doc(allow("kinesisvideo:*"), deny_except_lobby))
    assert "kinesisvideo:GetMedia" in g.deny_not_counted


def test_named_actions_are_granted_but_not_wildcards() -> None:
    document = doc(allow(["kinesisvideo:PutMedia", "kinesisvideo:GetMedia"]))
    g = kvs_grant(document)
    assert g is not None
    assert g.actions == ("kinesisvideo:GetMedia", "kinesisvideo:PutMedia")
    assert g.wildcard_actions == ()
    assert g.granted_by["kinesisvideo:GetMedia"] == ("kinesisvideo:GetMedia",)
    assert kvs_wildcard_grant(document) is None


def test_granted_by_names_every_entry_action_by_action() -> None:
    g = grant(doc(allow(["kinesisvideo:Get*", "kinesisvideo:GetMedia"]), allow("*")))
    assert g.granted_by["kinesisvideo:GetMedia"] == ("kinesisvideo:Get*", "kinesisvideo:GetMedia", "*")
    assert g.granted_by["kinesisvideo:PutMedia"] == ("*",)


def test_conditional_actions_are_reported_per_action() -> None:
    cond = {"Bool": {"aws:SecureTransport": "true"}}
    g = grant(doc(allow("kinesisvideo:*", Condition=cond), allow("kinesisvideo:Get*")))
    assert set(g.conditional_actions) == ALL - GET_ACTIONS
    assert not g.conditional


@pytest.mark.parametrize("effect", ["Allow", "allow", "ALLOW", " Allow "])
def test_effect_and_element_names_any_case(effect: str) -> None:
    d = {
        "version": "2012-10-17",
        "STATEMENT": [{"effect": effect, "aCtIoN": "kinesisvideo:*", "resource": "*"}],
    }
    assert grant(d).full_wildcard


# ---------------------------------------------------------------- Resource scoping


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:s3:::bucket/*",
        ["arn:aws:s3:::bucket", "arn:aws:s3:::bucket/*"],
        "arn:aws:kinesis:us-east-1:123456789012:stream/data",
        "arn:aws:s3:::weird:kinesisvideo:bucket",
        "arn:aws:iam::*:role/*",
        [],
        123,
    ],
)
def test_resources_that_cannot_be_kvs(resource: object) -> None:
    assert kvs_wildcard_grant(doc(allow("*", resource=resource))) is None


@pytest.mark.parametrize("resource", ["*", ["arn:aws:s3:::bucket/*", "*"], "**"])
def test_resources_that_cover_every_kvs_action(resource: object) -> None:
    assert grant(doc(allow("kinesisvideo:*", resource=resource))).full_wildcard


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:kinesisvideo:*",
        "arn:*:kinesisvideo:*:*:*",
        "arn:aws:*",
        "arn:aws:kinesis*",
        ["arn:aws:s3:::bucket/*", "ARN:AWS:KINESISVIDEO:*"],
    ],
)
def test_arn_resources_cover_streams_and_channels_not_list_actions(resource: object) -> None:
    # ListStreams and the like take no resource ARN: only Resource "*" grants them
    assert set(grant(doc(allow("kinesisvideo:*", resource=resource))).actions) == STREAM_OR_CHANNEL


def test_resources_are_judged_per_resource_type() -> None:
    channel = "arn:aws:kinesisvideo:us-east-1:123456789012:channel/door/1700000000000"
    g = grant(doc(allow("kinesisvideo:*", resource=channel)))
    types = kvs_action_resource_types()
    assert set(g.actions) == {a for a in ALL if "channel" in types[a]}
    assert "kinesisvideo:ConnectAsMaster" in g.actions
    assert "kinesisvideo:GetMedia" not in g.actions


def test_resources_are_judged_in_the_events_partition() -> None:
    china = doc(
        allow("kinesisvideo:*", resource="arn:aws-cn:kinesisvideo:cn-north-1:123456789012:stream/cam/*")
    )
    assert kvs_grant(china) is None  # default partition: aws
    g = kvs_grant(china, Scope("aws-cn"))
    assert g is not None
    assert "kinesisvideo:GetMedia" in g.actions
    assert g.partition == "aws-cn"


def test_not_resource() -> None:
    assert grant(doc({"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:s3:::b/*"})).full_wildcard
    # every stream and channel excluded; the actions without resource-level permissions stay
    no_kvs_arns = grant(doc({"Effect": "Allow", "Action": "*", "NotResource": "arn:*:kinesisvideo:*"}))
    assert set(no_kvs_arns.actions) == UNSCOPED
    assert kvs_wildcard_grant(doc({"Effect": "Allow", "Action": "*", "NotResource": "*"})) is None
    # excluding only streams still leaves signaling channels
    g = grant(doc({"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:kinesisvideo:*:*:stream/*"}))
    assert "kinesisvideo:ConnectAsMaster" in g.actions
    assert "kinesisvideo:GetMedia" not in g.actions


def test_not_resource_is_judged_in_the_events_partition_not_every_partition() -> None:
    other = doc(
        {"Effect": "Allow", "Action": "kinesisvideo:Get*", "NotResource": "arn:aws-cn:kinesisvideo:*"}
    )
    assert set(grant(other).actions) == GET_ACTIONS  # in aws, an aws-cn exclusion excludes nothing
    assert kvs_grant(other, Scope("aws-cn", "111122223333", "cn-north-1")) is None
    own_account = doc(
        {
            "Effect": "Allow",
            "Action": "kinesisvideo:Get*",
            "NotResource": "arn:aws:kinesisvideo:*:111122223333:*",
        }
    )
    assert kvs_grant(own_account, Scope("aws", "111122223333", "eu-west-1")) is None


def test_missing_resource_is_treated_as_star() -> None:
    assert grant(doc({"Effect": "Allow", "Action": "kinesisvideo:*"})).full_wildcard


# ---------------------------------------------------------------- Condition


def test_condition_is_reported_not_cancelled() -> None:
    cond = {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}
    g = grant(doc(allow("kinesisvideo:*", Condition=cond)))
    assert g.full_wildcard
    assert g.conditional


def test_one_unconditional_grant_makes_finding_unconditional() -> None:
    cond = {"Bool": {"aws:SecureTransport": "true"}}
    g = grant(doc(allow("kinesisvideo:*", Condition=cond), allow("kinesisvideo:Get*")))
    assert not g.conditional


@pytest.mark.parametrize("cond", [{}, None, "x", []])
def test_empty_or_bogus_condition_is_unconditional(cond: object) -> None:
    assert not grant(doc(allow("kinesisvideo:*", Condition=cond))).conditional


def test_only_granting_statements_decide_conditional() -> None:
    cond = {"Bool": {"aws:SecureTransport": "true"}}
    g = grant(doc(allow("s3:*"), allow("kinesisvideo:*", Condition=cond)))
    assert g.conditional


# ---------------------------------------------------------------- malformed / hostile input


@pytest.mark.parametrize(
    "raw",
    [
        None,
        0,
        1.5,
        True,
        [],
        ["*"],
        "",
        "   ",
        "garbage",
        "%zz",
        "%7B%zz",
        "{",
        "null",
        "[1,2]",
        '"just a string"',
        "1e999",
        "9" * 5000,
        '{"Statement": null}',
        '{"Statement": "*"}',
        '{"Statement": [null, 1, "x", []]}',
        '{"Statement": {"Effect": "Allow"}}',
        '{"Statement": {"Effect": "Allow", "Action": 5, "Resource": "*"}}',
        b"\xff\xfe\x00",
        object(),
        {1: 2},
        {"Statement": {"Effect": "Allow", "Action": {"a": "*"}}},
    ],
)
def test_malformed_inputs_return_none(raw: object) -> None:
    assert kvs_wildcard_grant(raw) is None


def test_deeply_nested_string_returns_none_fast() -> None:
    for raw in ("[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000, "[" * 10_000):
        start = time.perf_counter()
        assert kvs_wildcard_grant(raw) is None
        assert kvs_wildcard_grant(quote(raw)) is None
        assert time.perf_counter() - start < 2


def test_deeply_nested_dict_and_cycles_return_none() -> None:
    nested: dict[str, object] = {}
    node = nested
    for _ in range(10_000):
        child: dict[str, object] = {}
        node["Statement"] = child
        node = child
    assert kvs_wildcard_grant(nested) is None
    cyclic: dict[str, object] = {"Statement": [allow("*")]}
    cyclic["self"] = cyclic
    assert kvs_wildcard_grant(cyclic) is None


def test_huge_strings_return_none_fast() -> None:
    start = time.perf_counter()
    assert kvs_wildcard_grant("x" * 5_000_000) is None
    assert kvs_wildcard_grant("%7B" * 1_700_000) is None
    padded = json.dumps({"Statement": [allow("*")], "Pad": "a" * 5_000_000})
    assert kvs_wildcard_grant(padded) is None  # far beyond any size IAM accepts
    assert time.perf_counter() - start < 3


def test_adversarial_patterns_stay_fast() -> None:
    nasty = ["*a" * 60 + "*b", "*?" * 60, "kinesisvideo:" + "*x" * 60, "?" * 10_000, "*" * 10_000]
    many = [f"*{i:05d}*q*" for i in range(1500)]
    start = time.perf_counter()
    assert kvs_wildcard_grant(doc(allow(nasty + many))) is None
    assert (
        kvs_wildcard_grant(doc(allow("*", resource=["arn:aws:s3:::" + "*a" * 1000, "a" * 4000 + "*"])))
        is None
    )
    assert grant(doc(allow("kinesisvideo:Get*", resource="arn:" + "*a" * 1000 + "*b"))).actions
    g = grant(doc(allow([*many, "kinesisvideo:*"], resource="arn:" + "*:" * 500 + "*")))
    assert set(g.actions) == STREAM_OR_CHANNEL
    assert time.perf_counter() - start < 5


def test_whitespace_padded_policy_within_iam_limits_still_found() -> None:
    raw = json.dumps(doc(allow("kinesisvideo:Get*"))).replace(",", ",\n" + " " * 40_000)
    assert len(raw) > 100_000  # IAM does not count whitespace towards its size limit
    assert grant(raw).actions


# ---------------------------------------------------------------- managed policies


@pytest.mark.parametrize(
    ("arn", "full"),
    [
        ("arn:aws:iam::aws:policy/AmazonKinesisVideoStreamsFullAccess", True),
        ("arn:aws:iam::aws:policy/AdministratorAccess", True),
        ("arn:aws:iam::aws:policy/PowerUserAccess", True),
        ("arn:aws-us-gov:iam::aws:policy/AdministratorAccess", True),
        ("arn:aws-cn:iam::aws:policy/AmazonKinesisVideoStreamsFullAccess", True),
        ("arn:aws:iam::aws:policy/AmazonKinesisVideoStreamsReadOnlyAccess", False),
        ("arn:aws:iam::aws:policy/ReadOnlyAccess", False),
    ],
)
def test_managed_policies_granting_kvs(arn: str, full: bool) -> None:
    g = managed_policy_kvs_grant(arn)
    assert g is not None
    assert g.full_wildcard is full
    assert not g.conditional
    if not full:
        assert "kinesisvideo:GetMedia" in g.actions
        assert "kinesisvideo:PutMedia" not in g.actions


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
        "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
        "arn:aws:iam::aws:policy/aws-service-role/SomeUnknownServiceRolePolicy",
        "arn:aws:iam::123456789012:policy/AdministratorAccess",
        "arn:aws:iam::123456789012:policy/team/AmazonKinesisVideoStreamsFullAccess",
        "AdministratorAccess",
        "arn:aws:iam::aws:policy/AdministratorAccess/",
        "",
        None,
        42,
        "arn:aws:iam::aws:policy/" + "A" * 100_000,
    ],
)
def test_managed_policies_without_kvs_grant(arn: object) -> None:
    assert managed_policy_kvs_grant(arn) is None


def test_managed_policy_path_variants() -> None:
    assert managed_policy_kvs_grant("arn:aws:iam::aws:policy/service-role/AdministratorAccess") is not None
    assert managed_policy_kvs_grant(" arn:aws:iam::aws:policy/PowerUserAccess ") is not None
