"""The text_* operators (a value seen as SIEMs and Sigma see it) and field-to-field comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvs_sentinel.config import load_config
from kvs_sentinel.detectors.index import DetectorIndex
from kvs_sentinel.detectors.operators import compile_operator
from kvs_sentinel.envelopes import normalise
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import Event, Location

KVS = "kinesisvideo.amazonaws.com"


def matches(name: str, argument: Any, value: Any) -> bool:
    return compile_operator(name, argument)(value)


@pytest.mark.parametrize(
    ("name", "argument", "value", "expected"),
    [
        ("text_ieq", "Root", "root", True),
        ("text_ieq", "Root", "Roots", False),
        ("text_eq", "Root", "root", False),
        ("text_eq", "Root", "Root", True),
        ("text_ieq", "true", True, True),
        ("text_ieq", "false", True, False),
        ("text_ieq", "42", 42, True),
        ("text_ieq", ["a", "b"], ["x", "B"], True),
        ("text_ieq", "x", None, False),
        ("text_icontains", "suspended", {"VersioningConfiguration": {"Status": "Suspended"}}, True),
        ("text_icontains", "enabled", {"VersioningConfiguration": {"Status": "Suspended"}}, False),
        ("text_icontains", "versioningconfiguration", {"VersioningConfiguration": {}}, True),
        # a JSON document inside a string is searched as written, quotes unescaped
        ("text_icontains", '"s3:GetObject"', {"policyDocument": '{"Action":["s3:GetObject"]}'}, True),
        ("text_icontains", "browser", [{"agent": "S3 Browser"}], True),
        ("text_iprefix", "update", "UpdateFunctionConfiguration20150331v2", True),
        ("text_iprefix", "update", "GetFunction", False),
        ("text_isuffix", "V2", "UpdateFunctionConfiguration20150331v2", True),
        ("text_contains", "Browser", "s3 browser", False),
        ("text_regex", ".+:assumed-role/aws:.+", "arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1", True),
        ("text_regex", ".+:assumed-role/aws:.+", "arn:aws:sts::1:assumed-role/admin/alice", False),
        ("text_regex", "(?i)^ROOT$", "root", True),
        ("text_regex", "^ROOT$", "root", False),
    ],
)
def test_text_operators_see_strings_numbers_booleans_and_whole_objects(
    name: str, argument: Any, value: Any, expected: bool
) -> None:
    assert matches(name, argument, value) is expected


def test_text_operators_survive_hostile_nesting() -> None:
    deep: Any = "needle"
    for _ in range(5000):
        deep = [deep]
    assert matches("text_icontains", "zzz", {"a": deep}) is False


def test_text_regex_names_a_pattern_re2_cannot_run() -> None:
    with pytest.raises(ValueError, match=r"invalid regular expression '\(\?=a\)'"):
        compile_operator("text_regex", ["a", "(?=a)"])


def event(**fields: Any) -> Event:
    record = {"eventVersion": "1.09", "eventSource": KVS, "eventName": "GetMedia", "eventID": "e", **fields}
    item = next(iter(normalise(json.dumps(record), Location("t"))))
    assert isinstance(item, Event)
    return item


def load(tmp_path: Path, *matches: Any) -> list[Any]:
    detectors = [
        {
            "id": f"det-{i}",
            "title": f"Detector {i}",
            "severity": "medium",
            "description": "a detector used by the tests",
            "remediation": "do the right thing instead",
            "match": match,
        }
        for i, match in enumerate(matches)
    ]
    (tmp_path / "pack.yaml").write_text(yaml.safe_dump({"detectors": detectors}))
    (tmp_path / "sentinel.yaml").write_text(yaml.safe_dump({"packs": ["pack.yaml"]}))
    return list(load_config(tmp_path / "sentinel.yaml").detectors)


def test_ieq_field_compares_two_fields_of_the_event(tmp_path: Path) -> None:
    (same,) = load(tmp_path, {"userIdentity.userName": {"ieq_field": "requestParameters.userName"}})
    assert same.predicate(event(userIdentity={"userName": "Alice"}, requestParameters={"userName": "alice"}))
    assert not same.predicate(
        event(userIdentity={"userName": "alice"}, requestParameters={"userName": "bob"})
    )
    assert not same.predicate(event(userIdentity={"userName": "alice"}))
    assert not same.predicate(event(requestParameters={"userName": None}))


def test_ieq_field_names_a_bad_field_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(det-0\)\.match\.userAgent\.ieq_field: 'nope' is not"):
        load(tmp_path, {"userAgent": {"ieq_field": "nope.x"}})
    with pytest.raises(ConfigError, match=r"\(det-0\)\.match\.userName: 'userName' is not a CloudTrail"):
        load(tmp_path, {"userName": {"ieq_field": "userAgent"}})


def test_index_keys_ignore_case_but_case_sensitive_conditions_still_decide(tmp_path: Path) -> None:
    exact, folded = load(
        tmp_path,
        {"eventSource": KVS, "eventName": "GetMedia"},
        {"eventSource": {"text_ieq": KVS}, "eventName": {"text_ieq": "getmedia"}},
    )
    index = DetectorIndex([exact, folded])
    assert [plan.detector.id for plan in index.plans(event())] == ["det-0", "det-1"]
    assert [plan.detector.id for plan in index.plans(event(eventName="GETMEDIA"))] == ["det-1"]
    assert index.plans(event(eventName="GetClip")) == ()
