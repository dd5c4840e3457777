"""Batched deletes for the SQS source: acked messages go out ten at a time, or after a short wait.

`add()` queues a message for DeleteMessageBatch: the batch goes out when 10 are pending (that ack awaits
it, a natural brake if SQS is slow) or `flush_seconds` after the first pending ack, and on `close()`.
A failed entry is logged and counted; the message comes back and alert dedupe absorbs the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog

from kvs_sentinel.clock import Clock

log = structlog.get_logger("kvs_sentinel.sources.sqs")

DELETE_BATCH = 10  # the SQS maximum per DeleteMessageBatch


class Deletable(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def receipt_handle(self) -> str: ...


class Deleter(Protocol):
    async def delete_message_batch(self, **request: Any) -> Mapping[str, Any]: ...


class DeleteCounts(Protocol):
    deleted: int
    delete_failed: int
    delete_batches: int


class AckBatcher:
    def __init__(
        self,
        queue_url: str,
        queue_name: str,
        client: Callable[[], Awaitable[Deleter]],
        counts: DeleteCounts,
        flush_seconds: float,
        clock: Clock,
        errors: Callable[[], tuple[type[BaseException], ...]],
        error_text: Callable[[BaseException], str],
    ) -> None:
        self.queue_url = queue_url
        self.queue_name = queue_name
        self.client = client
        self.counts = counts
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.errors = errors
        self.error_text = error_text
        self.closed = False  # close() began: no more delayed flushes
        self._pending: list[Deletable] = []
        self._pending_since = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._timed_flush: asyncio.Future[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def add(self, message: Deletable) -> None:
        self._pending.append(message)
        if len(self._pending) >= DELETE_BATCH:
            await self.flush()
        elif not self.closed:
            self._pending_since.set()
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        while not self.closed:
            await self._pending_since.wait()
            await self.clock.sleep(self.flush_seconds)
            self._timed_flush = asyncio.ensure_future(self.flush())
            await asyncio.shield(self._timed_flush)  # close() cancels the wait, never a delete under way

    async def flush(self) -> None:
        """Delete every pending acked message now, in batches of 10."""
        self._pending_since.clear()
        while self._pending:
            batch, self._pending = self._pending[:DELETE_BATCH], self._pending[DELETE_BATCH:]
            await self._delete(batch)

    async def _delete(self, batch: list[Deletable]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch)]
        self.counts.delete_batches += 1
        try:
            client = await self.client()
            response = await client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            failed = [
                (batch[int(entry["Id"])].id, f"{entry.get('Code')}: {entry.get('Message', '')}".rstrip(": "))
                for entry in response.get("Failed", [])
            ]
        except self.errors() as exc:
            failed = [(message.id, self.error_text(exc)) for message in batch]
        self.counts.deleted += len(batch) - len(failed)
        self.counts.delete_failed += len(failed)
        for message_id, error in failed:
            log.error(
                "message_delete_failed",
                queue=self.queue_name,
                message_id=message_id,
                error=error,
                consequence="redelivered later; alert dedupe absorbs the repeat",
            )

    async def close(self) -> None:
        """No more timed flushes; wait for one under way, then delete what is pending."""
        self.closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._timed_flush is not None:
            await self._timed_flush
        await self.flush()
