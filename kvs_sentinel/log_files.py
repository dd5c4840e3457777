"""Expanding the log files a message points at (S3 object notifications) into the documents they hold,
judged and delivered as they are read. A wrapper over any source's messages: the pipeline knows this
module and a `LogFileReader`, never where the files come from (sources/s3.py fetches them from S3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import structlog

from kvs_sentinel.engine import Outcome, Processor
from kvs_sentinel.envelopes import Decodable, LogFileRef, Malformed
from kvs_sentinel.errors import InputError

log = structlog.get_logger("kvs_sentinel.log_files")

MAX_RECORDS = 5_000_000  # a busy account's 5-minute file holds tens of thousands
MAX_SECONDS = 300.0


class LogFileError(InputError):
    """A log file could not be fetched. `retryable`: whether trying again soon may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class LogFileBudget:
    """What one log file may cost before the rest of it is counted malformed: a hostile object (a gzip of
    billions of tiny lines) must not hold a worker for hours. Seconds are those spent reading and judging
    the object, not waiting on sinks."""

    max_records: int = MAX_RECORDS
    max_seconds: float = MAX_SECONDS


class LogFileReader(Protocol):
    """Fetches the log file a reference names, and cuts it into documents."""

    budget: LogFileBudget

    async def open(self, ref: LogFileRef) -> BinaryIO:
        """The object as a seekable stream the caller closes; raises LogFileError."""

    def documents(self, stream: BinaryIO, ref: LogFileRef) -> Iterator[Decodable]: ...


Deliver = Callable[[Outcome], Awaitable[None]]


class LogFileExpander:
    def __init__(self, reader: LogFileReader, processor: Processor) -> None:
        self.reader = reader
        self.processor = processor

    async def expand(self, ref: LogFileRef, deliver: Deliver) -> None:
        """The file's documents judged and their alerts delivered chunk by chunk (memory stays flat);
        raises LogFileError, or what `deliver` raises. After a failure, the redelivered message skips
        the alerts already delivered (the pipeline's dedupe)."""
        stats = self.processor.stats
        budget = self.reader.budget
        stream = await self.reader.open(ref)
        first_event, seconds = stats.events, 0.0
        try:
            items = iter(self.reader.documents(stream, ref))
            while True:
                started = time.perf_counter()  # only the synchronous work: sinks' waits don't count
                item = next(items, None)
                outcome = self.processor.process(item) if item is not None else None
                seconds += time.perf_counter() - started
                if outcome is None:
                    break
                await deliver(outcome)
                records = stats.events - first_event
                if records > budget.max_records or seconds > budget.max_seconds:
                    self._over_budget(ref, budget, records, seconds)
                    break
                await asyncio.sleep(0)  # the heartbeat, the probes and the other workers run
        finally:
            stream.close()
        log.info("log_file_processed", bucket=ref.bucket, key=ref.key)

    def _over_budget(self, ref: LogFileRef, budget: LogFileBudget, records: int, seconds: float) -> None:
        self.processor.stats.report_malformed(
            Malformed(
                f"s3://{ref.bucket}/{ref.key}",
                f"over its budget ({records} records, {seconds:.1f} s; limits {budget.max_records} records, "
                f"{budget.max_seconds:g} s): the rest of the object was not read",
            )
        )
        log.error(
            "log_file_over_budget", bucket=ref.bucket, key=ref.key, records=records, seconds=round(seconds, 1)
        )
