from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvs_sentinel.decode import decode_all
from kvs_sentinel.envelopes import (
    CLOUDTRAIL_DETAIL_TYPES,
    MAX_NESTING,
    ArrayChunk,
    Item,
    LogFileRef,
    Malformed,
    RecordsChunk,
    Skipped,
    normalise,
)
from kvs_sentinel.events import Event, Location


def record(event_id: str = "e-1", name: str = "GetMedia") -> dict[str, Any]:
    return {
        "eventVersion": "1.09",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": name,
        "eventID": event_id,
        "awsRegion": "eu-west-1",
    }


def run(data: Any, source: str = "t") -> list[Item]:
    text = data if isinstance(data, str | bytes) else json.dumps(data)
    return list(normalise(text, Location(source)))


def events(items: list[Item]) -> list[tuple[str, str, str]]:
    return [(i.doc.eventID, i.form, i.where()) for i in items if isinstance(i, Event)]


def eventbridge(detail: Any, detail_type: str = "AWS API Call via CloudTrail") -> dict[str, Any]:
    return {
        "version": "0",
        "detail-type": detail_type,
        "source": "aws.kinesisvideo",
        "account": "111122223333",
        "region": "eu-west-1",
        "detail": detail,
    }


def sns(message: Any, kind: str = "Notification") -> dict[str, Any]:
    text = message if isinstance(message, str) else json.dumps(message)
    return {"Type": kind, "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-1:1:t", "Message": text}


def cloudwatch(*messages: Any, kind: str = "DATA_MESSAGE") -> dict[str, Any]:
    return {
        "messageType": kind,
        "owner": "111122223333",
        "logGroup": "aws-cloudtrail-logs",
        "logEvents": [
            {"id": str(i), "timestamp": 0, "message": m if isinstance(m, str) else json.dumps(m)}
            for i, m in enumerate(messages)
        ],
    }


def s3_notification(*keys: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "trail-bucket"}, "object": {"key": key}},
            }
            for key in keys
        ]
    }


# ---------------------------------------------------------------- forms
def test_bare_record_is_one_event():
    assert events(run(record())) == [("e-1", "record", "t")]


def test_records_file_yields_each_record_with_its_index():
    items = run({"Records": [record("a"), record("b")]})
    assert events(items) == [("a", "records", "t record 0"), ("b", "records", "t record 1")]


def test_top_level_array_yields_each_element_with_its_index():
    assert events(run([record("a"), record("b")])) == [
        ("a", "record", "t record 0"),
        ("b", "record", "t record 1"),
    ]


@pytest.mark.parametrize("detail_type", sorted(CLOUDTRAIL_DETAIL_TYPES))
def test_eventbridge_cloudtrail_event_yields_its_detail(detail_type: str):
    items = run(eventbridge(record(), detail_type))
    assert events(items) == [("e-1", "eventbridge", "t")]
    assert isinstance(items[0], Event)
    assert items[0].envelope is not None
    assert items[0].envelope.account == "111122223333"


def test_eventbridge_without_detail_object_is_malformed():
    assert run(eventbridge("not an object")) == [
        Malformed("t", "EventBridge CloudTrail event has no `detail` object")
    ]


def test_non_cloudtrail_eventbridge_event_is_skipped():
    assert run(eventbridge({"state": "running"}, "EC2 Instance State-change Notification")) == [
        Skipped("eventbridge_not_cloudtrail", "t")
    ]


def test_eventbridge_s3_object_created_is_a_log_file_ref():
    doc = {
        **eventbridge(
            {"bucket": {"name": "b"}, "object": {"key": "AWSLogs/1/CloudTrail/x.json.gz"}}, "Object Created"
        ),
        "source": "aws.s3",
    }
    assert run(doc) == [LogFileRef("b", "AWSLogs/1/CloudTrail/x.json.gz", "t")]


@pytest.mark.parametrize(
    ("inner", "form"),
    [
        (record(), "sns/record"),
        ({"Records": [record()]}, "sns/records"),
        (eventbridge(record()), "sns/eventbridge"),
        (cloudwatch(record()), "sns/cloudwatch_logs/record"),
        (
            {"Events": [{"EventId": "e-1", "CloudTrailEvent": json.dumps(record())}]},
            "sns/lookup_events/record",
        ),
        (sns(record()), "sns/sns/record"),
    ],
)
def test_sns_notification_unwraps_every_form(inner: dict[str, Any], form: str):
    items = run(sns(inner))
    assert len(items) == 1
    assert isinstance(items[0], Event)
    assert (items[0].doc.eventID, items[0].form) == ("e-1", form)


def test_sns_subscription_confirmation_is_skipped():
    assert run(sns("You have chosen to subscribe", "SubscriptionConfirmation")) == [
        Skipped("sns_control_message", "t")
    ]


def test_sns_message_that_is_not_a_string_is_malformed():
    doc = {"Type": "Notification", "Message": {"eventSource": "x"}}
    assert run(doc) == [Malformed("t", "SNS `Message` is not a string")]


