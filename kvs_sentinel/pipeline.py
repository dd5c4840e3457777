"""source → bounded queue → workers → engine → sinks → ack.

The queue is bounded, so a slow sink slows receiving instead of growing memory. A message is acknowledged
only after every alert it produced was delivered to every sink; any failure leaves it for retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from kvs_sentinel.engine import Outcome, Processor
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.sinks.base import Sink
from kvs_sentinel.sources.base import Message, Source

log = structlog.get_logger("kvs_sentinel.pipeline")


@dataclass
class PipelineCounts:
    messages_done: int = 0
    messages_failed: int = 0
    alerts_delivered: int = 0


class Pipeline:
    def __init__(
        self,
        source: Source,
        processor: Processor,
        sinks: Sequence[Sink],
        *,
        workers: int = 1,
        queue_size: int = 8,
    ) -> None:
        self.source = source
        self.processor = processor
        self.sinks = tuple(sinks)
        self.workers = workers
        self.queue_size = queue_size
        self.counts = PipelineCounts()

    async def run(self, stop: asyncio.Event | None = None) -> PipelineCounts:
        stop = stop or asyncio.Event()
        queue: asyncio.Queue[Message | None] = asyncio.Queue(self.queue_size)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._receive(queue, stop))
            for _ in range(self.workers):
                group.create_task(self._work(queue))
        return self.counts

    async def _receive(self, queue: asyncio.Queue[Message | None], stop: asyncio.Event) -> None:
        try:
            async for message in self.source.messages():
                await queue.put(message)
                if stop.is_set():
                    break
        finally:
            for _ in range(self.workers):
                await queue.put(None)

    async def _work(self, queue: asyncio.Queue[Message | None]) -> None:
        while (message := await queue.get()) is not None:
            await self.handle(message)

    async def handle(self, message: Message) -> None:
        structlog.contextvars.bind_contextvars(message_id=message.id)
        try:
            outcome = Outcome()
            for document in message.documents:
                self.processor.process(document, outcome)
            await self.deliver(outcome)
        except DeliveryError as exc:
            self.counts.messages_failed += 1
            log.error("message_delivery_failed", error=str(exc), retryable=exc.retryable)
            await message.retry(str(exc))
        except Exception as exc:
            self.counts.messages_failed += 1
            log.exception("message_failed", error=repr(exc))
            await message.retry(repr(exc))
        else:
            await message.ack()
            self.counts.messages_done += 1
        finally:
            structlog.contextvars.unbind_contextvars("message_id")

    async def deliver(self, outcome: Outcome) -> None:
        for alert in outcome.alerts:
            for sink in self.sinks:
                await sink.send(alert)
        if outcome.alerts:
            for sink in self.sinks:
                await sink.flush()
            self.counts.alerts_delivered += len(outcome.alerts)
