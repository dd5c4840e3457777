from __future__ import annotations

import json
from typing import Any

import pytest

from kvs_sentinel.envelopes import normalise
from kvs_sentinel.events import EAGER_FIELDS, LAZY_FIELDS, Event, Location, dig, field_getter

RECORD: dict[str, Any] = {
    "eventVersion": "1.09",
    "eventSource": "kinesisvideo.amazonaws.com",
    "eventName": "GetMedia",
    "eventID": "e-1",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "198.51.100.7",
    "userIdentity": {
        "type": "AssumedRole",
        "arn": "arn:aws:sts::111122223333:assumed-role/Viewer/s",
        "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::111122223333:role/Viewer"}},
    },
    "requestParameters": {"streamName": "door", "startSelector": {"startSelectorType": "NOW"}},
    "resources": [
        {
            "ARN": "arn:aws:kinesisvideo:eu-west-1:111122223333:stream/door/1",
            "type": "AWS::KinesisVideo::Stream",
        },
        {"ARN": "arn:aws:kinesisvideo:eu-west-1:111122223333:stream/yard/2"},
        {"type": "no arn here"},
    ],
}


def event_of(record: dict[str, Any]) -> Event:
    items = list(normalise(json.dumps(record), Location("t")))
    assert len(items) == 1
    assert isinstance(items[0], Event)
    return items[0]


def get(path: str, record: dict[str, Any] | None = None) -> Any:
    return field_getter(path)(event_of(RECORD if record is None else record))


# ---------------------------------------------------------------- paths
def test_eager_top_level_field_is_read_directly():
    assert get("eventName") == "GetMedia"
    assert get("sourceIPAddress") == "198.51.100.7"


def test_nested_path_into_eager_object():
    assert get("userIdentity.type") == "AssumedRole"
    assert get("userIdentity.sessionContext.sessionIssuer.arn") == "arn:aws:iam::111122223333:role/Viewer"


def test_lazy_field_is_decoded_when_read():
    assert get("requestParameters") == RECORD["requestParameters"]
    assert get("requestParameters.streamName") == "door"
    assert get("requestParameters.startSelector.startSelectorType") == "NOW"


def test_path_fans_out_through_a_list_skipping_elements_without_the_key():
    assert get("resources.ARN") == [
        "arn:aws:kinesisvideo:eu-west-1:111122223333:stream/door/1",
        "arn:aws:kinesisvideo:eu-west-1:111122223333:stream/yard/2",
    ]


def test_fan_out_flattens_nested_lists():
    record = {**RECORD, "requestParameters": {"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": {"c": 3}}, {"b": []}]}}
    assert get("requestParameters.a.b.c", record) == [1, 2, 3]


def test_fan_out_with_no_values_is_absent():
    record = {**RECORD, "resources": [{"type": "x"}, 5, None]}
    assert get("resources.ARN", record) is None
    assert get("resources.ARN", {**RECORD, "resources": []}) is None


def test_missing_fields_are_absent():
    record = {"eventSource": "kinesisvideo.amazonaws.com", "eventName": "GetMedia"}
    assert get("errorCode", record) is None
    assert get("requestParameters", record) is None
    assert get("requestParameters.streamName", record) is None
    assert get("userIdentity.sessionContext.sessionIssuer.arn", record) is None
    assert get("userIdentity.arn.deeper") is None


def test_json_null_lazy_field_is_absent():
    assert get("requestParameters", {**RECORD, "requestParameters": None}) is None
    assert get("requestParameters.streamName", {**RECORD, "requestParameters": None}) is None


# ---------------------------------------------------------------- odd types never raise
@pytest.mark.parametrize(
    ("field", "value", "path", "expected"),
    [
        ("userIdentity", "arn:aws:iam::1:root", "userIdentity.sessionContext.sessionIssuer.arn", None),
        ("userIdentity", 5, "userIdentity.arn", None),
        ("userIdentity", None, "userIdentity.arn", None),
        ("requestParameters", "a string", "requestParameters.streamName", None),
        ("requestParameters", [1, 2], "requestParameters.streamName", None),
        ("requestParameters", [{"streamName": "a"}, 2], "requestParameters.streamName", ["a"]),
        ("resources", {"ARN": "not a list"}, "resources.ARN", "not a list"),
        ("resources", 7, "resources.ARN", None),
        ("resources", [[{"ARN": "deep"}]], "resources.ARN", ["deep"]),
    ],
)
def test_odd_types_along_a_path_never_raise(field: str, value: Any, path: str, expected: Any):
    assert get(path, {**RECORD, field: value}) == expected


