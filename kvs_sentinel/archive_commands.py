"""The command-line side of CloudTrail's archive in S3: `replay s3://…` and `backfill`, with --since and
--until. Imported only when a command names an s3:// URL (aiobotocore costs start-up time)."""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack

from kvs_sentinel.aws import aws_client
from kvs_sentinel.backfill import SQS_BATCH, BackfillCounts, BackfillError, backfill
from kvs_sentinel.errors import UsageError
from kvs_sentinel.log_files import LogFileError
from kvs_sentinel.sources.s3 import s3_client
from kvs_sentinel.sources.s3_archive import (
    ArchivedLogFile,
    ArchiveSource,
    S3Url,
    TimeRange,
    list_log_files,
    parse_moment,
    parse_s3_url,
)
from kvs_sentinel.stats import RunStats


def time_range_of(args: argparse.Namespace) -> TimeRange:
    """Raises UsageError for a time that does not parse, or an empty range."""
    since = parse_moment(args.since, "--since") if args.since else None
    until = parse_moment(args.until, "--until", end_of_day=True) if args.until else None
    return TimeRange(since, until)


def s3_urls(paths: list[str]) -> list[S3Url]:
    """Raises UsageError for a bad URL, or local paths mixed in."""
    if not all(path.startswith("s3://") for path in paths):
        raise UsageError("give either s3:// URLs or local paths, not both")
    return [parse_s3_url(path) for path in paths]


async def listed(
    client: object, urls: list[S3Url], time_range: TimeRange, stats: RunStats
) -> list[ArchivedLogFile]:
    """Every log file the URLs select, in order (a file under two of the URLs counts once); raises
    LogFileError when a listing fails."""
    seen: dict[tuple[str, str], ArchivedLogFile] = {}
    for url in urls:
        async for file in list_log_files(client, url, time_range, stats.skip_file):
            seen.setdefault((file.bucket, file.key), file)
    return list(seen.values())


async def archive_source(
    paths: list[str], time_range: TimeRange, stats: RunStats, stack: AsyncExitStack
) -> ArchiveSource:
    """The source for s3:// URLs (`replay`, `audit --suggest-policy`), its client closed with `stack`.
    Raises UsageError or LogFileError."""
    urls = s3_urls(paths)
    client = await stack.enter_async_context(s3_client())
    return ArchiveSource(client, await listed(client, urls, time_range, stats), stats)


async def run_backfill(args: argparse.Namespace) -> int:
    """0 when every selected file was enqueued; 1 when sending failed part way; 2 for usage errors."""
    try:
        urls = s3_urls(args.urls)
        time_range = time_range_of(args)
    except UsageError as exc:
        print(f"kvs-sentinel: {exc}", file=sys.stderr)
        return 2
    stats = RunStats()
    try:
        async with s3_client() as s3:
            files = await listed(s3, urls, time_range, stats)
    except LogFileError as exc:
        print(f"kvs-sentinel: {exc}", file=sys.stderr)
        return 2
    total = sum(file.size for file in files)
    print(f"{len(files)} log files ({total / 1e6:.1f} MB) selected", file=sys.stderr)
    if args.dry_run or not files:
        for file in files if args.dry_run else ():
            print(f"s3://{file.bucket}/{file.key}")
        return 0

    def progress(counts: BackfillCounts) -> None:
        if counts.files % 1000 < SQS_BATCH or counts.files == len(files):
            print(f"enqueued {counts.files} of {len(files)}", file=sys.stderr)

    try:
        async with aws_client("sqs", region=None, endpoint_url=None, timeout_seconds=30) as sqs:
            counts = await backfill(sqs, args.queue, files, on_sent=progress)
    except BackfillError as exc:
        print(f"kvs-sentinel: backfill stopped: {exc}", file=sys.stderr)
        return 1
    print(f"backfill: {counts.files} notifications sent to {args.queue}", file=sys.stderr)
    return 0
