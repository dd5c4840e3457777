"""Two `kvs-sentinel run` processes on one queue and one DynamoDB state table (moto in server mode):
stateful detectors decide as one task would, however the events are split between the tasks."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kvs_sentinel.testing import FakeSlackWebhook, SlackReply
from tests.aws_fixtures import moto_server
from tests.support.events import in_eventbridge
from tests.support.queues import drained, make_queue, queue_counts, send
from tests.support.sentinel_process import Sentinel, alerts_in, jsonl_sink, sentinels, write_config
from tests.support.state_tables import TABLE, make_table
from tests.support.waiting import wait_until

__all__ = ["moto_server", "sentinels"]

PRODUCER = {
    "type": "AssumedRole",
    "arn": "arn:aws:sts::111122223333:assumed-role/kvs-producer-frontdoor/cam-0042",
    "accessKeyId": "ASIAEXAMPLEPRODUCER1",
}
PROBER = {
    "type": "AssumedRole",
    "arn": "arn:aws:sts::111122223333:assumed-role/kvs-viewer-app/web-42",
    "accessKeyId": "ASIAEXAMPLEVIEWER001",
}


def envelope(n: int, time: str, identity: dict[str, str], ip: str, **fields: Any) -> dict[str, Any]:
    record = {
        "eventVersion": "1.09",
        "eventTime": time,
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "PutMedia",
        "awsRegion": "us-east-1",
        "sourceIPAddress": ip,
        "userIdentity": identity,
        "requestParameters": {"streamName": "frontdoor"},
        "eventID": f"5a0c7e11-0000-4000-8000-{n:012d}",
        "recipientAccountId": "111122223333",
        **fields,
    }
    return in_eventbridge(record, n)


def denied_calls(first: int, count: int) -> list[dict[str, Any]]:
    """Denied calls by one principal, all in the 10-minute window from 13:00."""
    return [
        envelope(
            first + i,
            f"2026-02-03T13:0{i % 8}:00Z",
            PROBER,
            "185.220.101.7",
            eventName="ListStreams",
            errorCode="AccessDeniedException",
        )
        for i in range(count)
    ]


def stateful_alerts(outputs: list[Path], *, live: bool = False) -> Counter[str]:
    alerts = (alert for out in outputs for alert in alerts_in(out, live=live))
    return Counter(detector for detector, _ in alerts if detector in STATEFUL)


async def test_a_task_started_later_goes_on_from_what_another_remembered(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    await make_table()
    url, _, _ = await make_queue("kvs-sentinel-events")
    outputs = [tmp_path / f"task{i}.jsonl" for i in (1, 2)]
    configs = [
        write_config(tmp_path, f"task{i}", url, jsonl_sink(out), state=f"dynamodb:{TABLE}")[0]
        for i, out in enumerate(outputs, 1)
    ]
    first = Sentinel(configs[0], tmp_path / "task1.log")
    sentinels.append(first)
    await wait_until(lambda: first.logged("run_started"), 20, "start-up")
    await send(url, envelope(1, "2026-02-01T08:00:00Z", PRODUCER, "198.51.100.7"), *denied_calls(100, 6))
    await wait_until(lambda: drained(url), 30, "the first task's share judged")
    await first.stop(within=15)

    second = Sentinel(configs[1], tmp_path / "task2.log")
    sentinels.append(second)
    await wait_until(lambda: second.logged("run_started"), 20, "start-up")
    moved = envelope(200, "2026-02-10T09:00:00Z", PRODUCER, "192.0.2.1")
    await send(url, *denied_calls(106, 6), moved)
    await wait_until(lambda: drained(url), 30, "the second task's share judged")
    await second.stop(within=15)
    # with `state: memory` the second task would have counted 6 denials and seen a new producer learning
    assert stateful_alerts(outputs[1:]) == {"kvs-denied-burst": 1, "kvs-producer-new-network": 1}
    assert stateful_alerts(outputs[:1]) == {}


async def test_two_tasks_sharing_a_table_cross_a_threshold_once_and_see_a_new_network_once(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    await make_table()
    url, _, dlq = await make_queue("kvs-sentinel-events")
    outputs = [tmp_path / f"task{i}.jsonl" for i in (1, 2)]
    for i, out in enumerate(outputs, 1):
        config, _ = write_config(
            tmp_path, f"task{i}", url, jsonl_sink(out), state=f"dynamodb:{TABLE}", max_in_flight=2, pollers=1
        )
        sentinels.append(Sentinel(config, tmp_path / f"task{i}.log"))
    for sentinel in sentinels:
        await wait_until(lambda s=sentinel: s.logged("run_started"), 20, "start-up")

    # the producer's first call: it starts learning its networks
    await send(url, envelope(1, "2026-02-01T08:00:00Z", PRODUCER, "198.51.100.7"))
    await wait_until(lambda: drained(url), 30, "the first call judged")
    # then, in one burst both tasks share: 12 denied calls in one 10-minute window by one principal,
    # and, after the learning week, 8 calls by the producer from a network it never used
    denied = denied_calls(100, 12)
    moved = [envelope(200 + i, f"2026-02-10T09:0{i}:00Z", PRODUCER, f"192.0.2.{i + 1}") for i in range(8)]
    burst = [event for pair in zip(denied, moved, strict=False) for event in pair] + denied[len(moved) :]
    await send(url, *burst)
    await wait_until(lambda: drained(url), 60, "the burst judged")
    for sentinel in sentinels:
        await sentinel.stop(within=15)

    assert stateful_alerts(outputs) == {"kvs-denied-burst": 1, "kvs-producer-new-network": 1}
    assert all(alerts_in(out) for out in outputs), "one task judged every message: the test proved nothing"
    assert await queue_counts(dlq) == (0, 0)


async def test_a_task_killed_mid_window_leaves_its_counts_and_redelivery_counts_nothing_twice(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    await make_table()
    url, _, _ = await make_queue("kvs-sentinel-crash", max_receives=10)
    out = tmp_path / "survivor.jsonl"
    survivor_config, _ = write_config(
        tmp_path, "survivor", url, jsonl_sink(out), state=f"dynamodb:{TABLE}", visibility_timeout=3
    )
    async with FakeSlackWebhook() as slack:
        slack.always(SlackReply(hang=True))  # the first task's sink hangs: its messages stay in flight
        sinks = (
            "  security-slack:\n    type: slack\n    webhook_url: ${KVS_TEST_WEBHOOK}\n"
            "    min_interval_seconds: 0\n    timeout_seconds: 30\n"
        )
        config, _ = write_config(
            tmp_path, "killed", url, sinks, state=f"dynamodb:{TABLE}", visibility_timeout=3, pollers=1
        )
        killed = Sentinel(config, tmp_path / "killed.log", {"KVS_TEST_WEBHOOK": slack.url})
        sentinels.append(killed)
        await send(url, *denied_calls(100, 9))  # nine denials: one short of the threshold
        await wait_until(lambda: len(slack.posts) >= 1, 20, "the first task to count and hang")
        killed.process.kill()  # kill -9 mid-window: what it counted is in the table, its messages come back
        killed.process.wait()

    survivor = Sentinel(survivor_config, tmp_path / "survivor.log")
    sentinels.append(survivor)
    await wait_until(lambda: drained(url), 30, "the redelivered messages judged")
    assert stateful_alerts([out]) == {}  # nine events, however often delivered, are nine
    await send(url, *denied_calls(109, 1))
    await wait_until(
        lambda: stateful_alerts([out], live=True) == {"kvs-denied-burst": 1}, 20, "the tenth to alert"
    )
    await wait_until(lambda: drained(url), 15, "the queue to drain")
    await survivor.stop(within=15)
    assert stateful_alerts([out]) == {"kvs-denied-burst": 1}


async def test_two_tasks_sharing_a_table_send_a_burst_once_summarise_it_once_and_keep_slacks_pace_together(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    await make_table()
    url, _, dlq = await make_queue("kvs-sentinel-events")
    interval = 0.5
    async with FakeSlackWebhook(WallClock()) as slack:
        sinks = (
            "  security-slack:\n    type: slack\n    webhook_url: ${KVS_TEST_WEBHOOK}\n"
            f"    min_interval_seconds: {interval}\n"
        )
        for i in (1, 2):
            config, _ = write_config(
                tmp_path,
                f"task{i}",
                url,
                sinks,
                state=f"dynamodb:{TABLE}",
                grouping=f"{{window_seconds: {WINDOW}}}",
                max_in_flight=2,
                pollers=1,
            )
            sentinels.append(Sentinel(config, tmp_path / f"task{i}.log", {"KVS_TEST_WEBHOOK": slack.url}))
        for sentinel in sentinels:
            await wait_until(lambda s=sentinel: s.logged("run_started"), 20, "start-up")

        # a producer reading video: 16 reads of one stream (one grouping key), and one read of each of 8
        # other streams (8 keys, 8 first alerts), interleaved so that both tasks get both kinds
        burst = [media_read(300 + n, "frontdoor") for n in range(16)]
        spread = [media_read(400 + n, f"backyard-{n}") for n in range(8)]
        await send(url, *(event for pair in zip(burst, spread, strict=False) for event in pair), *burst[8:])
        await wait_until(lambda: len(firsts(slack)) >= 9, 60, "the first alerts")
        await wait_until(lambda: drained(url), 30, "the queue to drain")
        await wait_until(lambda: len(read_posts(slack)) > 9, WINDOW + 30, "the burst's summary")
        for sentinel in sentinels:
            await sentinel.stop(within=20)

    posts = read_posts(slack)
    assert sorted(stream for stream, repeats, _ in posts if repeats is None) == sorted(
        ["frontdoor"] + [f"backyard-{n}" for n in range(8)]
    ), "N tasks sent a first alert each"
    counted = [repeats for stream, repeats, _ in posts if stream == "frontdoor" and repeats is not None]
    assert counted == [15], f"one summary counts every other read, whichever task got it: {counted}"
    counted_by_task = [line["grouped"] for task in sentinels for line in task.logged("delivery_finished")]
    assert len(counted_by_task) == 2
    assert all(counted_by_task), f"one task counted every read: {counted_by_task}"
    times = [post.at for post in slack.posts]
    # one post per slot of `interval` across both tasks: two tasks pacing alone would take half the time.
    # Each post starts inside its own slot; it reaches Slack a request's latency later, which may put the
    # first one past its slot's end.
    assert times[-1] - times[0] >= (len(times) - 2) * interval - POST_LATENCY, times
    assert await queue_counts(dlq) == (0, 0)


WINDOW = 20  # seconds: the burst is judged well inside it; its summary comes 5 s (the grace) after it
POST_LATENCY = 0.1  # seconds, at most, from a post's start to the fake Slack's clock on loopback


class WallClock:
    """The fake Slack's clock: the wall clock the tasks' shared pace is cut in slots of."""

    def monotonic(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def media_read(n: int, stream: str) -> dict[str, Any]:
    """The producer reading video (GetMedia): kvs-producer-media-read, the same key for one stream."""
    event = envelope(n, "2026-02-01T08:00:00Z", PRODUCER, "198.51.100.7", eventName="GetMedia")
    event["detail"]["requestParameters"] = {"streamName": stream}
    return event


def read_posts(slack: FakeSlackWebhook) -> list[tuple[str, int | None, bool]]:
    """(stream, repeats counted or None for a first alert, whether by every task) of each
    kvs-producer-media-read post."""
    found = []
    for payload in slack.payloads:
        text = json.dumps(payload)
        if "kvs-producer-media-read" not in text:
            continue
        stream = re.search(r"GetMedia on (frontdoor|backyard-\d)", text)
        assert stream, text[:500]
        repeated = re.search(r"repeated (\d+) times", text)
        found.append(
            (stream.group(1), int(repeated.group(1)) if repeated else None, "counted by every task" in text)
        )
    return found


def firsts(slack: FakeSlackWebhook) -> list[tuple[str, int | None, bool]]:
    return [post for post in read_posts(slack) if post[1] is None]


STATEFUL = {
    "kvs-denied-burst",
    "kvs-producer-new-network",
    "kvs-producer-session-networks",
    "kvs-first-media-read",
}
