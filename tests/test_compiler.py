from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvs_sentinel.config import LoadedConfig, load_config
from kvs_sentinel.detectors.compiler import Detector
from kvs_sentinel.detectors.index import DetectorIndex
from kvs_sentinel.engine import Engine
from kvs_sentinel.envelopes import normalise
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import Event, Location

KVS = "kinesisvideo.amazonaws.com"


def detector(id: str = "my-id", match: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": id,
        "title": f"Detector {id}",
        "severity": "medium",
        "description": "a detector used by the tests",
        "remediation": "do the right thing instead",
        "match": {"eventSource": KVS} if match is None else match,
        **extra,
    }


def load(tmp_path: Path, *detectors: dict[str, Any], pack_lists: Any = None, **config: Any) -> LoadedConfig:
    """Write one pack holding `detectors` and a sentinel.yaml using it, then load."""
    pack = {"lists": pack_lists or {}, "detectors": list(detectors)}
    (tmp_path / "pack.yaml").write_text(yaml.safe_dump(pack))
    (tmp_path / "sentinel.yaml").write_text(yaml.safe_dump({"packs": ["pack.yaml"], **config}))
    return load_config(tmp_path / "sentinel.yaml")


def fails(tmp_path: Path, *detectors: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, *detectors, **kwargs)
    return str(caught.value)


def event(**fields: Any) -> Event:
    record = {"eventVersion": "1.09", "eventSource": KVS, "eventName": "GetMedia", "eventID": "e", **fields}
    record = {k: v for k, v in record.items() if v is not ...}
    item = next(iter(normalise(json.dumps(record), Location("t"))))
    assert isinstance(item, Event)
    return item


def matcher(tmp_path: Path, match: Any, **lists: Any) -> Detector:
    return load(tmp_path, detector(match=match), pack_lists=lists).detectors[0]


# ---------------------------------------------------------------- condition grammar
def test_multi_key_mapping_means_all(tmp_path: Path):
    d = matcher(tmp_path, {"eventSource": KVS, "eventName": "GetMedia"})
    assert d.predicate(event())
    assert not d.predicate(event(eventName="GetClip"))
    assert not d.predicate(event(eventSource="s3.amazonaws.com"))


def test_all_any_not(tmp_path: Path):
    d = matcher(
        tmp_path,
        {
            "all": [
                {"eventSource": KVS},
                {"any": [{"eventName": "GetMedia"}, {"errorCode": "AccessDenied"}]},
            ],
            "not": {"userIdentity.type": "AWSService"},
        },
    )
    assert d.predicate(event())
    assert d.predicate(event(eventName="DeleteStream", errorCode="AccessDenied"))
    assert not d.predicate(event(eventName="DeleteStream"))
    assert not d.predicate(event(userIdentity={"type": "AWSService"}))


def test_top_level_list_means_all(tmp_path: Path):
    d = matcher(tmp_path, [{"eventSource": KVS}, {"eventName": "GetMedia"}])
    assert d.predicate(event())
    assert not d.predicate(event(eventName="GetClip"))


def test_null_means_absent(tmp_path: Path):
    d = matcher(tmp_path, {"eventSource": KVS, "errorCode": None})
    assert d.predicate(event())
    assert not d.predicate(event(errorCode="AccessDenied"))


def test_list_means_in(tmp_path: Path):
    d = matcher(tmp_path, {"eventName": ["GetMedia", "GetClip"]})
    assert d.predicate(event(eventName="GetClip"))
    assert not d.predicate(event(eventName="DeleteStream"))


def test_several_operators_on_one_field_must_all_hold(tmp_path: Path):
    d = matcher(tmp_path, {"sourceIPAddress": {"cidr": "10.0.0.0/8", "prefix": "10.1."}})
    assert d.predicate(event(sourceIPAddress="10.1.2.3"))
    assert not d.predicate(event(sourceIPAddress="10.2.2.3"))


