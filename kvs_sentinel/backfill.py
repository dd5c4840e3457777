"""`backfill`: history through the running service. Each archived log file becomes one S3 object
notification on the service's queue, in the form S3 itself sends, so the ECS service (which scales on queue
depth) reads months of CloudTrail in parallel with nothing new to run, and a file that fails is retried
and dead-lettered alone, like a live one.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from kvs_sentinel.errors import SentinelError
from kvs_sentinel.retry import RetryPolicy
from kvs_sentinel.sources.s3_archive import ArchivedLogFile

SQS_BATCH = 10  # SendMessageBatch's limit


class BackfillError(SentinelError):
    """Notifications could not be enqueued (the queue is missing, refuses them, or stays unreachable)."""


DEFAULT_POLICY = RetryPolicy()


@dataclass
class BackfillCounts:
    files: int = 0
    bytes: int = 0


def notification(file: ArchivedLogFile) -> str:
    """An S3 `ObjectCreated` event notification for one log file (keys URL-encoded, as S3 does)."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": file.bucket, "arn": f"arn:aws:s3:::{file.bucket}"},
            "object": {"key": quote_plus(file.key, safe="/"), "size": file.size},
        },
    }
    return json.dumps({"Records": [record]}, separators=(",", ":"))


async def backfill(
    sqs: Any,
    queue_url: str,
    files: Iterable[ArchivedLogFile],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_sent: Callable[[BackfillCounts], None] | None = None,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> BackfillCounts:
    """Enqueue a notification per file, ten per call; entries SQS refuses are sent again with backoff.
    Raises BackfillError once an entry has failed `policy.max_attempts` times (what was sent stays sent:
    a second backfill of the same range sends those files again, and the service's dedupe absorbs that)."""
    counts = BackfillCounts()
    batch: list[ArchivedLogFile] = []
    for file in files:
        batch.append(file)
        if len(batch) == SQS_BATCH:
            await _send(sqs, queue_url, batch, policy, sleep)
            _count(counts, batch, on_sent)
            batch = []
    if batch:
        await _send(sqs, queue_url, batch, policy, sleep)
        _count(counts, batch, on_sent)
    return counts


def _count(counts: BackfillCounts, batch: list[ArchivedLogFile], on_sent: Callable[..., None] | None) -> None:
    counts.files += len(batch)
    counts.bytes += sum(file.size for file in batch)
    if on_sent is not None:
        on_sent(counts)


async def _send(
    sqs: Any, queue_url: str, batch: list[ArchivedLogFile], policy: RetryPolicy, sleep: Callable[[float], Any]
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    rng = random.Random()
    unsent = {str(i): file for i, file in enumerate(batch)}
    last = ""
    for attempt in range(1, policy.max_attempts + 1):
        entries = [{"Id": id_, "MessageBody": notification(file)} for id_, file in unsent.items()]
        try:
            response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            last = f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": ")
            if error.get("Code") in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise BackfillError(f"{queue_url}: {last}") from None
        except (BotoCoreError, OSError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            for sent in response.get("Successful", ()):
                unsent.pop(sent["Id"], None)
            failed = response.get("Failed", ())
            if failed:
                last = f"{failed[0].get('Code', '')}: {failed[0].get('Message', '')}"
                if any(entry.get("SenderFault") for entry in failed):
                    raise BackfillError(f"{queue_url}: SQS refused a notification: {last}")
            if not unsent:
                return
        if attempt < policy.max_attempts:
            await sleep(policy.backoff(attempt, rng))
    raise BackfillError(f"{queue_url}: gave up after {policy.max_attempts} attempts, last: {last}")