def test_cloudwatch_logs_data_message_yields_each_log_event():
    items = run(cloudwatch(record("a"), record("b")))
    assert events(items) == [
        ("a", "cloudwatch_logs/record", "t record 0"),
        ("b", "cloudwatch_logs/record", "t record 1"),
    ]


def test_cloudwatch_logs_control_message_is_skipped():
    assert run(cloudwatch(kind="CONTROL_MESSAGE")) == [Skipped("cloudwatch_logs_control_message", "t")]


def test_cloudwatch_logs_event_without_message_string_loses_only_that_event():
    doc = cloudwatch(record("a"), record("c"))
    doc["logEvents"].insert(1, {"id": "x", "timestamp": 0, "message": 5})
    items = run(doc)
    assert events(items) == [
        ("a", "cloudwatch_logs/record", "t record 0"),
        ("c", "cloudwatch_logs/record", "t record 2"),
    ]
    assert Malformed("t record 1", "CloudWatch Logs event without a `message` string") in items


def test_cloudwatch_logs_data_message_without_log_events_is_malformed():
    items = run({"messageType": "DATA_MESSAGE", "owner": "1"})
    assert len(items) == 1
    assert isinstance(items[0], Malformed)


def test_lookup_events_output_yields_each_cloudtrail_event():
    doc = {
        "Events": [
            {"EventId": "a", "CloudTrailEvent": json.dumps(record("a"))},
            {"EventId": "x", "CloudTrailEvent": None},
            {"EventId": "b", "CloudTrailEvent": json.dumps(record("b"))},
        ]
    }
    items = run(doc)
    assert events(items) == [
        ("a", "lookup_events/record", "t record 0"),
        ("b", "lookup_events/record", "t record 2"),
    ]
    assert Malformed("t record 1", "lookup-events entry without a `CloudTrailEvent` string") in items


def test_s3_event_notification_is_a_log_file_ref_with_url_decoded_key():
    items = run(s3_notification("AWSLogs/1/CloudTrail/eu-west-1/my+file%3A1.json.gz"))
    assert items == [
        LogFileRef("trail-bucket", "AWSLogs/1/CloudTrail/eu-west-1/my file:1.json.gz", "t record 0")
    ]


def test_bare_s3_event_record_is_a_log_file_ref():
    doc = s3_notification("k%2Fx")["Records"][0]
    assert run(doc) == [LogFileRef("trail-bucket", "k/x", "t")]


def test_s3_event_notification_for_a_digest_file_is_skipped():
    items = run(
        s3_notification("AWSLogs/1/CloudTrail-Digest/eu-west-1/d.json.gz", "AWSLogs/1/CloudTrail/x.json.gz")
    )
    assert items == [
        Skipped("digest_file", "t record 0"),
        LogFileRef("trail-bucket", "AWSLogs/1/CloudTrail/x.json.gz", "t record 1"),
    ]


def test_cloudtrail_log_file_notification_yields_one_ref_per_key():
    doc = {
        "s3Bucket": "trail-bucket",
        "s3ObjectKey": [
            "AWSLogs/1/CloudTrail/a.json.gz",
            "CloudTrail-Digest/d.json.gz",
            "AWSLogs/1/CloudTrail/b.json.gz",
        ],
    }
    assert run(doc) == [
        LogFileRef("trail-bucket", "AWSLogs/1/CloudTrail/a.json.gz", "t"),
        Skipped("digest_file", "t"),
        LogFileRef("trail-bucket", "AWSLogs/1/CloudTrail/b.json.gz", "t"),
    ]


def test_cloudtrail_log_file_notification_with_a_single_key_string():
    assert run({"s3Bucket": "b", "s3ObjectKey": "k.json.gz"}) == [LogFileRef("b", "k.json.gz", "t")]


def test_digest_file_content_is_skipped():
    digest = {
        "awsAccountId": "111122223333",
        "digestStartTime": "2024-01-01T00:00:00Z",
        "digestEndTime": "2024-01-01T01:00:00Z",
        "digestS3Bucket": "trail-bucket",
        "logFiles": [],
    }
    assert run(digest) == [Skipped("digest_file", "t")]


def test_s3_test_event_is_skipped():
    doc = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-01-01T00:00:00Z", "Bucket": "b"}
    assert run(doc) == [Skipped("s3_test_event", "t")]
    assert run(sns(doc)) == [Skipped("s3_test_event", "t")]


def test_unknown_object_is_malformed():
    assert run({"hello": "world"}) == [Malformed("t", "not a CloudTrail record nor a known envelope")]


def test_location_line_appears_in_where():
    items = list(normalise(json.dumps({"Records": [record()]}), Location("f.json", 7)))
    assert events(items) == [("e-1", "records", "f.json:7 record 0")]


# ---------------------------------------------------------------- malformed input
def test_invalid_json_reports_line_and_column_of_multi_line_document():
    items = run('{\n  "eventSource": "x",\n  "eventName": @\n}')
    assert len(items) == 1
    assert isinstance(items[0], Malformed)
    assert items[0].where == "t"
    assert "at line 3 column 16" in items[0].error