def test_named_list_reference_in_argument_and_as_implicit_in(tmp_path: Path):
    d = matcher(
        tmp_path,
        {
            "eventName": "$reads",
            "sourceIPAddress": {"cidr": "$office"},
            "userAgent": {"in": ["$agents", "cli"]},
        },
        reads=["GetMedia", "GetClip"],
        office=["10.0.0.0/8"],
        agents=["console"],
    )
    assert d.predicate(event(sourceIPAddress="10.1.1.1", userAgent="cli"))
    assert d.predicate(event(eventName="GetClip", sourceIPAddress="10.1.1.1", userAgent="console"))
    assert not d.predicate(event(eventName="Other", sourceIPAddress="10.1.1.1", userAgent="cli"))
    assert not d.predicate(event(sourceIPAddress="11.1.1.1", userAgent="cli"))


def test_double_dollar_is_a_literal_dollar(tmp_path: Path):
    d = matcher(tmp_path, {"eventName": "$$GetMedia", "userAgent": ["$$x", "y"]})
    assert d.predicate(event(eventName="$GetMedia", userAgent="$x"))
    assert not d.predicate(event(eventName="GetMedia", userAgent="$x"))


def test_config_list_overrides_the_pack_default(tmp_path: Path):
    loaded = load(
        tmp_path, detector(match={"sourceIPAddress": {"cidr": "$office"}}),
        pack_lists={"office": []}, lists={"office": ["192.0.2.0/24"]},
    )  # fmt: skip
    assert loaded.detectors[0].predicate(event(sourceIPAddress="192.0.2.9"))


def test_check_condition(tmp_path: Path):
    d = matcher(tmp_path, {"eventName": "AttachRolePolicy", "check": "kvs_managed_policy_grant"})
    full = {"policyArn": "arn:aws:iam::aws:policy/AmazonKinesisVideoStreamsFullAccess", "roleName": "r"}
    assert d.predicate(event(eventName="AttachRolePolicy", requestParameters=full))
    other = {"policyArn": "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", "roleName": "r"}
    assert not d.predicate(event(eventName="AttachRolePolicy", requestParameters=other))
    assert [c.name for c in d.checks] == ["kvs_managed_policy_grant"]


def test_named_lists_in_check_arguments_are_resolved(tmp_path: Path):
    check = {"name": "kvs_policy_grant", "with": {"outside": "$allowed", "within": ["$reads", "GetClip"]}}
    d = matcher(
        tmp_path, {"eventName": "PutRolePolicy", "check": check}, allowed=["PutMedia"], reads=["GetMedia"]
    )
    granted = '{"Statement":{"Effect":"Allow","Action":["kinesisvideo:PutMedia","kinesisvideo:GetMedia"]}}'
    assert d.predicate(event(eventName="PutRolePolicy", requestParameters={"policyDocument": granted}))
    only_put = '{"Statement":{"Effect":"Allow","Action":"kinesisvideo:PutMedia"}}'
    assert not d.predicate(event(eventName="PutRolePolicy", requestParameters={"policyDocument": only_put}))
    with pytest.raises(ConfigError, match=r"match\.check\.with\.outside: unknown list \$nope"):
        matcher(tmp_path, {"check": {"name": "kvs_policy_grant", "with": {"outside": "$nope"}}})


def test_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OFFICE_CIDR", "198.51.100.0/24")
    loaded = load(
        tmp_path, detector(match={"sourceIPAddress": {"cidr": "$office"}}),
        pack_lists={"office": []}, lists={"office": ["${OFFICE_CIDR}"]},
    )  # fmt: skip
    assert loaded.lists["office"] == ["198.51.100.0/24"]
    assert loaded.detectors[0].predicate(event(sourceIPAddress="198.51.100.4"))


