"""`kvs-sentinel run` as a real subprocess against moto in server mode: EventBridge, SNS and S3 paths,
the DLQ, SIGTERM, and kill -9 then restart.

moto delivers EventBridge rule targets and SNS subscriptions to SQS, so events go in as AWS sends them.
Nothing here sleeps to synchronise: `wait_until` polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvs_sentinel.testing import FakeSlackWebhook, SlackReply
from tests.aws_fixtures import aws_client, moto_server, point_aws_at
from tests.support.events import event_id, eventbridge, media_read
from tests.support.queues import drained, make_queue, queue_counts, send
from tests.support.sentinel_process import Sentinel, alerts_in, jsonl_sink, sentinels, write_config
from tests.support.slack_posts import slack_alerts
from tests.support.waiting import wait_until

__all__ = ["moto_server", "sentinels"]

PACK = Path(__file__).resolve().parents[1] / "config" / "packs" / "kvs.yaml"
DETECTORS_PER_EVENT = 2  # a producer reading video from an untrusted address: media read + source ip
BUCKET = "kvs-trail-logs"


async def get(url: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=5) as response:
            return int(response.status), response.read().decode()

    return await asyncio.to_thread(fetch)


async def test_eventbridge_and_sns_events_are_alerted_the_queue_drains_and_sigterm_exits_0(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    url, arn, _ = await make_queue("kvs-sentinel-events")
    async with aws_client("events") as events, aws_client("sns") as sns:
        pattern = {"detail-type": ["AWS API Call via CloudTrail"], "source": ["aws.kinesisvideo"]}
        await events.put_rule(Name="kvs-sentinel-cloudtrail", EventPattern=json.dumps(pattern))
        await events.put_targets(Rule="kvs-sentinel-cloudtrail", Targets=[{"Id": "queue", "Arn": arn}])
        topic = (await sns.create_topic(Name="kvs-sentinel-events"))["TopicArn"]
        await sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        raw_topic = (await sns.create_topic(Name="kvs-sentinel-raw"))["TopicArn"]
        await sns.subscribe(
            TopicArn=raw_topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
        )
    out = tmp_path / "alerts.jsonl"
    # a 20 s long poll: SIGTERM must cut it short rather than wait for it
    config, port = write_config(tmp_path, "run", url, jsonl_sink(out), wait_time_seconds=20)
    sentinel = Sentinel(config, tmp_path / "run.log")
    sentinels.append(sentinel)
    await wait_until(lambda: sentinel.logged("run_started"), 20, "start-up")
    assert sentinel.logged("queue_checked")  # a redrive policy: no warning

    async with aws_client("events") as events, aws_client("sns") as sns:
        entries = [
            {
                "Source": "aws.kinesisvideo",
                "DetailType": "AWS API Call via CloudTrail",
                "Detail": json.dumps(media_read(n)),
            }
            for n in (1, 2)
        ]
        assert (await events.put_events(Entries=entries))["FailedEntryCount"] == 0
        await sns.publish(TopicArn=topic, Message=json.dumps(eventbridge(3)))  # EventBridge → SNS → SQS
        await sns.publish(TopicArn=raw_topic, Message=json.dumps(media_read(4)))  # raw delivery
    expected = {event_id(n) for n in (1, 2, 3, 4)}
    await wait_until(lambda: len(alerts_in(out, live=True)) >= 4 * DETECTORS_PER_EVENT, 20, "8 alerts")
    await wait_until(lambda: drained(url), 10, "the queue to drain")
    found = alerts_in(out)
    assert {event for _, event in found} == expected
    assert len(found) == len(set(found)) == 4 * DETECTORS_PER_EVENT
    dispatched = sentinel.logged("alert_dispatched")
    assert {entry["event_id"] for entry in dispatched} == expected
    assert all(entry.get("message_id") for entry in dispatched)  # bound to the message

    assert (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
    assert (await get(f"http://127.0.0.1:{port}/readyz"))[0] == 200
    metrics = (await get(f"http://127.0.0.1:{port}/metrics"))[1]
    assert re.search(
        r'kvs_sentinel_alerts_total\{detector="kvs-producer-media-read",severity="\w+"\} 4', metrics
    )
    assert 'kvs_sentinel_messages_deleted_total{queue="kvs-sentinel-events"} 4.0' in metrics
    assert "kvs_sentinel_event_lag_seconds_count 4.0" in metrics
    health = [sys.executable, "-m", "kvs_sentinel", "health", "--port", str(port)]
    assert (await asyncio.to_thread(subprocess.run, health, capture_output=True)).returncode == 0

    took = await sentinel.stop(within=8)
    assert took < 5  # well inside the grace period, although a 20 s long poll was under way
    finished = sentinel.logged("run_finished")
    assert finished[0]["summary"] == "4 done, 0 failed"
    assert not sentinel.logged("drain_deadline_passed")
    down = [sys.executable, "-m", "kvs_sentinel", "health", "--port", str(port), "--timeout", "1"]
    assert (await asyncio.to_thread(subprocess.run, down, capture_output=True)).returncode == 1


async def test_s3_log_files_are_alerted_and_poison_messages_land_in_the_dlq(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    url, _, dlq = await make_queue("kvs-sentinel-logs", max_receives=2)
    key = "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/02/03/111122223333_CloudTrail_eu-west-1_x.json.gz"
    log_file = gzip.compress(json.dumps({"Records": [media_read(n) for n in (10, 11, 12)]}).encode())
    async with aws_client("s3") as s3:
        await s3.create_bucket(Bucket=BUCKET)
        await s3.put_object(Bucket=BUCKET, Key=key, Body=log_file)

    def notification(object_key: str) -> dict[str, Any]:
        s3 = {"bucket": {"name": BUCKET}, "object": {"key": object_key, "size": 1}}
        return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "s3": s3}]}

    poison = notification(key.replace("_x.", "_missing."))  # NoSuchKey, every time
    unknown = {"hello": "world", "detail": media_read(30)}  # an envelope nobody knows: kept for the DLQ
    await send(
        url,
        eventbridge(20),
        notification(key),
        poison,
        unknown,
        {"s3Bucket": BUCKET, "s3ObjectKey": [key]},  # CloudTrail's own SNS "new log file", raw delivery
        eventbridge(21),
    )
    out = tmp_path / "alerts.jsonl"
    config, _ = write_config(tmp_path, "run", url, jsonl_sink(out))
    sentinel = Sentinel(config, tmp_path / "run.log")
    sentinels.append(sentinel)

    async def poison_dead_lettered() -> bool:
        return await queue_counts(dlq) == (2, 0) and await drained(url)

    await wait_until(poison_dead_lettered, 30, "the poison messages in the DLQ and the queue drained")
    found = Counter(event for _, event in alerts_in(out))
    # the log file came twice (S3 notification, CloudTrail notification): dedupe sent its alerts once
    assert found == {event_id(n): DETECTORS_PER_EVENT for n in (10, 11, 12, 20, 21)}
    async with aws_client("sqs") as sqs:
        dead = (await sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10))["Messages"]
    assert sorted((json.loads(m["Body"]) for m in dead), key=json.dumps) == sorted(
        [poison, unknown], key=json.dumps
    )
    assert len(sentinel.logged("input_malformed")) >= 2  # the unknown envelope, each time it was received
    failures = sentinel.logged("log_file_failed")
    assert len(failures) >= 2
    assert all("NoSuchKey" in entry["error"] and entry["message_id"] for entry in failures)
    assert len(sentinel.logged("alert_deduplicated")) == 3 * DETECTORS_PER_EVENT
    await sentinel.stop(within=8)


async def test_kill_9_in_the_middle_of_a_batch_then_restart_loses_no_alert(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    url, _, _ = await make_queue("kvs-sentinel-crash", max_receives=10)
    numbers = range(30, 36)
    await send(url, *(eventbridge(n) for n in numbers))
    async with FakeSlackWebhook() as slack:
        slack.script(SlackReply(), SlackReply(), SlackReply())  # three alerts go out...
        slack.always(SlackReply(hang=True))  # ...then Slack hangs, mid-batch
        sinks = (
            "  security-slack:\n    type: slack\n    webhook_url: ${KVS_TEST_WEBHOOK}\n"
            "    min_interval_seconds: 0\n    timeout_seconds: 30\n"
        )
        config, _ = write_config(tmp_path, "crash", url, sinks, visibility_timeout=3, pollers=1)
        env = {"KVS_TEST_WEBHOOK": slack.url}
        first = Sentinel(config, tmp_path / "first.log", env)
        sentinels.append(first)
        await wait_until(lambda: len(slack.posts) >= 4, 20, "Slack to hang on the fourth alert")
        first.process.kill()  # kill -9: no shutdown, no deletes, no flush
        first.process.wait()
        assert first.process.returncode == -signal.SIGKILL
        before = set(slack_alerts(slack))
        assert len(before) == 3
        # what the killed process had sent, answered or not: a request that hung may still have
        # reached the channel, so those are the alerts a restart may legitimately repeat
        sent_before = set(slack_alerts(slack, accepted_only=False))

        slack.always(SlackReply())
        second = Sentinel(config, tmp_path / "second.log", env)
        sentinels.append(second)
        expected = {
            (d, event_id(n)) for n in numbers for d in ("kvs-producer-media-read", "kvs-untrusted-source-ip")
        }
        await wait_until(lambda: expected <= set(slack_alerts(slack)), 30, "every alert after the restart")
        await wait_until(lambda: drained(url), 15, "the queue to drain")
        await second.stop(within=8)
        delivered = Counter(slack_alerts(slack))
    assert set(delivered) == expected  # none lost
    # Duplicates are possible, and only for what the killed process had sent but not yet deleted: its
    # in-memory dedupe died with it. Each alert reached Slack at most twice.
    assert all(count <= 2 for count in delivered.values())
    assert {alert for alert, count in delivered.items() if count == 2} <= sent_before


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[socket.socket]:
    """An SQS endpoint on loopback that completes the TCP handshake and never answers; the AWS_*
    environment points every client at it (fake credentials, no profile, no instance metadata)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent.setblocking(False)
        point_aws_at(f"http://127.0.0.1:{silent.getsockname()[1]}", monkeypatch, tmp_path)
        yield silent


