"""The Slack sink against a real local HTTP server that behaves like Slack's webhook endpoint."""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from kvs_sentinel.config import load_config
from kvs_sentinel.engine import Engine, Outcome, Processor
from kvs_sentinel.envelopes import Document
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.events import Location
from kvs_sentinel.redact import redact, redact_url
from kvs_sentinel.reveal import reveal_in_json
from kvs_sentinel.sinks.shared_pacing import SharedPacer
from kvs_sentinel.sinks.slack import (
    FIELD_LIMIT,
    HEADER_LIMIT,
    SECTION_LIMIT,
    Pacer,
    SlackConfig,
    SlackSink,
    accepted,
    slack_message,
)
from kvs_sentinel.state.base import SharedState, StateError
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import FakeClock, FakeSlackWebhook, SlackReply
from tests.support.alert_samples import make_sink, sample_alert

SNAPSHOT = Path(__file__).parent / "data" / "slack_payload_snapshot.json"
ATTACK = "<!channel> <https://evil.example|Click> & *x*"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackWebhook]:
    async with FakeSlackWebhook() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clocked_slack(clock: FakeClock) -> AsyncIterator[FakeSlackWebhook]:
    async with FakeSlackWebhook(clock=clock) as server:
        yield server


# ------------------------------------------------------------------ the message


def test_block_kit_payload_matches_the_snapshot() -> None:
    payload = slack_message(sample_alert())
    if os.environ.get("UPDATE_SNAPSHOTS"):
        # hidden characters (the word joiners that break links) written as escapes, to show in a diff
        written = json.dumps(payload, indent=2, ensure_ascii=False).encode()
        SNAPSHOT.write_bytes(reveal_in_json(written) + b"\n")
    assert payload == json.loads(SNAPSHOT.read_text())


async def test_the_server_receives_exactly_the_snapshot_payload(slack: FakeSlackWebhook) -> None:
    sink = make_sink(slack.url)
    try:
        await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert slack.payloads == [json.loads(SNAPSHOT.read_text())]


def test_message_puts_severity_and_title_first_and_links_the_event_in_the_console() -> None:
    payload = slack_message(sample_alert())
    header = payload["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "CRITICAL · Producer asked for a video-reading endpoint"
    labels = [f["text"].split("\n")[0] for f in payload["blocks"][2]["fields"]]
    assert labels == [
        "*Principal*",
        "*Action*",
        "*Resource*",
        "*Source IP*",
        "*Account / region*",
        "*Time*",
        "*User agent*",
        "*Access key*",
        "*Denied*",
        "*Escalated*",
    ]
    context = " ".join(e["text"] for e in payload["blocks"][-1]["elements"])
    assert "`kvs-producer-consumer-endpoint`" in context
    assert "`6b1e8f3a-2c44-4f0e-9d51-0c7f5b2a9e10`" in context
    assert (
        "<https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1"
        "#/events/6b1e8f3a-2c44-4f0e-9d51-0c7f5b2a9e10|View in the CloudTrail console>" in context
    )
    assert payload["text"].startswith("[CRITICAL] Producer asked for a video-reading endpoint: Producer")
    assert payload["unfurl_links"] is False


def test_forged_region_or_event_id_gets_no_console_link() -> None:
    for changes in ({"region": "eu-west-1|evil"}, {"event_id": "x>|<https://evil.example"}):
        payload = slack_message(sample_alert(**changes))
        context = " ".join(e["text"] for e in payload["blocks"][-1]["elements"])
        assert "console.aws.amazon.com" not in context


def live_markup(payload: dict[str, Any]) -> list[str]:
    """Every `<...>` Slack would parse, and every mrkdwn formatting run outside inline code."""
    found = []
    for text in _texts(payload):
        found += [m for m in re.findall(r"<[^>]*>", text) if "console.aws.amazon.com" not in m]
        outside_code = re.sub(r"`[^`]*`", "", text)
        found += re.findall(r"\*x\*", outside_code)
    return found


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [
            t
            for key, value in node.items()
            for t in ([value] if key == "text" and isinstance(value, str) else _texts(value))
        ]
    if isinstance(node, list):
        return [t for value in node for t in _texts(value)]
    return []


async def test_attacker_user_agent_yields_no_live_markup(slack: FakeSlackWebhook) -> None:
    loaded = load_config()
    processor = Processor(Engine(loaded.detectors), RunStats())
    event = {
        "eventVersion": "1.08",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "GetMedia",
        "eventID": "0f6c2f8e-1111-4a4a-9b9b-000000000001",
        "eventTime": "2026-02-03T10:00:00Z",
        "awsRegion": "eu-west-1",
        "recipientAccountId": "111122223333",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": ATTACK,
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/kvs-producer-cam1/<!here>",
        },
        "requestParameters": {"streamName": "front-door <https://evil.example|x>"},
    }
    outcome = processor.process(Document(json.dumps(event), Location("attack.json")), Outcome())
    assert outcome.alerts, "the shipped pack alerts on a producer reading media from outside"
    sink = make_sink(slack.url)
    try:
        for alert in outcome.alerts:
            await sink.send(alert)
    finally:
        await sink.aclose()
    assert len(slack.payloads) == len(outcome.alerts)
    for payload in slack.payloads:
        assert live_markup(payload) == []
        raw = json.dumps(payload)
        assert "<!channel>" not in raw
        assert "<!here>" not in raw
        assert "<https://evil" not in raw
        fields = payload["blocks"][2]["fields"]
        agent = next(f["text"] for f in fields if f["text"].startswith("*User agent*"))
        assert agent == "*User agent*\n`&lt;!channel&gt; &lt;https://evil.example|Click&gt; &amp; *x*`"


