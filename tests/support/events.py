"""CloudTrail events the tests send: a producer reading video, bare and in an EventBridge envelope."""

from __future__ import annotations

from typing import Any


def media_read(n: int) -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "GetMedia",
        "eventID": f"00000000-0000-4000-8000-{n:012d}",
        "eventTime": "2026-02-03T10:00:00Z",
        "awsRegion": "eu-west-1",
        "recipientAccountId": "111122223333",
        "sourceIPAddress": "198.51.100.7",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/kvs-producer-cam1/s",
        },
        "requestParameters": {"streamName": f"cam-{n}"},
    }


def event_id(n: int) -> str:
    return str(media_read(n)["eventID"])


def eventbridge(n: int) -> dict[str, Any]:
    return in_eventbridge(media_read(n), n)


def in_eventbridge(record: dict[str, Any], n: int) -> dict[str, Any]:
    """A KVS record in the envelope EventBridge delivers it in (id `eb-N`)."""
    return {
        "version": "0",
        "id": f"eb-{n}",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.kinesisvideo",
        "account": record["recipientAccountId"],
        "time": record["eventTime"],
        "region": record["awsRegion"],
        "resources": [],
        "detail": record,
    }
