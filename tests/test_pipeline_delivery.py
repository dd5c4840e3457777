"""The pipeline with routing, suppression and grouping: what is acked, what is retried, what is sent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kvs_sentinel.cli import main
from kvs_sentinel.config import load_config
from kvs_sentinel.engine import Engine, Processor
from kvs_sentinel.envelopes import Document
from kvs_sentinel.events import Location
from kvs_sentinel.flood import GroupingSpec, Suppressions, SuppressionSpec
from kvs_sentinel.pipeline import Pipeline
from kvs_sentinel.routing import Dispatcher, Router, RouteSpec
from kvs_sentinel.sinks.slack import SlackConfig, SlackSink
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import (
    FakeClock,
    FakeMessage,
    FakeSlackWebhook,
    ListSource,
    RecordingSink,
    SlackReply,
)
from tests.support.logging_reset import fresh_logging

__all__ = ["fresh_logging"]  # autouse here too
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def media_read(n: int, stream: str = "front-door") -> dict[str, Any]:
    """A producer reading video from outside the trusted networks: two pack detectors fire."""
    return {
        "eventVersion": "1.08",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "GetMedia",
        "eventID": f"00000000-0000-4000-8000-{n:012d}",
        "eventTime": "2026-02-03T10:00:00Z",
        "awsRegion": "eu-west-1",
        "recipientAccountId": "111122223333",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-sdk-go-v2/1.30.0",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/kvs-producer-cam1/s",
        },
        "requestParameters": {"streamName": stream},
    }


def message(n: int, **kwargs: Any) -> FakeMessage:
    return FakeMessage(f"m{n}", [Document(json.dumps(media_read(n, **kwargs)), Location(f"m{n}"))])


@pytest.fixture(scope="module")
def processor() -> Processor:
    return Processor(Engine(load_config().detectors), RunStats())


def two_sinks(**options: Any) -> tuple[Dispatcher, RecordingSink, RecordingSink]:
    slack, sns = RecordingSink("slack"), RecordingSink("sns")
    router = Router([RouteSpec(sinks=["slack", "sns"], min_severity="high")], ["sns"])
    return (
        Dispatcher({"slack": slack, "sns": sns}, router, clock=FakeClock(autoadvance=False), **options),
        slack,
        sns,
    )


async def test_a_message_is_acked_once_every_routed_sink_accepted_its_alerts(processor: Processor) -> None:
    dispatcher, slack, sns = two_sinks()
    msg = message(1)
    await Pipeline(ListSource([msg]), processor, dispatcher=dispatcher).handle(msg)
    assert msg.acked
    assert not msg.retries
    assert len(slack.alerts) == len(sns.alerts) == 2


async def test_a_failing_sink_leaves_the_message_for_retry_after_trying_the_others(
    processor: Processor,
) -> None:
    dispatcher, slack, sns = two_sinks()
    slack.fail_next = 1
    msg = message(1)
    await Pipeline(ListSource([msg]), processor, dispatcher=dispatcher).handle(msg)
    assert not msg.acked
    assert len(msg.retries) == 1
    assert "sink slack" in msg.retries[0]
    assert len(sns.alerts) == 2
    assert slack.alerts == []


async def test_redelivery_after_a_partial_failure_reaches_the_failed_sink_without_duplicating(
    processor: Processor,
) -> None:
    dispatcher, slack, sns = two_sinks(grouping=GroupingSpec())
    slack.fail_next = 1
    pipeline = Pipeline(ListSource([]), processor, dispatcher=dispatcher)
    first = message(1)
    await pipeline.handle(first)
    again = message(1)  # SQS makes the same message visible again
    await pipeline.handle(again)
    assert not first.acked
    assert again.acked
    assert len(slack.alerts) == 2
    assert len(sns.alerts) == 2
    assert dispatcher.grouper.duplicates == 2


async def test_grouped_repeats_and_suppressed_alerts_are_acked_without_being_sent(
    processor: Processor,
) -> None:
    suppress = SuppressionSpec.model_validate(
        {"match": {"resource": "lab-*"}, "reason": "lab cameras", "expires": "2999-01-01"}
    )
    dispatcher, slack, _sns = two_sinks(grouping=GroupingSpec(), suppressions=Suppressions([suppress]))
    messages = [message(n) for n in range(20)] + [message(99, stream="lab-1")]
    pipeline = Pipeline(ListSource(messages), processor, dispatcher=dispatcher, workers=4)
    counts = await pipeline.run()
    assert all(m.acked for m in messages)
    assert counts.messages_done == 21
    # the first of each detector's burst, then one summary each at shutdown
    assert [a.event_id[-2:] for a in slack.alerts if "grouped" not in a.details] == ["00", "00"]
    assert [a.details["grouped"]["repeats"] for a in slack.alerts if "grouped" in a.details] == [19, 19]
    assert sum(dispatcher.suppressions.counts.values()) == 2


async def test_a_burst_of_1000_through_a_real_slack_webhook_is_one_message_plus_one_summary(
    processor: Processor,
) -> None:
    pacing = FakeClock()  # Slack's one-per-second costs no real time
    async with FakeSlackWebhook() as server:
        sink = SlackSink("slack", SlackConfig.model_validate({"webhook_url": server.url}), clock=pacing)
        router = Router([RouteSpec(detectors=["kvs-untrusted-source-ip"], sinks=["slack"])], [])
        dispatcher = Dispatcher(
            {"slack": sink}, router, grouping=GroupingSpec(), clock=FakeClock(autoadvance=False)
        )
        messages = [message(n) for n in range(1000)]
        try:
            counts = await Pipeline(ListSource(messages), processor, dispatcher=dispatcher, workers=8).run()
        finally:
            await dispatcher.aclose()
        assert counts.messages_done == 1000
        assert all(m.acked for m in messages)
        assert len(server.payloads) == 2
        header = server.payloads[1]["blocks"][0]["text"]["text"]
        assert header.endswith("(repeated 999 times)")
        assert pacing.now - 1_000.0 >= 1.0


async def test_a_first_alert_that_failed_is_sent_when_its_message_comes_back(processor: Processor) -> None:
    sink = RecordingSink("slack")
    sink.fail_next = 1
    dispatcher = Dispatcher({"slack": sink}, grouping=GroupingSpec(), clock=FakeClock(autoadvance=False))
    pipeline = Pipeline(ListSource([]), processor, dispatcher=dispatcher)
    failed, later = message(1), message(2)
    await pipeline.handle(failed)
    await pipeline.handle(later)  # same key as message 1's alerts, but those never went out: these do
    assert not failed.acked
    assert later.acked
    assert {a.event_id for a in sink.alerts} == {"00000000-0000-4000-8000-000000000002"}
    assert len(sink.alerts) == 2


def deliver_config(tmp_path: Path, **slack: object) -> Path:
    pack = Path(__file__).resolve().parents[1] / "config" / "packs" / "kvs.yaml"
    options = "".join(f"\n    {key}: {value}" for key, value in slack.items())
    path = tmp_path / "sentinel.yaml"
    path.write_text(
        f"packs: [{pack}]\n"
        "sinks:\n"
        "  security-slack:\n"
        "    type: slack\n"
        "    webhook_url: ${KVS_TEST_WEBHOOK}\n"
        f"    min_interval_seconds: 0{options}\n"
    )
    return path


async def test_replay_deliver_sends_the_example_day_to_slack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeSlackWebhook() as server:
        monkeypatch.setenv("KVS_TEST_WEBHOOK", server.url)
        args = [
            "replay",
            "--deliver",
            "--no-progress",
            "--config",
            str(deliver_config(tmp_path)),
            str(EXAMPLES),
        ]
        assert await asyncio.to_thread(main, args) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # alerts went to Slack, not to stdout
    summaries = [p for p in server.payloads if "(repeated" in p["blocks"][0]["text"]["text"]]
    firsts = len(server.payloads) - len(summaries)
    assert firsts > 0
    assert f"delivered: security-slack {firsts}; grouped repeats" in captured.err
    assert f"({len(summaries)} summaries)" in captured.err
    assert server.path not in captured.err


async def test_replay_deliver_exits_1_when_slack_keeps_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeSlackWebhook() as server:
        server.always(SlackReply(500, "rollup_error"))
        monkeypatch.setenv("KVS_TEST_WEBHOOK", server.url)
        config = deliver_config(tmp_path, max_attempts=2, backoff_base_seconds=0)
        args = ["replay", "--deliver", "--no-progress", "--config", str(config), str(EXAMPLES)]
        assert await asyncio.to_thread(main, args) == 1
    err = capsys.readouterr().err
    assert "batches failed" in err
    assert server.path not in err


def test_replay_deliver_without_sinks_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--deliver", str(EXAMPLES)]) == 2
    assert "needs a sinks section" in capsys.readouterr().err
