"""source → bounded queue → workers → engine → dispatcher (suppress, route, group, send) → ack.

The queue is bounded, so a slow sink slows receiving instead of growing memory. A message is acknowledged
only after every alert it produced was accepted by every sink it was routed to (suppressed alerts and
grouped repeats count as handled); any failure leaves it for retry. While workers run, a ticker sends the
summaries of grouping windows as they end; when the source is exhausted (or stopped), every open window
is closed and summarised before `run` returns.

`run` adds three optional collaborators, which `replay` does without: a `LogFileReader` (messages that
point at CloudTrail log files in S3 have them fetched and processed, with the message's visibility
extended meanwhile), an `AlertDeduper` (an alert already delivered for the same detector and eventID is
not sent again when SQS redelivers its event) and `Metrics`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from kvs_sentinel.alerts import Alert
from kvs_sentinel.dedupe import AlertDeduper
from kvs_sentinel.engine import Outcome, Processor
from kvs_sentinel.envelopes import LogFileRef
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.log_files import LogFileError, LogFileExpander, LogFileReader
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.sinks.base import Sink
from kvs_sentinel.sources.base import Message, Source
from kvs_sentinel.state.base import StateError
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.stateful import StatefulJudge

if TYPE_CHECKING:
    from kvs_sentinel.metrics import Metrics  # prometheus_client: only `run` loads it

log = structlog.get_logger("kvs_sentinel.pipeline")


@dataclass
class PipelineCounts:
    messages_done: int = 0
    messages_failed: int = 0
    messages_unreadable: int = 0  # left for the redrive policy: a part could not be read
    alerts_delivered: int = 0
    alerts_deduplicated: int = 0
    log_files_read: int = 0


class Pipeline:
    def __init__(
        self,
        source: Source,
        processor: Processor,
        dispatcher: Dispatcher,
        *,
        workers: int = 1,
        queue_size: int = 8,
        log_files: LogFileReader | None = None,
        dedupe: AlertDeduper | None = None,
        metrics: Metrics | None = None,
        log_alerts: bool = False,
        judge: StatefulJudge | None = None,
    ) -> None:
        self.source = source
        self.processor = processor
        self.dispatcher = dispatcher
        self.workers = workers
        self.queue_size = queue_size
        self.log_files = log_files
        self.dedupe = dedupe
        self.metrics = metrics
        self.log_alerts = log_alerts  # one log line per alert sent (run); replay writes alerts instead
        # what stateful detectors remember: given by the composition root, else one run's memory
        self.judge = judge or StatefulJudge(MemoryStore(), processor.stats)
        self.counts = PipelineCounts()
        self.state_failing = False  # the last message that asked the store saw it fail (/readyz)

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return tuple(self.dispatcher.sinks.values())

    async def run(self, stop: asyncio.Event | None = None) -> PipelineCounts:
        stop = stop or asyncio.Event()
        queue: asyncio.Queue[Message | None] = asyncio.Queue(self.queue_size)
        # the dispatcher sends grouping summaries as windows end; when the source is done, the windows
        # still open end, and their summaries go out
        async with self.dispatcher.running(), asyncio.TaskGroup() as group:
            group.create_task(self._receive(queue, stop))
            for _ in range(self.workers):
                group.create_task(self._work(queue))
        return self.counts

    async def _receive(self, queue: asyncio.Queue[Message | None], stop: asyncio.Event) -> None:
        messages = self.source.messages()
        try:
            async for message in messages:
                await queue.put(message)
                if stop.is_set():
                    break
        finally:
            await messages.aclose()  # now, not when collected: a source releases what it received
            for _ in range(self.workers):
                await queue.put(None)

    async def _work(self, queue: asyncio.Queue[Message | None]) -> None:
        while (message := await queue.get()) is not None:
            await self.handle(message)

    async def handle(self, message: Message) -> None:
        structlog.contextvars.bind_contextvars(message_id=message.id)
        try:
            # The message stays invisible while it is worked on (slow sinks, big log files): were it to
            # reappear, another worker could deliver its alerts a second time.
            async with message.heartbeat():
                outcome = Outcome()
                for document in message.documents:
                    self.processor.process(document, outcome)
                await self.deliver(outcome)
                if outcome.log_files and self.log_files is not None:
                    await self._read_log_files(outcome.log_files, self.log_files)
                if outcome.malformed:
                    raise _Unreadable(outcome.malformed)
        except StateError as exc:
            # a stateful detector could not be judged: the message comes back, it is never acked on a guess
            self.counts.messages_failed += 1
            self.state_failing = True
            if self.metrics is not None:
                self.metrics.state_failed(retryable=exc.retryable)
            log.error("message_state_failed", error=str(exc), retryable=exc.retryable)
            await message.retry(str(exc))
        except DeliveryError as exc:
            self.counts.messages_failed += 1
            log.error("message_delivery_failed", error=str(exc), retryable=exc.retryable)
            await message.retry(str(exc))
        except _Unreadable as exc:
            # What cannot be read (or has an envelope we don't know) may hide an event: it stays on the
            # queue, and its redrive policy moves it to the DLQ, where an operator can find it. Its
            # readable events were judged and their alerts delivered.
            self.counts.messages_unreadable += 1
            if self.metrics is not None:
                self.metrics.message_unreadable()
            await message.retry(str(exc))
        except LogFileError as exc:
            self.counts.messages_failed += 1
            log.error("log_file_failed", error=str(exc), retryable=exc.retryable)
            await message.retry(str(exc))
        except Exception as exc:
            self.counts.messages_failed += 1
            log.exception("message_failed", error=repr(exc))
            await message.retry(repr(exc))
        else:
            await message.ack()
            self.counts.messages_done += 1
        finally:
            if self.metrics is not None:
                self.metrics.message_processed(time.monotonic() - message.received_at)
            structlog.contextvars.unbind_contextvars("message_id")

    async def _read_log_files(self, refs: Sequence[LogFileRef], reader: LogFileReader) -> None:
        expander = LogFileExpander(reader, self.processor)
        for ref in refs:
            await expander.expand(ref, self.deliver)
            self.counts.log_files_read += 1

    async def deliver(self, outcome: Outcome) -> None:
        """The pending stateful checks judged, then every alert to the sinks it is routed to; raises
        StateError when the store fails, DeliveryError unless every sink accepted every alert."""
        if outcome.pending:
            outcome.alerts.extend(await self.judge.judge(outcome.pending))
            outcome.pending.clear()
            self.state_failing = False
        alerts = outcome.alerts
        if not alerts:
            return
        dedupe = self.dedupe
        if dedupe is None:
            await self.dispatcher.deliver(alerts)
            self._delivered(alerts)
            return
        for alert in alerts:
            if await self._already_sent(alert, dedupe):
                continue
            # one at a time, each recorded once delivered: if a later one fails, the redelivered
            # message resends only what was not delivered yet
            await self.dispatcher.deliver([alert])
            await dedupe.record(alert.detector, alert.event_id)
            self._delivered([alert])

    def _delivered(self, alerts: Sequence[Alert]) -> None:
        self.counts.alerts_delivered += len(alerts)
        for alert in alerts:
            if self.metrics is not None:
                self.metrics.alert_emitted(alert.detector, alert.severity)
            if self.log_alerts:
                log.info(
                    "alert_dispatched",
                    detector=alert.detector,
                    severity=alert.severity,
                    event_id=alert.event_id,
                    event_name=alert.event_name,
                )

    async def _already_sent(self, alert: Alert, dedupe: AlertDeduper) -> bool:
        if not await dedupe.is_duplicate(alert.detector, alert.event_id):
            return False
        self.counts.alerts_deduplicated += 1
        if self.metrics is not None:
            self.metrics.alert_deduplicated(alert.detector)
        log.info("alert_deduplicated", detector=alert.detector, event_id=alert.event_id)
        return True


class _Unreadable(Exception):
    def __init__(self, parts: int) -> None:
        super().__init__(f"{parts} part(s) of the message could not be read; kept for the redrive policy")
