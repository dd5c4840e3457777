"""CloudTrail's archive in S3: `replay s3://…` with a time range over CloudTrail's key layout, and
`backfill` into the queue the run service drains. S3 and SQS are moto in server mode."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kvs_sentinel.backfill import notification
from kvs_sentinel.decode import decode_all
from kvs_sentinel.envelopes import Document, LogFileRef
from kvs_sentinel.errors import UsageError
from kvs_sentinel.events import Location
from kvs_sentinel.sources.s3_archive import (
    ArchivedLogFile,
    TimeRange,
    file_time,
    folder_span,
    parse_moment,
    parse_s3_url,
)
from tests.aws_fixtures import aws_client, moto_server
from tests.support.events import media_read
from tests.support.queues import drained, make_queue, queue_counts
from tests.support.sentinel_process import Sentinel, alerts_in, jsonl_sink, sentinels, write_config
from tests.support.waiting import wait_until

__all__ = ["moto_server", "sentinels"]

BUCKET = "org-trail"
ACCOUNT = "111122223333"
PACK = Path(__file__).parents[1] / "config" / "packs" / "kvs.yaml"
NOVEMBER = [datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=d) for d in range(30)]


def key_for(day: datetime, region: str, hour: int = 10) -> str:
    stamp = day.replace(hour=hour, minute=5)
    return (
        f"AWSLogs/o-abc123/{ACCOUNT}/CloudTrail/{region}/{stamp:%Y/%m/%d}/"
        f"{ACCOUNT}_CloudTrail_{region}_{stamp:%Y%m%dT%H%MZ}_AbCdEf{hour:02d}.json.gz"
    )


def event_number(day: datetime, region: str) -> int:
    return day.day * 10 + (1 if region == "eu-west-1" else 2)


async def fill_november(s3: Any) -> None:
    """A month of an organisation trail in two regions, with digests and a writability check file."""
    await s3.create_bucket(Bucket=BUCKET)
    for day in NOVEMBER:
        for region in ("eu-west-1", "us-east-1"):
            n = event_number(day, region)
            record = media_read(n) | {"eventTime": f"{day:%Y-%m-%d}T10:01:00Z", "awsRegion": region}
            body = gzip.compress(json.dumps({"Records": [record]}).encode())
            await s3.put_object(Bucket=BUCKET, Key=key_for(day, region), Body=body)
        digest = f"AWSLogs/o-abc123/{ACCOUNT}/CloudTrail-Digest/eu-west-1/{day:%Y/%m/%d}/digest.json.gz"
        await s3.put_object(Bucket=BUCKET, Key=digest, Body=gzip.compress(b'{"digestS3Bucket": "x"}'))
    await s3.put_object(Bucket=BUCKET, Key="AWSLogs/o-abc123/README.md", Body=b"# not CloudTrail")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kvs_sentinel", "--log-format", "json", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def replay_config(tmp_path: Path) -> Path:
    config = tmp_path / "replay.yaml"
    config.write_text(f"packs: [{PACK}]\n")
    return config


def event_ids(done: subprocess.CompletedProcess[str]) -> set[str]:
    return {json.loads(line)["event_id"] for line in done.stdout.splitlines()}


async def test_replay_of_a_time_range_reads_exactly_the_files_of_those_days(
    moto_server: str, tmp_path: Path
) -> None:
    async with aws_client("s3") as s3:
        await fill_november(s3)
    config = replay_config(tmp_path)
    summary = tmp_path / "summary.json"
    done = await asyncio.to_thread(
        cli,
        "replay", "--config", str(config), "--no-progress", "--summary-json", str(summary),
        "--since", "2026-11-10", "--until", "2026-11-12",
        f"s3://{BUCKET}/AWSLogs/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ids = sorted(event_ids(done))
    wanted = sorted(
        str(media_read(event_number(day, region))["eventID"])
        for day in NOVEMBER[9:12]
        for region in ("eu-west-1", "us-east-1")
    )
    assert ids == wanted  # the 10th, 11th and 12th (a bare --until date includes its day), both regions
    counts = json.loads(summary.read_text())
    assert counts["files_read"] == 6
    assert counts["files_skipped"] == {"CloudTrail digests": 1, "not CloudTrail by name": 1}


async def test_replay_by_the_hour_and_the_whole_archive(moto_server: str, tmp_path: Path) -> None:
    async with aws_client("s3") as s3:
        await fill_november(s3)
        await s3.put_object(
            Bucket=BUCKET,
            Key=key_for(NOVEMBER[0], "eu-west-1", hour=23),
            Body=gzip.compress(json.dumps({"Records": [media_read(999)]}).encode()),
        )
    config = replay_config(tmp_path)
    late = await asyncio.to_thread(
        cli, "replay", "--config", str(config), "--no-progress",
        "--since", "2026-11-01T12:00Z", "--until", "2026-11-02T00:00Z", f"s3://{BUCKET}",
    )  # fmt: skip
    assert late.returncode == 0, late.stderr
    assert event_ids(late) == {str(media_read(999)["eventID"])}
    everything = await asyncio.to_thread(
        cli, "replay", "--config", str(config), "--no-progress", f"s3://{BUCKET}"
    )
    assert everything.returncode == 0, everything.stderr
    assert len(event_ids(everything)) == 61  # 30 days x 2 regions, and the late file


async def test_an_unreadable_bucket_is_one_line_and_exit_2(moto_server: str, tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        cli, "replay", "--config", str(replay_config(tmp_path)), "--no-progress", "s3://no-such-bucket/x"
    )
    assert done.returncode == 2
    [line] = [line for line in done.stderr.splitlines() if line.startswith("kvs-sentinel:")]
    assert "s3://no-such-bucket/x: cannot list: NoSuchBucket" in line
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--since", "2026-11-01", "examples"], "--since and --until select log files in S3"),
        (["s3://b/x", "examples"], "either s3:// URLs or local paths"),
        (["--since", "yesterday", "s3://bucket/x"], "--since 'yesterday': not a date or time"),
        (["--since", "2026-11-02", "--until", "2026-11-01", "s3://bucket/x"], "is not before --until"),
        (["s3://Not_A_Bucket/x"], "not an s3://BUCKET[/PREFIX] URL"),
    ],
)
def test_bad_s3_arguments_are_one_line_and_exit_2(args: list[str], error: str, tmp_path: Path) -> None:
    done = cli("replay", "--config", str(replay_config(tmp_path)), "--no-progress", *args)
    assert done.returncode == 2, done.stderr
    assert error in done.stderr
    assert "Traceback" not in done.stderr


# moto serves the 1,000 files and their messages single-threaded: ~90 s on an idle 2-core machine, past
# the suite's 120 s default under load; its own waits allow 240 s
@pytest.mark.timeout(300)
async def test_backfill_of_1000_files_is_drained_by_two_tasks_each_event_alerted_once(
    moto_server: str, tmp_path: Path, sentinels: list[Sentinel]
) -> None:
    url, _, dlq = await make_queue("kvs-sentinel-backfill")
    start = datetime(2026, 10, 1, tzinfo=UTC)
    async with aws_client("s3") as s3:
        await s3.create_bucket(Bucket=BUCKET)

        async def put(n: int) -> None:
            stamp = start + timedelta(minutes=5 * n)
            key = (
                f"AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/{stamp:%Y/%m/%d}/"
                f"{ACCOUNT}_CloudTrail_eu-west-1_{stamp:%Y%m%dT%H%MZ}_{n:04d}.json.gz"
            )
            body = gzip.compress(json.dumps({"Records": [media_read(n)]}).encode())
            await s3.put_object(Bucket=BUCKET, Key=key, Body=body)

        for first in range(0, 1000, 50):
            await asyncio.gather(*(put(n) for n in range(first, first + 50)))
    dry = await asyncio.to_thread(cli, "backfill", "--dry-run", "--queue", url, f"s3://{BUCKET}/AWSLogs/")
    assert dry.returncode == 0, dry.stderr
    assert len(dry.stdout.splitlines()) == 1000
    assert await queue_counts(url) == (0, 0)

    done = await asyncio.to_thread(cli, "backfill", "--queue", url, f"s3://{BUCKET}/AWSLogs/")
    assert done.returncode == 0, done.stderr
    assert "1000 notifications sent" in done.stderr
    outputs = [tmp_path / f"task{i}.jsonl" for i in (1, 2)]
    for i, out in enumerate(outputs, 1):
        # one state store for both tasks, as dynamodb: would be on ECS: a message whose visibility ends
        # while a loaded machine is still on it goes to the other task, which must not alert it again
        state = f"sqlite:{tmp_path / 'state.db'}"
        config, _ = write_config(tmp_path, f"task{i}", url, jsonl_sink(out), state=state, max_in_flight=8)
        sentinels.append(Sentinel(config, tmp_path / f"task{i}.log"))

    def all_alerted() -> bool:
        return len({event for out in outputs for _, event in alerts_in(out, live=True)}) == 1000

    await wait_until(all_alerted, 180, "every backfilled event alerted")
    await wait_until(lambda: drained(url), 60, "queue drained")
    for sentinel in sentinels:
        await sentinel.stop(within=15)
    per_task = [alerts_in(out) for out in outputs]
    everything = Counter(alert for alerts in per_task for alert in alerts)
    assert {event for _, event in everything} == {str(media_read(n)["eventID"]) for n in range(1000)}
    assert max(everything.values()) == 1
    assert all(per_task), f"one task did all the work: {[len(a) for a in per_task]}"
    assert await queue_counts(dlq) == (0, 0)


def test_a_backfill_notification_is_read_as_the_log_file_it_names() -> None:
    key = "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/01/a b+c.json.gz"
    body = notification(ArchivedLogFile("trail", key, 10))
    [ref] = [item for item in decode_all(Document(body, Location("sqs"))) if isinstance(item, LogFileRef)]
    assert (ref.bucket, ref.key) == ("trail", key)


def test_folder_spans_and_file_times_follow_cloudtrails_layout() -> None:
    base = "AWSLogs/o-1/111122223333/CloudTrail/eu-west-1/"
    day = datetime(2026, 12, 31, tzinfo=UTC)
    assert folder_span(base + "2026/") == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert folder_span(base + "2026/12/") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert folder_span(base + "2026/12/31/") == (day, day + timedelta(days=1))
    assert folder_span("AWSLogs/o-1/111122223333/") is None
    assert folder_span(base + "2026/13/") is None
    assert file_time(
        base + "2026/12/31/111122223333_CloudTrail_eu-west-1_20261231T2355Z_x.json.gz"
    ) == day.replace(hour=23, minute=55)
    assert file_time("notes.json") is None


def test_time_ranges() -> None:
    since = parse_moment("2026-11-10", "--since")
    until = parse_moment("2026-11-12", "--until", end_of_day=True)
    assert until == datetime(2026, 11, 13, tzinfo=UTC)
    assert parse_moment("2026-11-10T10:00+02:00", "--since") == datetime(2026, 11, 10, 8, tzinfo=UTC)
    window = TimeRange(since, until)
    assert window.holds(since)
    assert not window.holds(until)
    assert window.meets(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert not window.meets(datetime(2026, 11, 13, tzinfo=UTC), datetime(2026, 11, 14, tzinfo=UTC))
    with pytest.raises(UsageError):
        TimeRange(until, since)
    assert parse_s3_url("s3://my.bucket").prefix == ""
