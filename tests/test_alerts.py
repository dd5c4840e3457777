"""What an alert says about the event behind it."""

from __future__ import annotations

import json

import msgspec
import pytest

from kvs_sentinel.alert_fields import EVENT_FIELDS
from kvs_sentinel.alerts import Alert, event_fields, is_denial, resource_of
from kvs_sentinel.events import DOC_DECODER, Event, Location


@pytest.mark.parametrize(
    ("code", "denied"),
    [
        ("AccessDenied", True),
        ("AccessDeniedException", True),
        ("Client.UnauthorizedOperation", True),
        ("AuthorizationError", True),
        ("TrailNotFoundException", False),
        ("ThrottlingException", False),
        ("ResourceNotFoundException", False),
    ],
)
def test_only_permission_errors_are_called_denials(code: str, denied: bool) -> None:
    assert is_denial(code) is denied


@pytest.mark.parametrize(
    ("parameters", "resource"),
    [
        (
            {"streamARN": "arn:aws:kinesisvideo:us-east-1:1:stream/a/1", "streamName": "a"},
            "arn:aws:kinesisvideo:us-east-1:1:stream/a/1",
        ),
        ({"rule": "kvs-sentinel-cloudtrail", "ids": ["t1"]}, "kvs-sentinel-cloudtrail"),
        ({"trailName": "org-audit"}, "org-audit"),
        ({"nothing": "here"}, None),
    ],
)
def test_resource_is_the_most_specific_name_in_the_request(
    parameters: dict[str, object], resource: str | None
) -> None:
    doc = DOC_DECODER.decode(
        b'{"eventSource": "x.amazonaws.com", "eventName": "X", "requestParameters": '
        + json.dumps(parameters).encode()
        + b"}"
    )
    assert resource_of(Event(doc, "record", Location("t"), None)) == resource  # type: ignore[arg-type]


def test_every_event_field_is_taken_from_the_event_and_is_a_field_of_the_alert() -> None:
    doc = DOC_DECODER.decode(b'{"eventSource": "kinesisvideo.amazonaws.com", "eventName": "GetMedia"}')
    fields = event_fields(Event(doc, "record", Location("t"), None))  # type: ignore[arg-type]
    assert tuple(fields) == EVENT_FIELDS
    assert set(EVENT_FIELDS) <= set(
        msgspec.structs.fields(Alert) and (f.name for f in msgspec.structs.fields(Alert))
    )