def test_invalid_single_line_json_is_malformed():
    items = run('{"eventSource": ')
    assert len(items) == 1
    assert isinstance(items[0], Malformed)


def test_records_that_is_not_a_list_is_malformed():
    assert run({"Records": {"eventSource": "x"}}) == [Malformed("t", "`Records` is not a list")]
    assert run({"Records": "x"}) == [Malformed("t", "`Records` is not a list")]


def test_non_object_element_among_records_loses_only_that_element():
    items = run({"Records": [record("a"), 5, None, [record("x")], record("b")]})
    assert events(items) == [("a", "records", "t record 0"), ("b", "records", "t record 4")]
    assert [i.where for i in items if isinstance(i, Malformed)] == ["t record 1", "t record 2", "t record 3"]


def test_record_without_source_or_name_loses_only_that_element():
    items = run({"Records": [record("a"), {"eventID": "x"}, record("b")]})
    assert events(items) == [("a", "records", "t record 0"), ("b", "records", "t record 2")]
    assert Malformed("t record 1", "record has neither eventSource nor eventName") in items


def test_bad_array_element_loses_only_that_element():
    items = run(f'[{json.dumps(record("a"))}, 3, "x", {{}}, {json.dumps(record("b"))}]')
    assert events(items) == [("a", "record", "t record 0"), ("b", "record", "t record 4")]
    assert sum(isinstance(i, Malformed) for i in items) == 3


def test_sns_nesting_up_to_max_is_unwrapped_and_deeper_is_malformed():
    doc: dict[str, Any] = record()
    for _ in range(MAX_NESTING):
        doc = sns(doc)
    assert events(run(doc)) == [("e-1", "sns/" * MAX_NESTING + "record", "t")]
    assert run(sns(doc)) == [Malformed("t", f"envelopes nested deeper than {MAX_NESTING}")]


@pytest.mark.parametrize("text", ["5", '"text"', "null", "true", "1.5"])
def test_bare_scalar_is_malformed(text: str):
    assert run(text) == [Malformed("t", "expected a JSON object or array, found a bare value")]


def test_empty_array_yields_nothing():
    assert run("[]") == []


def test_deeply_nested_json_is_malformed_not_a_crash():
    items = run('{"eventSource": "x", "requestParameters": ' + "[" * 5000 + "]" * 5000 + "}")
    assert len(items) == 1
    assert isinstance(items[0], Malformed)


def test_eventbridge_with_non_string_detail_type_does_not_raise():
    items = run({"detail-type": ["AWS API Call via CloudTrail"], "detail": record()})
    assert len(items) == 1
    assert isinstance(items[0], Skipped | Malformed)


# ---------------------------------------------------------------- chunks of streamed files
def test_records_chunk_indexes_start_at_the_chunk_offset():
    data = json.dumps([record("a"), 7, record("b")]).encode()
    items = list(decode_all(RecordsChunk(data, Location("f"), 100)))
    assert events(items) == [("a", "records", "f record 100"), ("b", "records", "f record 102")]
    assert Malformed("f record 101", "record is not a JSON object") in items


def test_array_chunk_indexes_start_at_the_chunk_offset():
    data = json.dumps([record("a"), sns(record("b"))]).encode()
    items = list(decode_all(ArrayChunk(data, Location("f"), 10)))
    assert events(items) == [("a", "record", "f record 10"), ("b", "sns/record", "f record 11")]


def test_unreadable_array_chunk_is_malformed():
    items = list(decode_all(ArrayChunk(b"[{", Location("f"), 3)))
    assert len(items) == 1
    assert isinstance(items[0], Malformed)
    assert items[0].where == "f record 3"


# ---------------------------------------------------------------- robustness
ENVELOPE_KEYS = [
    "eventSource", "eventName", "eventVersion", "Records", "detail-type", "detail", "source", "Type",
    "Message", "messageType", "logEvents", "Events", "CloudTrailEvent", "s3Bucket", "s3ObjectKey", "s3",
    "Event", "digestS3Bucket", "bucket", "object", "key", "name", "message", "userIdentity",
]  # fmt: skip
INTERESTING = st.sampled_from(
    ["aws:s3", "aws.s3", "Notification", "DATA_MESSAGE", "Object Created", "s3:TestEvent",
     "AWS API Call via CloudTrail", "CloudTrail-Digest/x"]
)  # fmt: skip
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
json_values = st.recursive(
    scalars | st.text(max_size=8) | INTERESTING,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(ENVELOPE_KEYS) | st.text(max_size=4), children, max_size=5)
        | children.map(json.dumps)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_normalise_never_raises_on_arbitrary_json(value: Any):
    for item in normalise(json.dumps(value), Location("t")):
        assert isinstance(item, Event | Skipped | Malformed | LogFileRef)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_normalise_never_raises_on_arbitrary_bytes(data: bytes):
    for item in normalise(data, Location("t")):
        assert isinstance(item, Event | Skipped | Malformed | LogFileRef)