# ---------------------------------------------------------------- errors name file and path
@pytest.mark.parametrize(
    ("match", "where", "problem"),
    [
        ({"eventName": "$nope"}, "detectors[0] (my-id).match.eventName", "unknown list $nope"),
        ({"eventName": {"in": ["$nope"]}}, "detectors[0] (my-id).match.eventName.in", "unknown list $nope"),
        (
            {"eventName": {"regexx": "a"}},
            "detectors[0] (my-id).match.eventName.regexx",
            "unknown operator 'regexx'",
        ),
        (
            {"userIdentity.arn": {"glob": 5}},
            "detectors[0] (my-id).match.userIdentity.arn.glob",
            "glob takes a string",
        ),
        (
            {"eventName": {"regex": "("}},
            "detectors[0] (my-id).match.eventName.regex",
            "invalid regular expression",
        ),
        (
            {"sourceIPAddress": {"cidr": "10.0.0/33"}},
            "detectors[0] (my-id).match.sourceIPAddress.cidr",
            "not an IPv4",
        ),
        ({"eventsource": KVS}, "detectors[0] (my-id).match.eventsource", "did you mean 'eventSource'"),
        (
            {"any": [{"eventName": "a"}, {"bogus": 1}]},
            "detectors[0] (my-id).match.any[1].bogus",
            "not a CloudTrail",
        ),
        (
            {"not": {"eventName": {}}},
            "detectors[0] (my-id).match.not.eventName",
            "an empty mapping of operators",
        ),
        ({"all": []}, "detectors[0] (my-id).match.all", "non-empty list"),
        ({"check": "nope"}, "detectors[0] (my-id).match.check", "unknown check 'nope'"),
        ("just a string", "detectors[0] (my-id).match", "a condition is a mapping"),
    ],
)
def test_bad_condition_error_names_file_detector_and_path(
    tmp_path: Path, match: Any, where: str, problem: str
):
    message = fails(tmp_path, detector(match=match))
    assert str(tmp_path / "pack.yaml") in message
    assert where in message
    assert problem in message


def test_unknown_list_error_lists_the_defined_ones(tmp_path: Path):
    message = fails(tmp_path, detector(match={"eventName": "$nope"}), pack_lists={"reads": ["a"]})
    assert "(defined lists: reads)" in message


def test_bad_escalation_condition_names_its_path(tmp_path: Path):
    rule = {"when": {"sourceIPAddress": {"cidr": "x"}}, "severity": "high", "reason": "r"}
    message = fails(tmp_path, detector(escalate=[rule]))
    assert "detectors[0] (my-id).escalate[0].when.sourceIPAddress.cidr" in message


def test_unknown_summary_placeholder_names_its_path(tmp_path: Path):
    message = fails(tmp_path, detector(summary="{principal} did {nope}"))
    assert "detectors[0] (my-id).summary" in message
    assert "{nope}" in message


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        ({"severity": "urgent"}, "detectors[1] (second).severity", "Input should be"),
        ({"remediation": None}, "detectors[1] (second).remediation", ""),
        ({"id": "Bad Id"}, "detectors[1] (Bad Id).id", "should match pattern"),
        ({"colour": "red"}, "detectors[1] (second).colour", "Extra inputs are not permitted"),
    ],
)
def test_invalid_detector_shape_names_file_detector_and_field(
    tmp_path: Path, change: Any, where: str, problem: str
):
    broken = {**detector("second"), **change}
    broken = {k: v for k, v in broken.items() if v is not None}
    message = fails(tmp_path, detector("first"), broken)
    assert str(tmp_path / "pack.yaml") in message
    assert where in message
    assert problem in message


def test_missing_remediation_is_reported_as_required(tmp_path: Path):
    broken = detector()
    del broken["remediation"]
    assert "detectors[0] (my-id).remediation: Field required" in fails(tmp_path, broken)


def test_duplicate_detector_ids_are_an_error(tmp_path: Path):
    message = fails(tmp_path, detector("dup"), detector("dup"))
    assert "detectors[1] (dup): id already used in" in message