def test_backticks_in_a_value_cannot_close_the_code_span() -> None:
    payload = slack_message(sample_alert(user_agent="a` *bold* `b"))
    agent = next(f["text"] for f in payload["blocks"][2]["fields"] if "User agent" in f["text"])
    assert agent.count("`") == 2
    assert "*bold*" not in re.sub(r"`[^`]*`", "", agent)


def test_huge_values_are_clipped_to_slack_limits_without_broken_entities() -> None:
    huge = "<&>" * 20_000
    payload = slack_message(
        sample_alert(user_agent=huge, summary=huge, error_message=huge, principal=huge, title=huge)
    )
    blocks = payload["blocks"]
    assert len(blocks[0]["text"]["text"]) <= HEADER_LIMIT
    assert len(blocks[1]["text"]["text"]) <= SECTION_LIMIT
    assert len(blocks[2]["fields"]) <= 10
    for text in _texts(payload):
        assert len(text) <= SECTION_LIMIT
        assert not re.search(r"&[a-z]{0,3}…", text), "an entity was cut in half"
    assert all(len(f["text"]) <= FIELD_LIMIT for f in blocks[2]["fields"])


# ------------------------------------------------------------------ delivery


async def test_posts_are_paced_to_one_per_second(clock: FakeClock, clocked_slack: FakeSlackWebhook) -> None:
    sink = make_sink(clocked_slack.url, clock)
    try:
        for n in range(4):
            await sink.send(sample_alert(event_id=f"e{n}"))
    finally:
        await sink.aclose()
    times = [post.at for post in clocked_slack.posts]
    assert len(times) == 4
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [1.0, 1.0, 1.0]


async def test_sinks_sharing_a_webhook_share_its_pace(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    pacer = Pacer(clock, 1.0)
    config = SlackConfig.model_validate({"webhook_url": clocked_slack.url})
    one = SlackSink("one", config, clock=clock, pacer=pacer)
    two = SlackSink("two", config, clock=clock, pacer=pacer)
    try:
        for n in range(3):
            await one.send(sample_alert(event_id=f"a{n}"))
            await two.send(sample_alert(event_id=f"b{n}"))
    finally:
        await one.aclose()
        await two.aclose()
    times = [post.at for post in clocked_slack.posts]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))


def task_sink(name: str, shared: SharedState, url: str, clock: FakeClock) -> SlackSink:
    """One ECS task's Slack sink, pacing 1 post/s through `shared` (on the fake clock)."""
    pacer = SharedPacer(Pacer(clock, 1.0), shared, url, 1.0, clock, wall=clock.monotonic)
    return SlackSink(name, SlackConfig.model_validate({"webhook_url": url}), clock=clock, pacer=pacer)