def test_string_user_identity_has_no_nested_fields():
    assert get("userIdentity.arn", {**RECORD, "userIdentity": "arn:aws:iam::1:root"}) is None
    assert get("userIdentity", {**RECORD, "userIdentity": "arn:aws:iam::1:root"}) == "arn:aws:iam::1:root"


def test_a_list_of_user_identities_fans_out():
    assert get("userIdentity.arn", {**RECORD, "userIdentity": ["a", {"arn": "x"}]}) == ["x"]


def test_numeric_event_name_is_returned_as_is():
    record = {**RECORD, "eventName": 42, "eventSource": None}
    assert get("eventName", record) == 42
    assert get("eventSource", record) is None


def test_dig_into_non_containers_is_absent():
    assert dig("text", ("a",)) is None
    assert dig(5, ("a", "b")) is None
    assert dig({"a": None}, ("a", "b")) is None
    assert dig({"a": {"b": False}}, ("a", "b")) is False


# ---------------------------------------------------------------- invalid paths
def test_unknown_top_level_field_raises_with_did_you_mean_for_case_mistakes():
    with pytest.raises(
        ValueError, match=r"'eventsource' is not a CloudTrail record field \(did you mean 'eventSource'\?\)"
    ):
        field_getter("eventsource")
    with pytest.raises(ValueError, match="did you mean 'requestParameters'"):
        field_getter("RequestParameters.streamName")


def test_unknown_top_level_field_without_a_close_name_has_no_hint():
    with pytest.raises(ValueError, match="is not a CloudTrail record field") as caught:
        field_getter("streamName")
    assert "did you mean" not in str(caught.value)


def test_envelope_fields_are_not_record_fields():
    for name in ("Records", "detail", "Message", "s3"):
        with pytest.raises(ValueError, match="not a CloudTrail record field"):
            field_getter(name)


@pytest.mark.parametrize("path", ["", ".eventName", "userIdentity..arn", "userIdentity."])
def test_empty_path_segment_raises(path: str):
    with pytest.raises(ValueError, match="empty segment"):
        field_getter(path)


def test_every_record_field_compiles():
    for name in EAGER_FIELDS | LAZY_FIELDS:
        field_getter(name)
        field_getter(name + ".x.y")


# ---------------------------------------------------------------- lazy decoding and memo
def test_lazy_field_is_decoded_once_per_event():
    event = event_of(RECORD)
    first = event.lazy("requestParameters")
    assert event.lazy("requestParameters") is first
    getter = field_getter("requestParameters.startSelector")
    assert getter(event) is first["startSelector"]


def test_lazy_fields_are_independent_of_each_other():
    event = event_of(RECORD)
    assert event.lazy("responseElements") is None
    assert event.lazy("resources")[0]["type"] == "AWS::KinesisVideo::Stream"
    assert event.lazy("requestParameters")["streamName"] == "door"


def test_remember_computes_once_per_key_and_per_event():
    calls: list[Event] = []

    def compute(event: Event) -> int:
        calls.append(event)
        return len(calls)

    first, second = event_of(RECORD), event_of(RECORD)
    assert first.remember("k", compute) == 1
    assert first.remember("k", compute) == 1
    assert first.remember("other", compute) == 2
    assert second.remember("k", compute) == 3
    assert calls == [first, first, second]


def test_remember_caches_a_none_result():
    calls = []

    def compute(event: Event) -> None:
        calls.append(1)

    event = event_of(RECORD)
    assert event.remember("k", compute) is None
    assert event.remember("k", compute) is None
    assert calls == [1]


# ---------------------------------------------------------------- location
def test_location_describes_file_line_and_record():
    assert Location("f.json").describe() == "f.json"
    assert Location("f.json", 12).describe() == "f.json:12"
    assert Location("f.json", 12).describe(3) == "f.json:12 record 3"
    assert Location("q").describe(0) == "q record 0"


def test_event_where_and_repr_name_the_record():
    event = event_of(RECORD)
    assert event.where() == "t"
    assert repr(event) == "Event(kinesisvideo.amazonaws.com:GetMedia id=e-1 at t)"