def test_disabled_unknown_id_is_an_error(tmp_path: Path):
    message = fails(tmp_path, detector("known"), disabled=["known", "unknwon"])
    assert str(tmp_path / "sentinel.yaml") in message
    assert "disabled: unknown detector ids unknwon" in message


def test_disabled_detector_is_left_out(tmp_path: Path):
    loaded = load(tmp_path, detector("det-a"), detector("det-b"), disabled=["det-a"])
    assert [d.id for d in loaded.detectors] == ["det-b"]


def test_config_list_that_no_pack_defines_is_an_error(tmp_path: Path):
    message = fails(tmp_path, detector(), pack_lists={"office": []}, lists={"ofice": ["10.0.0.0/8"]})
    assert str(tmp_path / "sentinel.yaml") in message
    assert "lists.ofice: no pack uses this list (known lists: office)" in message


def test_missing_env_var_names_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KVS_TEST_UNSET", raising=False)
    message = fails(tmp_path, detector(), pack_lists={"office": []}, lists={"office": ["${KVS_TEST_UNSET}"]})
    assert str(tmp_path / "sentinel.yaml") in message
    assert "KVS_TEST_UNSET is not set" in message
    assert "lists.office" in message


def test_invalid_yaml_reports_line_and_column(tmp_path: Path):
    (tmp_path / "sentinel.yaml").write_text(textwrap.dedent("packs: []\nlists: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"sentinel\.yaml:\d+:\d+: invalid YAML"):
        load_config(tmp_path / "sentinel.yaml")


# ---------------------------------------------------------------- index keys
@pytest.mark.parametrize(
    ("match", "sources", "names"),
    [
        ({"eventSource": KVS, "eventName": "GetMedia"}, {KVS}, {"GetMedia"}),
        ({"eventSource": {"eq": KVS}, "eventName": {"in": ["A", "B"]}}, {KVS}, {"A", "B"}),
        ({"eventName": "$reads"}, None, {"GetMedia", "GetClip"}),
        ({"all": [{"eventName": ["A", "B"]}, {"eventName": ["B", "C"]}]}, None, {"B"}),
        ([{"eventSource": KVS}, {"eventName": "A"}], {KVS}, {"A"}),
        ({"any": [{"eventName": "A"}, {"all": [{"eventName": "B"}]}]}, None, {"A", "B"}),
        ({"any": [{"eventName": "A"}, {"errorCode": "x"}]}, None, None),
        ({"not": {"eventName": "A"}}, None, None),
        ({"eventName": {"glob": "Get*"}}, None, None),
        ({"eventName": {"eq": "A", "prefix": "A"}}, None, None),
        ({"eventName": {"ieq": "a"}}, None, {"a"}),  # the index ignores case
        ({"eventName": {"text_ieq": ["a", "B"]}}, None, {"a", "B"}),
        ({"errorCode": "x"}, None, None),
    ],
)
def test_index_keys_come_from_the_top_level_condition(tmp_path: Path, match: Any, sources: Any, names: Any):
    d = matcher(tmp_path, match, reads=["GetMedia", "GetClip"])
    assert d.event_sources == (None if sources is None else frozenset(sources))
    assert d.event_names == (None if names is None else frozenset(names))


# ---------------------------------------------------------------- the index
@pytest.fixture
def indexed(tmp_path: Path) -> DetectorIndex:
    loaded = load(
        tmp_path,
        detector("global", match={"errorCode": "AccessDenied"}),
        detector("pair-kvs-get", match={"eventSource": KVS, "eventName": ["GetMedia", "GetClip"]}),
        detector("source-kvs", match={"eventSource": KVS}),
        detector("name-delete", match={"eventName": "DeleteStream"}),
        detector("pair-s3", match={"eventSource": "s3.amazonaws.com", "eventName": "PutObject"}),
        detector("source-iam", match={"eventSource": "iam.amazonaws.com"}),
    )
    return DetectorIndex(loaded.detectors)


def candidates(index: DetectorIndex, source: Any, name: Any) -> list[str]:
    return [d.id for d in index.candidates(event(eventSource=source, eventName=name))]


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        (KVS, "GetMedia", ["global", "pair-kvs-get", "source-kvs"]),
        (KVS, "DeleteStream", ["global", "source-kvs", "name-delete"]),
        (KVS, "ListStreams", ["global", "source-kvs"]),
        ("s3.amazonaws.com", "PutObject", ["global", "pair-s3"]),
        ("s3.amazonaws.com", "GetObject", ["global"]),
        ("s3.amazonaws.com", "DeleteStream", ["global", "name-delete"]),
        ("ec2.amazonaws.com", "DeleteStream", ["global", "name-delete"]),
        ("ec2.amazonaws.com", "RunInstances", ["global"]),
        ("iam.amazonaws.com", "DeleteStream", ["global", "name-delete", "source-iam"]),
        ("s3.amazonaws.com", "GetMedia", ["global"]),
        (KVS, "PutObject", ["global", "source-kvs"]),
        ("iam.amazonaws.com", "GetMedia", ["global", "source-iam"]),
    ],
)
def test_index_returns_only_relevant_detectors_in_load_order(
    indexed: DetectorIndex, source: str, name: str, expected
):
    assert candidates(indexed, source, name) == expected


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        (5, "DeleteStream", ["global", "name-delete"]),
        (["x"], {"a": 1}, ["global"]),
        (KVS, 42, ["global", "source-kvs"]),
        (None, 5, ["global"]),
        (None, "GetMedia", ["global"]),
    ],
)
def test_index_copes_with_non_string_source_and_name(
    indexed: DetectorIndex, source: Any, name: Any, expected
):
    assert candidates(indexed, source, name) == expected