async def test_sigterm_while_the_queue_check_hangs_exits_0_at_once(
    offline_aws: socket.socket, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    queue_url = f"{endpoint}/111122223333/kvs-sentinel-silent"
    config, _ = write_config(tmp_path, "silent", queue_url, jsonl_sink(tmp_path / "alerts.jsonl"))
    sentinel = Sentinel(config, tmp_path / "silent.log")
    sentinels.append(sentinel)
    connections: list[socket.socket] = []

    def queue_check_waiting() -> bool:
        try:
            connections.append(offline_aws.accept()[0])  # the queue check's request, never answered
        except BlockingIOError:
            return False
        return True

    try:
        await wait_until(lambda: sentinel.logged("run_starting"), 30, "start-up under way")
        await wait_until(queue_check_waiting, 30, "the queue check waiting on SQS")
        # unanswered, the check would wait 16 s read timeout x 3 attempts; the stop must not
        took = await sentinel.stop(within=10)
    finally:
        for connection in connections:
            connection.close()
    assert took < 10
    assert sentinel.logged("shutdown_requested")
    assert sentinel.logged("startup_interrupted")
    assert not sentinel.logged("run_started")
    [finished] = sentinel.logged("run_finished")
    assert finished["started"] is False


async def test_sigterm_while_the_configuration_loads_exits_0(
    tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    config = tmp_path / "sentinel.yaml"
    os.mkfifo(config)  # reading it blocks until we write: the process is held inside the config load
    sentinel = Sentinel(config, tmp_path / "loading.log")
    sentinels.append(sentinel)

    def reader_waiting() -> int | None:
        try:  # succeeds only once the sentinel has the FIFO open for reading
            return os.open(config, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None

    writer = await wait_until(reader_waiting, 30, "the configuration being read")
    try:
        await sentinel.stop(within=10)
    finally:
        os.close(writer)
    [stopped] = sentinel.logged("stopped_before_start")
    assert stopped["signal"] == "SIGTERM"


def test_a_stop_signal_during_a_log_write_still_exits_0() -> None:
    # the signal lands while the main thread holds the log writer's lock (not reentrant): a handler that
    # logged through structlog would wait for that lock forever
    script = """
import os, signal, sys
from structlog._output import _get_lock_for_file
from kvs_sentinel.logs import configure_logging
from kvs_sentinel.startup_signals import exit_cleanly_on_stop_signals
configure_logging("info", json=True)
exit_cleanly_on_stop_signals()
with _get_lock_for_file(sys.stderr):
    os.kill(os.getpid(), signal.SIGTERM)
    sum(range(1000))
sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    [line] = done.stderr.splitlines()
    assert json.loads(line)["event"] == "stopped_before_start"


async def test_two_tasks_on_one_queue_share_the_messages_and_alert_each_event_once(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    url, _, dlq = await make_queue("kvs-sentinel-events")
    outputs = [tmp_path / f"task{i}.jsonl" for i in (1, 2)]
    for i, out in enumerate(outputs, 1):
        # a low max_in_flight so that one task cannot take the whole backlog at once
        config, _ = write_config(tmp_path, f"task{i}", url, jsonl_sink(out), max_in_flight=4, pollers=1)
        sentinels.append(Sentinel(config, tmp_path / f"task{i}.log"))
    for sentinel in sentinels:
        await wait_until(lambda s=sentinel: s.logged("run_started"), 20, "start-up")
    events = range(1, 41)
    await send(url, *(eventbridge(n) for n in events))

    async def all_alerted() -> bool:
        return len([a for out in outputs for a in alerts_in(out, live=True)]) >= 2 * len(events)

    await wait_until(all_alerted, 60, "every event alerted")
    await wait_until(lambda: drained(url), 30, "queue drained")
    for sentinel in sentinels:
        await sentinel.stop(within=15)
    per_task = [alerts_in(out) for out in outputs]
    everything = Counter(a for alerts in per_task for a in alerts)
    assert {event for _, event in everything} == {event_id(n) for n in events}
    assert max(everything.values()) == 1, "an alert was sent by both tasks"
    assert all(per_task), f"one task did all the work: {[len(a) for a in per_task]}"
    assert await queue_counts(dlq) == (0, 0)
