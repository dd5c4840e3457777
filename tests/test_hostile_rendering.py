"""Issue 10: no event value becomes formatting, a link, a mention, an emoji or reordered text, in any
field of any sink. Every event-derived field of an alert gets an adversarial value; each sink's output is
checked field by field."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvs_sentinel.alerts import Alert
from kvs_sentinel.config import load_config
from kvs_sentinel.engine import Engine, Outcome, Processor
from kvs_sentinel.envelopes import Document
from kvs_sentinel.events import Location
from kvs_sentinel.reveal import HIDDEN, reveal
from kvs_sentinel.sinks.slack import console_url, slack_message
from kvs_sentinel.sinks.slack_text import WORD_JOINER
from kvs_sentinel.sinks.sns import message_attributes, sns_message, sns_subject
from kvs_sentinel.sinks.stdout import JsonLinesSink
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import FakeSlackWebhook
from tests.support.alert_samples import make_sink, sample_alert
from tests.support.logging_reset import fresh_logging

__all__ = ["fresh_logging"]

HOSTILE = [
    "*bold*",
    "_italic_",
    "~strike~",
    "`code`",
    "```block```",
    "> quoted",
    "https://evil.example/login",
    "http://10.0.0.1:8080/x",
    "evil.example",
    "www.evil.example",
    "mailto:a@evil.example",
    "<!channel>",
    "<!here|here>",
    "<@U123>",
    "<#C123|general>",
    "<!subteam^S123>",
    "<http://x|y>",
    "<https://evil.example|View in the CloudTrail console>",
    "&lt;!channel&gt;",
    ":rotating_light:",
    ":+1:",
    "@here",
    "@channel",
    "@everyone",
    "#general",
    "admin\u202egnp.exe",
    "\u2066isolated\u2069",
    "\u061calm\u200elrm\u200frlm",
    "\u202a\u202b\u202c\u202d",
    "tag\U000e0041\U000e0042\U000e007f",
    "zero\u200bwidth\u200d\ufeff",
    "line\nbreak\r\nfeed",
    "para\u2028graph\u2029",
    "nul\x00bel\x07del\x7fcsi\x9b",
    "\u3164filler",
    "evil\u3002example",
    "\uff45\uff56\uff49\uff4c\uff0e\uff43\uff4f\uff4d",  # full-width evil.com
]
EVENT_FIELDS = (
    "event_id",
    "event_time",
    "event_source",
    "event_name",
    "principal",
    "principal_type",
    "source_ip",
    "user_agent",
    "access_key_id",
    "account",
    "region",
    "resource",
    "error_code",
    "error_message",
)
hostile_values = st.lists(st.sampled_from(HOSTILE) | st.text(max_size=8), min_size=1, max_size=4).map(
    " ".join
)
CONSOLE_LINK = re.compile(
    r"<https://[a-z0-9.-]+/cloudtrailv2/home\?region=[a-z0-9-]+#/events/[0-9A-Za-z-]+\|"
)
CODE_SPAN = re.compile(r"`[^`]*`")
MARKERS = re.compile(r"[*_~`]")
LINK_PUNCTUATION = re.compile(r"[.:@#\u3002\uff0e\uff61\uff1a\uff20\uff03]")


def hostile_alert(value: str) -> Alert:
    """Every field taken from the event holds `value` (with a field-specific suffix); the summary too."""
    fields = {name: f"{value} {name}" for name in EVENT_FIELDS}
    return sample_alert(**fields, summary=f"Producer {value} asked for a GET_MEDIA endpoint.")


def texts(node: Any, kind: str | None = None) -> list[tuple[str | None, dict[str, Any]]]:
    """(the object's type, the object) of every Slack text object in a payload."""
    if isinstance(node, dict):
        found = [(node.get("type"), node)] if isinstance(node.get("text"), str) and "type" in node else []
        return found + [t for value in node.values() for t in texts(value)]
    if isinstance(node, list):
        return [t for value in node for t in texts(value)]
    return []


def assert_entities_only(text: str) -> None:
    """No raw `<` or `>`; every `&` starts one of Slack's three entities."""
    assert "<" not in text
    assert ">" not in text
    assert re.sub(r"&(amp|lt|gt);", "", text).count("&") == 0, text


def assert_links_broken(text: str) -> None:
    """Each `.` `:` `@` `#` is followed by a word joiner, a space or nothing: no URL, host, emoji, mention."""
    for match in LINK_PUNCTUATION.finditer(text):
        after = text[match.end() : match.end() + 1]
        assert after in ("", " ", WORD_JOINER, "…"), (text, match.start())
    assert HIDDEN.search(text.replace(WORD_JOINER, "")) is None, "only our word joiners are hidden"


def skeleton(text: str) -> str:
    return CODE_SPAN.sub("`v`", text)


def benign_twin(alert: Alert) -> Alert:
    """The same alert with every event value replaced by `v` (region and event id kept when they are
    what AWS issues: then they make our console link, the same in both)."""
    keep = ("region", "event_id") if console_url(alert) else ()
    changes = {name: "v" for name in EVENT_FIELDS if getattr(alert, name) and name not in keep}
    return msgspec.structs.replace(alert, **changes)


def assert_slack_inert(payload: dict[str, Any], alert: Alert) -> None:
    benign = slack_message(benign_twin(alert))
    benign_mrkdwn = [skeleton(obj["text"]) for kind, obj in texts(benign["blocks"]) if kind == "mrkdwn"]
    hostile_mrkdwn = [obj["text"] for kind, obj in texts(payload["blocks"]) if kind == "mrkdwn"]
    # every event value sits inside inline code: outside it, the text is exactly our own
    assert [skeleton(text) for text in hostile_mrkdwn] == benign_mrkdwn
    for obj in (obj for kind, obj in texts(payload["blocks"]) if kind == "mrkdwn"):
        assert obj["verbatim"] is True
        for span in CODE_SPAN.findall(CONSOLE_LINK.sub("", obj["text"])):
            assert_entities_only(span)
            assert HIDDEN.search(span) is None
    for obj in (obj for kind, obj in texts(payload["blocks"]) if kind == "plain_text"):
        assert obj["emoji"] is False
        assert_entities_only(obj["text"])
        assert_links_broken(obj["text"])
    assert payload["mrkdwn"] is False
    assert_entities_only(payload["text"])
    assert_links_broken(payload["text"])
    assert MARKERS.search(payload["text"]) is None, "no formatting marker in the notification"
    # and the values are shown, not dropped: the user agent field reads exactly the revealed value
    fields = payload["blocks"][2]["fields"]
    agent = next(f["text"] for f in fields if f["text"].startswith("*User agent*\n"))
    shown = html.unescape(agent.removeprefix("*User agent*\n").strip("`"))
    if not shown.endswith("…"):
        assert shown == reveal(alert.user_agent or "").replace("`", "ˋ")  # noqa: RUF001


def assert_json_inert(line: str, alert: Alert) -> None:
    assert HIDDEN.search(line) is None, "no raw hidden character in the JSON"
    assert json.loads(line) == json.loads(msgspec.json.encode(alert)), "the exact values, for forensics"


def assert_sns_inert(alert: Alert) -> None:
    subject = sns_subject(alert)
    assert subject.isascii()
    assert subject.isprintable()
    for attribute in message_attributes(alert).values():
        assert HIDDEN.search(attribute["StringValue"]) is None
    assert_json_inert(sns_message(alert), alert)


@given(hostile_values)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_no_hostile_value_becomes_markup_in_slack_or_sns(value: str) -> None:
    alert = hostile_alert(value)
    assert_slack_inert(slack_message(alert), alert)
    assert_sns_inert(alert)


async def test_every_named_hostile_class_is_inert_in_every_sink(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonLinesSink(str(path))
    alerts = [hostile_alert(value) for value in HOSTILE]

    for alert in alerts:
        await sink.send(alert)
    await sink.aclose()
    lines = path.read_text().splitlines()
    assert len(lines) == len(alerts)
    for alert, line in zip(alerts, lines, strict=True):
        assert_slack_inert(slack_message(alert), alert)
        assert_sns_inert(alert)
        assert_json_inert(line, alert)


def test_bidi_and_tag_characters_are_shown_not_obeyed() -> None:
    alert = hostile_alert("admin\u202egnp.exe tag\U000e0041")
    fields = slack_message(alert)["blocks"][2]["fields"]
    principal = next(f["text"] for f in fields if f["text"].startswith("*Principal*"))
    assert "admin\\u202egnp.exe tag\\U000e0041" in principal
    assert "admin\\u202egnp.exe" in sns_subject(sample_alert(title="admin\u202egnp.exe"))


async def test_a_hostile_cloudtrail_event_reaches_slack_inert() -> None:
    processor = Processor(Engine(load_config().detectors), RunStats())
    value = " ".join(HOSTILE)
    event = {
        "eventVersion": "1.08",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "GetMedia",
        "eventID": "0f6c2f8e-1111-4a4a-9b9b-000000000002",
        "eventTime": "2026-02-03T10:00:00Z",
        "awsRegion": "eu-west-1",
        "recipientAccountId": "111122223333",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": value,
        "userIdentity": {"type": "AssumedRole", "arn": f"arn:aws:sts::111122223333:assumed-role/cam/{value}"},
        "requestParameters": {"streamName": value},
    }
    outcome = processor.process(Document(json.dumps(event), Location("hostile.json")), Outcome())
    assert outcome.alerts
    async with FakeSlackWebhook() as slack:
        sink = make_sink(slack.url)
        try:
            for alert in outcome.alerts:
                await sink.send(alert)
        finally:
            await sink.aclose()
        assert len(slack.payloads) == len(outcome.alerts)
        for payload, alert in zip(slack.payloads, outcome.alerts, strict=True):
            assert_slack_inert(payload, alert)
