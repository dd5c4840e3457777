"""What the fake Slack webhook was sent, read back as alerts."""

from __future__ import annotations

import json
import re

from kvs_sentinel.testing import FakeSlackWebhook


def slack_alerts(server: FakeSlackWebhook, *, accepted_only: bool = True) -> list[tuple[str, str]]:
    """(detector, event id) of every alert Slack accepted (or, with accepted_only=False, was sent)."""
    found = []
    payloads = server.payloads if accepted_only else [post.payload for post in server.posts if post.payload]
    for payload in payloads:
        text = json.dumps(payload)
        detector = re.search(r"detector `([a-z0-9-]+)`", text)
        event = re.search(r"event `([0-9a-f-]{36})`", text)
        assert detector, text[:500]
        assert event, text[:500]
        found.append((detector.group(1), event.group(1)))
    return found
