"""CloudTrail's archive in S3, for `replay s3://…` and `backfill`: which log files a URL and a time range
select, and (for replay) their documents, fetched a few at a time while alerts keep the files' order.

CloudTrail's layout is `AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/…_YYYYMMDDTHHMMZ_….json.gz`.
With a time range, the listing walks that layout folder by folder and never lists a day outside the range
(a month of a busy organisation trail is hundreds of thousands of keys); a file is in the range by the time
in its name (when CloudTrail wrote it), else by the day of its folder, else by its LastModified.
Digest folders are not listed: digests are not events.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, BinaryIO

import structlog

from kvs_sentinel.envelopes import Decodable, LogFileRef, is_digest_key
from kvs_sentinel.errors import UsageError
from kvs_sentinel.log_files import LogFileError
from kvs_sentinel.sources.files import NOT_EVENT_SUFFIXES, SKIPPED_BY_NAME, approximate_events
from kvs_sentinel.sources.local import FileBatch
from kvs_sentinel.sources.s3 import documents_of_log_file, fetch_log_file, log_file_location
from kvs_sentinel.stats import RunStats

log = structlog.get_logger("kvs_sentinel.s3_archive")

SKIPPED_DIGESTS = "CloudTrail digests"
FETCHES_IN_FLIGHT = 8
BATCH_DOCUMENTS = 256

_FILE_TIME = re.compile(r"_(\d{8}T\d{4}Z)_[^/]*$")
_DATE_FOLDER = re.compile(r"(?:^|/)CloudTrail/[^/]+/(\d{4})/(?:(\d{2})/(?:(\d{2})/)?)?$")


@dataclass(frozen=True)
class S3Url:
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def is_s3_url(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3_url(text: str) -> S3Url:
    """`s3://bucket[/prefix]`; raises UsageError naming what is wrong."""
    bucket, _, prefix = text.removeprefix("s3://").partition("/")
    if not is_s3_url(text) or not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise UsageError(f"{text!r} is not an s3://BUCKET[/PREFIX] URL with a valid bucket name")
    return S3Url(bucket, prefix)


@dataclass(frozen=True)
class TimeRange:
    """[since, until): either end may be open."""

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since >= self.until:
            raise UsageError(
                f"--since {self.since:%Y-%m-%dT%H:%MZ} is not before --until {self.until:%Y-%m-%dT%H:%MZ}"
            )

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def holds(self, moment: datetime) -> bool:
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)

    def meets(self, start: datetime, end: datetime) -> bool:
        """Whether [start, end) overlaps the range."""
        return (self.since is None or end > self.since) and (self.until is None or start < self.until)


def parse_moment(text: str, option: str, *, end_of_day: bool = False) -> datetime:
    """`2026-11-01`, `2026-11-01T10:00`, `2026-11-01T10:00:00Z` (UTC unless an offset is given). A bare
    date given to --until means the end of that day, so `--since D --until D` is the whole of day D."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: not a date or time; write 2026-11-01 or 2026-11-01T10:00Z"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if end_of_day and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        moment += timedelta(days=1)
    return moment


@dataclass(frozen=True)
class ArchivedLogFile:
    bucket: str
    key: str
    size: int

    def ref(self) -> LogFileRef:
        return LogFileRef(self.bucket, self.key, f"s3://{self.bucket}/{self.key}")


def file_time(key: str) -> datetime | None:
    match = _FILE_TIME.search(key)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def folder_span(prefix: str) -> tuple[datetime, datetime] | None:
    """The time a `…/CloudTrail/REGION/YYYY[/MM[/DD]]/` folder covers, or None for any other folder."""
    match = _DATE_FOLDER.search(prefix)
    if match is None:
        return None
    year, month, day = match.groups()
    try:
        start = datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
    except ValueError:
        return None
    if day:
        return start, start + timedelta(days=1)
    if month:
        return start, start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, start.replace(year=start.year + 1)


