"""A sample alert with every field set, and a Slack sink built the way the tests need it."""

from __future__ import annotations

import random
from typing import Any

from kvs_sentinel.alerts import Alert
from kvs_sentinel.sinks.slack import SlackConfig, SlackSink
from kvs_sentinel.testing import FakeClock


def sample_alert(**changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "detector": "kvs-producer-consumer-endpoint",
        "severity": "critical",
        "title": "Producer asked for a video-reading endpoint",
        "summary": "Producer arn:aws:sts::111122223333:assumed-role/kvs-producer-cam1/s asked for a "
        "GET_MEDIA endpoint from 198.51.100.7. The call was denied (AccessDenied).",
        "practice": "least-privilege",
        "tags": ("kvs", "producer"),
        "event_id": "6b1e8f3a-2c44-4f0e-9d51-0c7f5b2a9e10",
        "event_time": "2026-02-03T10:15:42Z",
        "event_source": "kinesisvideo.amazonaws.com",
        "event_name": "GetDataEndpoint",
        "principal": "arn:aws:sts::111122223333:assumed-role/kvs-producer-cam1/s",
        "principal_type": "AssumedRole",
        "source_ip": "198.51.100.7",
        "user_agent": "aws-sdk-go-v2/1.30.0",
        "access_key_id": "ASIAEXAMPLEKEY123456",
        "account": "111122223333",
        "region": "eu-west-1",
        "resource": "front-door",
        "error_code": "AccessDenied",
        "error_message": "User is not authorized to perform kinesisvideo:GetDataEndpoint",
        "remediation": "Remove kinesisvideo read actions from the producer's role; revoke its sessions.",
        "escalated_because": "from outside the trusted networks",
    }
    fields.update(changes)
    return Alert(**fields)


def make_sink(url: str, clock: FakeClock | None = None, **options: Any) -> SlackSink:
    config = SlackConfig.model_validate({"webhook_url": url, "backoff_base_seconds": 1.0, **options})
    clock = clock or FakeClock()
    return SlackSink("security-slack", config, clock=clock, rng=random.Random(7))