def test_index_candidates_agree_with_evaluating_every_detector(tmp_path: Path, indexed: DetectorIndex):
    for source in (KVS, "s3.amazonaws.com", "iam.amazonaws.com", "ec2.amazonaws.com"):
        for name in ("GetMedia", "GetClip", "DeleteStream", "PutObject", "ListStreams"):
            for error in ("AccessDenied", ...):
                e = event(eventSource=source, eventName=name, errorCode=error)
                everything = [d.id for d in indexed.detectors if d.predicate(e)]
                assert [d.id for d in indexed.candidates(e) if d.predicate(e)] == everything, (source, name)


# ---------------------------------------------------------------- escalation
def test_first_matching_escalation_sets_severity_and_reason(tmp_path: Path):
    rules = [
        {
            "when": {"sourceIPAddress": {"cidr": "203.0.113.0/24"}},
            "severity": "critical",
            "reason": "known bad range",
        },
        {"when": {"sourceIPAddress": {"is_ip": True}}, "severity": "high", "reason": "from outside AWS"},
    ]
    engine = Engine(load(tmp_path, detector(escalate=rules)).detectors)
    alerts = [
        engine.evaluate(event(sourceIPAddress=ip))[0]
        for ip in ("203.0.113.5", "198.51.100.5", "AWS Internal")
    ]
    assert [(a.severity, a.escalated_because) for a in alerts] == [
        ("critical", "known bad range"),
        ("high", "from outside AWS"),
        ("medium", None),
    ]


def test_engine_evaluates_only_matching_detectors(tmp_path: Path):
    engine = Engine(
        load(tmp_path, detector("det-a", match={"eventName": "GetMedia"}), detector("det-b")).detectors
    )
    assert [a.detector for a in engine.evaluate(event())] == ["det-a", "det-b"]
    assert [a.detector for a in engine.evaluate(event(eventName="GetClip"))] == ["det-b"]
    assert engine.evaluate(event(eventSource="s3.amazonaws.com", eventName="x")) == []
