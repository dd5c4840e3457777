"""source → bounded queue → workers → engine → dispatcher (suppress, route, group, send) → ack.

The queue is bounded, so a slow sink slows receiving instead of growing memory. A message is acknowledged
only after every alert it produced was accepted by every sink it was routed to (suppressed alerts and
grouped repeats count as handled); any failure leaves it for retry. While workers run, a ticker sends the
summaries of grouping windows as they end; when the source is exhausted (or stopped), every open window
is closed and summarised before `run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from kvs_sentinel.engine import Outcome, Processor
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.sinks.base import Sink
from kvs_sentinel.sources.base import Message, Source

log = structlog.get_logger("kvs_sentinel.pipeline")
IDLE_TICK_SECONDS = 1.0


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
        sinks: Sequence[Sink] = (),
        *,
        dispatcher: Dispatcher | None = None,
        workers: int = 1,
        queue_size: int = 8,
    ) -> None:
        if dispatcher is not None and sinks:
            raise ValueError("give sinks or a dispatcher, not both")
        self.source = source
        self.processor = processor
        self.dispatcher = dispatcher or Dispatcher.broadcast(sinks)
        self.workers = workers
        self.queue_size = queue_size
        self.counts = PipelineCounts()

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return tuple(self.dispatcher.sinks.values())

    async def run(self, stop: asyncio.Event | None = None) -> PipelineCounts:
        stop = stop or asyncio.Event()
        queue: asyncio.Queue[Message | None] = asyncio.Queue(self.queue_size)
        finished = asyncio.Event()
        async with asyncio.TaskGroup() as outer:
            outer.create_task(self._tick(finished))
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._receive(queue, stop))
                    for _ in range(self.workers):
                        group.create_task(self._work(queue))
            finally:
                finished.set()
        # the source is done: windows still open end now, and their summaries go out
        await self.dispatcher.drain()
        return self.counts

    async def _tick(self, finished: asyncio.Event) -> None:
        """Send grouping summaries when windows end, until the workers are done."""
        clock = self.dispatcher.clock
        while not finished.is_set():
            delay = self.dispatcher.seconds_to_next_deadline()
            sleeper = asyncio.ensure_future(clock.sleep(IDLE_TICK_SECONDS if delay is None else delay))
            waiter = asyncio.ensure_future(finished.wait())
            try:
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waiter):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if not finished.is_set():
                await self.dispatcher.emit_due()

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
        """Every alert to the sinks it is routed to; raises DeliveryError unless all accepted it."""
        if outcome.alerts:
            await self.dispatcher.deliver(outcome.alerts)
            self.counts.alerts_delivered += len(outcome.alerts)