async def test_tasks_sharing_a_store_share_the_webhook_pace(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    store = MemoryStore()  # what two ECS tasks share: DynamoDB in production
    tasks = [task_sink(f"task{n}", SharedState(store), clocked_slack.url, clock) for n in (1, 2)]
    try:
        for n in range(3):
            for task in tasks:  # each task's own pacer would let both post at once
                await task.send(sample_alert(event_id=f"{task.name}-{n}"))
    finally:
        for task in tasks:
            await task.aclose()
    slots = [int(post.at) for post in clocked_slack.posts]
    assert len(slots) == 6
    assert len(set(slots)) == 6  # one post per second across both tasks


async def test_a_failing_store_leaves_each_task_its_own_pace(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    told: list[str] = []
    sink = task_sink("alone", SharedState(_UnreachableStore(), told.append), clocked_slack.url, clock)
    try:
        with capture_logs() as logs:
            for n in range(2):
                await sink.send(sample_alert(event_id=f"e{n}"))
    finally:
        await sink.aclose()
    assert len(clocked_slack.posts) == 2
    assert [entry["event"] for entry in logs].count("slack_pace_unshared") == 2
    assert told == ["slack_pace", "slack_pace"]


async def test_a_slot_that_ends_while_the_store_answers_is_not_posted_in(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    clock.now = 1000.9  # near the end of a 1 s slot
    store = _SlowStore(clock, answer_seconds=0.3)
    tasks = [task_sink(f"task{n}", SharedState(store), clocked_slack.url, clock) for n in (1, 2)]
    try:
        for task in tasks:
            await task.send(sample_alert(event_id=task.name))
    finally:
        for task in tasks:
            await task.aclose()
    # task one's first slot (1000) ended before the store said it was free: it posts in 1001, and task two
    # in 1002, not both in 1001
    assert [int(post.at) for post in clocked_slack.posts] == [1001, 1002]


class _SlowStore(MemoryStore):
    """A store whose counter answers `answer_seconds` later on the clock."""

    def __init__(self, clock: FakeClock, answer_seconds: float) -> None:
        super().__init__()
        self.clock = clock
        self.answer_seconds = answer_seconds

    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        self.clock.now += self.answer_seconds
        return await super().count(key, amount, now=now, ttl=ttl)


class _UnreachableStore(MemoryStore):
    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        raise StateError("dynamodb:t: update_item: could not connect", retryable=True)


async def test_real_time_pacing_holds_between_posts(slack: FakeSlackWebhook) -> None:
    config = SlackConfig.model_validate({"webhook_url": slack.url, "min_interval_seconds": 0.1})
    sink = SlackSink("real", config)
    started = time.monotonic()
    try:
        for n in range(3):
            await sink.send(sample_alert(event_id=f"r{n}"))
    finally:
        await sink.aclose()
    assert time.monotonic() - started >= 0.2  # three posts, two intervals: never faster


async def test_429_retry_after_is_honoured(clock: FakeClock, clocked_slack: FakeSlackWebhook) -> None:
    clocked_slack.script(SlackReply(429, "rate_limited", retry_after="7"))
    sink = make_sink(clocked_slack.url, clock)
    try:
        await sink.send(sample_alert())
        await sink.send(sample_alert(event_id="next"))
    finally:
        await sink.aclose()
    first, retried, following = (post.at for post in clocked_slack.posts)
    assert retried - first >= 7.0
    assert following - retried >= 1.0
    assert sink.counts.rate_limited == 1
    assert sink.counts.delivered == 2


async def test_a_retry_after_beyond_the_bound_gives_up_for_redelivery(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    clocked_slack.script(SlackReply(429, "rate_limited", retry_after="3600"))
    sink = make_sink(clocked_slack.url, clock)
    try:
        with pytest.raises(DeliveryError) as caught:
            await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert caught.value.retryable
    assert len(clocked_slack.posts) == 1


async def test_5xx_is_retried_with_exponential_backoff_and_jitter(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    clocked_slack.script(SlackReply(500, "rollup_error"), SlackReply(503, "service_unavailable"))
    sink = make_sink(clocked_slack.url, clock)
    try:
        with capture_logs() as logs:
            await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert [post.answered for post in clocked_slack.posts] == [500, 503, 200]
    backoffs = [entry["delay"] for entry in logs if entry["event"] == "delivery_retried"]
    assert 0.5 <= backoffs[0] <= 1.0
    assert 1.0 <= backoffs[1] <= 2.0
    times = [post.at for post in clocked_slack.posts]
    assert times[1] - times[0] >= backoffs[0] - 0.001
    assert times[2] - times[1] >= backoffs[1] - 0.001
    assert sink.counts.retries == 2
    assert sink.counts.delivered == 1


async def test_gives_up_after_max_attempts_with_a_retryable_error(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    clocked_slack.always(SlackReply(500, "rollup_error"))
    sink = make_sink(clocked_slack.url, clock, max_attempts=4)
    try:
        with capture_logs() as logs, pytest.raises(DeliveryError) as caught:
            await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert len(clocked_slack.posts) == 4
    assert caught.value.retryable
    assert "gave up after 4 attempts" in str(caught.value)
    assert sink.counts.failed_retryable == 1
    assert [entry["event"] for entry in logs].count("delivery_retried") == 3
    assert clocked_slack.path not in str(caught.value)
    assert all(clocked_slack.path not in str(entry) for entry in logs)


PROXY_PAGE = SlackReply(200, "<html><body>Sign in to continue</body></html>", content_type="text/html")


async def test_a_2xx_without_slacks_ok_is_not_a_delivery_and_fails_for_redelivery(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    clocked_slack.always(PROXY_PAGE)
    sink = make_sink(clocked_slack.url, clock, max_attempts=3)
    try:
        with capture_logs() as logs, pytest.raises(DeliveryError) as caught:
            await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert [post.answered for post in clocked_slack.posts] == [200, 200, 200]
    assert caught.value.retryable, "the SQS message must stay for redelivery"
    assert "gave up after 3 attempts" in str(caught.value)
    assert "without Slack's `ok`" in str(caught.value)
    assert sink.counts.delivered == 0
    assert sink.counts.failed_retryable == 1
    delays = [entry["delay"] for entry in logs if entry["event"] == "delivery_retried"]
    assert len(delays) == 2
    assert 0.5 <= delays[0] <= 1.0, "backed off like a 5xx"
    assert 1.0 <= delays[1] <= 2.0


async def test_a_proxy_page_then_slacks_ok_is_delivered_once(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    clocked_slack.script(SlackReply(204, ""), PROXY_PAGE)
    sink = make_sink(clocked_slack.url, clock)
    try:
        await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert [post.answered for post in clocked_slack.posts] == [204, 200, 200]
    assert len(clocked_slack.payloads) == 1
    assert sink.counts.delivered == 1
    assert sink.counts.retries == 2


def test_only_slacks_ok_answers_count_as_accepted() -> None:
    assert accepted("ok")
    assert accepted("ok\n")
    assert accepted('{"ok": true}')  # Workflow Builder webhooks
    for body in ("", "OK!", "<html>ok</html>", '{"ok": false}', '{"ok": "true"}', "[true]", "okay"):
        assert not accepted(body), body


@pytest.mark.parametrize(
    ("status", "error", "hint"),
    [
        (404, "no_service", "revoked"),
        (404, "channel_not_found", "deleted"),
        (410, "channel_is_archived", "archived"),
        (403, "invalid_token", "invalid"),
    ],
)
async def test_permanent_errors_fail_at_once_clearly_and_are_counted(
    clock: FakeClock, clocked_slack: FakeSlackWebhook, status: int, error: str, hint: str
) -> None:
    clocked_slack.script(SlackReply(status, error))
    sink = make_sink(clocked_slack.url, clock)
    try:
        with capture_logs() as logs, pytest.raises(DeliveryError) as caught:
            await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert len(clocked_slack.posts) == 1
    assert not caught.value.retryable
    assert f"HTTP {status} {error}" in str(caught.value)
    assert hint in str(caught.value)
    assert sink.counts.failed_permanent == 1
    failed = [entry for entry in logs if entry["event"] == "delivery_failed"]
    assert len(failed) == 1
    assert clocked_slack.path not in failed[0]["error"]
    assert "/services/T00000000/…/[redacted]" in failed[0]["error"]


async def test_slow_replies_time_out_and_are_retried(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    clocked_slack.script(SlackReply(hang=True))
    sink = make_sink(clocked_slack.url, clock, timeout_seconds=0.2)
    try:
        await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert [post.answered for post in clocked_slack.posts] == [0, 200]
    assert sink.counts.retries == 1
    assert sink.counts.delivered == 1


async def test_rejected_blocks_fall_back_to_plain_text(
    clock: FakeClock, clocked_slack: FakeSlackWebhook
) -> None:
    clocked_slack.script(SlackReply(400, "invalid_blocks"))
    sink = make_sink(clocked_slack.url, clock)
    try:
        await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert "blocks" not in clocked_slack.payloads[0]
    assert clocked_slack.payloads[0]["text"].startswith("[CRITICAL]")


async def test_an_unreachable_webhook_is_a_retryable_failure_without_the_secret(clock: FakeClock) -> None:
    server = FakeSlackWebhook()
    await server.start()
    url = server.url
    await server.close()  # nothing listens on that port any more
    sink = make_sink(url, clock, max_attempts=2)
    try:
        with pytest.raises(DeliveryError) as caught:
            await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert caught.value.retryable
    assert "XXXXXXXXXXXXXXXXXXXXXXXX" not in str(caught.value)


# ------------------------------------------------------------------ secrets


def test_webhook_urls_are_redacted_in_text() -> None:
    secret = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"
    assert redact_url(secret) == "https://hooks.slack.com/services/T0123ABCD/…/[redacted]"
    assert (
        redact(f"POST {secret} failed")
        == "POST https://hooks.slack.com/services/T0123ABCD/…/[redacted] failed"
    )
    assert redact_url("http://127.0.0.1:8080/services/x/y/z") == "http://127.0.0.1:8080/[redacted]"


def test_the_webhook_url_never_shows_in_config_reprs() -> None:
    secret = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"
    config = SlackConfig.model_validate({"webhook_url": secret})
    assert "abcdefghijklmnopqrstuvwx" not in repr(config)
    assert "abcdefghijklmnopqrstuvwx" not in str(config)


@pytest.mark.parametrize(
    "url", ["http://hooks.slack.com/services/T/B/X", "https://hooks.slack.com", "ftp://x/y"]
)
def test_webhook_url_must_be_https(url: str) -> None:
    with pytest.raises(ValueError, match="webhook_url"):
        SlackConfig.model_validate({"webhook_url": url})