async def list_log_files(
    client: Any,
    url: S3Url,
    time_range: TimeRange,
    skipped: Callable[[str, str], None] | None = None,
) -> AsyncIterator[ArchivedLogFile]:
    """The log files under `url` in `time_range`, in key order; raises LogFileError if listing fails."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    def skip(reason: str, name: str) -> None:
        if skipped is not None:
            skipped(reason, name)

    # a plain listing when every key is wanted; folder by folder (pruning days) when a range is given
    folders = [url.prefix]
    try:
        while folders:
            folder = folders.pop()
            paginator = client.get_paginator("list_objects_v2")
            request: dict[str, Any] = {"Bucket": url.bucket, "Prefix": folder}
            if time_range.bounded:
                request["Delimiter"] = "/"
            below: list[str] = []
            async for page in paginator.paginate(**request):
                for entry in page.get("Contents", ()):
                    key = entry["Key"]
                    if is_digest_key(key):
                        skip(SKIPPED_DIGESTS, f"s3://{url.bucket}/{key}")
                        continue
                    if key.endswith("/"):
                        continue
                    if PurePosixPath(key).suffix.lower() in NOT_EVENT_SUFFIXES:
                        skip(SKIPPED_BY_NAME, f"s3://{url.bucket}/{key}")
                        continue
                    if time_range.bounded and not time_range.holds(_moment(key, entry)):
                        continue
                    yield ArchivedLogFile(url.bucket, key, int(entry.get("Size") or 0))
                for common in page.get("CommonPrefixes", ()):
                    prefix = common["Prefix"]
                    if prefix.endswith("/CloudTrail-Digest/") or prefix == "CloudTrail-Digest/":
                        skip(SKIPPED_DIGESTS, f"s3://{url.bucket}/{prefix}")
                        continue
                    span = folder_span(prefix)
                    if span is None or time_range.meets(*span):
                        below.append(prefix)
            folders.extend(reversed(below))  # depth first, in key order
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise LogFileError(
            f"{url}: cannot list: {error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": "),
            retryable=False,
        ) from None
    except (BotoCoreError, OSError, TimeoutError) as exc:
        raise LogFileError(f"{url}: cannot list: {type(exc).__name__}: {exc}", retryable=True) from None


def _moment(key: str, entry: dict[str, Any]) -> datetime:
    named = file_time(key)
    if named is not None:
        return named
    span = folder_span(key.rsplit("/", 1)[0] + "/")
    if span is not None:
        return span[0]
    modified = entry.get("LastModified")
    return modified if isinstance(modified, datetime) else datetime.now(UTC)


class ArchiveSource:
    """`replay`'s source for s3:// URLs: the listed log files fetched `FETCHES_IN_FLIGHT` at a time (S3's
    latency, not our CPU, bounds a sequential read), judged in key order. A file that cannot be fetched
    is counted unreadable, as a local file that cannot be opened; the others go on."""

    def __init__(
        self,
        client: Any,
        files: list[ArchivedLogFile],
        stats: RunStats,
        on_bytes: Callable[[int], None] | None = None,
        in_flight: int = FETCHES_IN_FLIGHT,
    ) -> None:
        self.client = client
        self.files = files
        self.stats = stats
        self.on_bytes = on_bytes
        self.in_flight = in_flight

    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)

    async def messages(self) -> AsyncGenerator[FileBatch, None]:
        pending: deque[tuple[ArchivedLogFile, asyncio.Task[BinaryIO]]] = deque()
        upcoming = iter(self.files)
        count = 0
        try:
            while True:
                while len(pending) < self.in_flight and (file := next(upcoming, None)) is not None:
                    pending.append((file, asyncio.ensure_future(fetch_log_file(self.client, file.ref()))))
                if not pending:
                    break
                file, fetch = pending.popleft()
                try:
                    stream = await fetch
                except LogFileError as exc:
                    self.stats.files_unreadable += 1
                    log.error("input_unreadable", error=str(exc))
                    continue
                try:
                    for documents in _batches(documents_of_log_file(stream, log_file_location(file.ref()))):
                        count += 1
                        yield FileBatch(f"batch-{count}", documents)
                finally:
                    stream.close()
                self.stats.files_read += 1
                if self.on_bytes is not None:
                    self.on_bytes(file.size)
        finally:
            for _, fetch in pending:
                fetch.cancel()
            for _, fetch in pending:
                if fetch.done() and not fetch.cancelled() and fetch.exception() is None:
                    fetch.result().close()

    async def aclose(self) -> None:
        return None


def _batches(documents: Iterator[Decodable]) -> Iterator[list[Decodable]]:
    batch: list[Decodable] = []
    weight = 0  # about how many events the batch holds: its memory bound
    for document in documents:
        batch.append(document)
        weight += approximate_events(document)
        if weight >= BATCH_DOCUMENTS:
            yield batch
            batch, weight = [], 0
    if batch:
        yield batch
