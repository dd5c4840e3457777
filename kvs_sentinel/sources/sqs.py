"""Amazon SQS: long-polling pollers, a bounded number of messages in flight, batched deletes.

Several pollers long-poll one queue and share a semaphore of `max_in_flight` slots: a poller takes the
slots it can (at least one, at most `max_messages`) before each ReceiveMessage, and a message gives its
slot back when it is acked or retried. So a slow pipeline stops the receiving, and memory stays flat.

`ack()` queues the message for DeleteMessageBatch (sqs_acks.py): ten at a time, or `ack_flush_seconds`
after the first pending ack, and on `aclose()`.
`retry()` never deletes: it sets the visibility timeout to a backoff that doubles with the receive count,
so a message that never succeeds reaches the queue's DLQ through its redrive policy. `stop()` also cuts
short the long polls under way: a message SQS handed to a cancelled receive is invisible until its
visibility timeout ends, then delivered again (delayed, never lost).

The client, its configuration and the AWS environment it follows are in sqs_client.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import structlog

from kvs_sentinel.clock import SYSTEM_CLOCK, Clock
from kvs_sentinel.envelopes import Document
from kvs_sentinel.events import Location
from kvs_sentinel.sources.base import Message, SourceConfig
from kvs_sentinel.sources.registry import register_source
from kvs_sentinel.sources.sqs_acks import DELETE_BATCH, AckBatcher
from kvs_sentinel.sources.sqs_client import (
    MAX_VISIBILITY_SECONDS,
    RECEIVE_ERROR_BACKOFF_CAP,
    ClientFactory,
    SqsClient,
    SqsSourceConfig,
    aiobotocore_client,
    queue_name,
    queue_region,
    retry_visibility,
)
from kvs_sentinel.sources.sqs_client import aws_errors as _aws_errors
from kvs_sentinel.sources.sqs_client import error_text as _error_text

log = structlog.get_logger("kvs_sentinel.sources.sqs")


@dataclass
class SqsCounts:
    """What the source did: read by the metrics endpoint and the closing summary."""

    received: int = 0
    acked: int = 0
    deleted: int = 0
    delete_failed: int = 0
    delete_batches: int = 0
    retried: int = 0
    extended: int = 0
    receive_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(eq=False)
class SqsMessage:
    """One SQS message: a single document (the body), acked or retried exactly once."""

    id: str
    documents: Sequence[Document]
    receipt_handle: str
    receive_count: int
    sent_at: float | None  # epoch seconds (SentTimestamp), for the queue lag
    _source: SqsSource = field(repr=False)
    settled: bool = False
    received_at: float = field(default_factory=time.monotonic)  # for the processing-time metric

    async def ack(self) -> None:
        """Delete it (batched). Call only once every alert it produced was delivered."""
        if self._settle():
            await self._source._ack(self)

    async def retry(self, reason: str) -> None:
        """Leave it on the queue, visible again after the backoff for its receive count."""
        if self._settle():
            await self._source._retry(self, reason)

    async def extend(self, seconds: int) -> None:
        """Keep it invisible for `seconds` from now (long work); ignored once settled."""
        if not self.settled:
            await self._source._change_visibility(self, seconds, "extended")

    @contextlib.asynccontextmanager
    async def heartbeat(self, every: float | None = None, seconds: int | None = None) -> AsyncIterator[None]:
        """While the block runs, extend visibility to `seconds` (default: the configured timeout) every
        `every` seconds (default: half of it). The block must yield to the loop now and then."""
        seconds = seconds or self._source.config.visibility_timeout
        interval = every if every is not None else seconds / 2
        task = asyncio.create_task(self._beat(interval, seconds))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _beat(self, interval: float, seconds: int) -> None:
        while True:
            await self._source.clock.sleep(interval)
            await self.extend(seconds)

    def _settle(self) -> bool:
        if self.settled:
            log.warning("message_already_settled", message_id=self.id)
            return False
        self.settled = True
        self._source._give_back(1)
        return True


@register_source("sqs")
class SqsSource:
    """The `Source` for `run`. Use `async with`, or call `aclose()`: it flushes pending deletes."""

    Config = SqsSourceConfig

    @classmethod
    def from_config(cls, config: SourceConfig) -> SqsSource:
        if not isinstance(config, SqsSourceConfig):
            raise TypeError(f"an SQS source needs SqsSourceConfig, not {type(config).__name__}")
        return cls(config)

    def __init__(
        self,
        config: SqsSourceConfig,
        *,
        client_factory: ClientFactory = aiobotocore_client,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.queue_name = queue_name(config.queue_url)
        self.client_factory = client_factory
        self.clock = clock
        self.counts = SqsCounts()
        self.ready = False  # the last SQS call succeeded: for /readyz
        self._slots = asyncio.BoundedSemaphore(config.max_in_flight)
        self._held = 0
        self._stopping = asyncio.Event()
        self._shut = False  # the client is closed
        self._stack = AsyncExitStack()
        self._client: SqsClient | None = None
        self._client_lock = asyncio.Lock()
        self._acks = AckBatcher(
            config.queue_url,
            self.queue_name,
            self.client,
            self.counts,
            config.ack_flush_seconds,
            clock,
            _aws_errors,
            _error_text,
        )

    async def __aenter__(self) -> SqsSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def name(self) -> str:
        return self.queue_name

    @property
    def in_flight(self) -> int:
        """Messages received and not yet acked or retried (plus slots a poller holds for a receive)."""
        return self._held

    async def client(self) -> SqsClient:
        if self._shut:
            raise RuntimeError(f"the SQS source for {self.queue_name} is closed")
        async with self._client_lock:
            if self._client is None:
                self._client = await self._stack.enter_async_context(self.client_factory(self.config))
            return self._client

    def stop(self) -> None:
        """No new ReceiveMessage: `messages()` ends once the receives under way have answered."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """stop() was called: nothing new is received."""
        return self._stopping.is_set()

    async def startup_check(self) -> bool:
        """Whether the queue is reachable; warns `queue_has_no_redrive_policy` when it has no DLQ."""
        try:
            client = await self.client()
            response = await client.get_queue_attributes(
                QueueUrl=self.config.queue_url, AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
            )
        except _aws_errors() as exc:
            self.ready = False
            log.error("queue_unreachable", queue=self.queue_name, error=_error_text(exc))
            return False
        self.ready = True
        attributes = response.get("Attributes", {})
        if "RedrivePolicy" not in attributes:
            log.warning(
                "queue_has_no_redrive_policy",
                queue=self.queue_name,
                consequence="a message that always fails is retried until it expires, never dead-lettered",
            )
        else:
            log.info("queue_checked", queue=self.queue_name, redrive_policy=attributes["RedrivePolicy"])
        return True

    async def messages(self) -> AsyncGenerator[SqsMessage, None]:
        client = await self.client()
        ready: asyncio.Queue[SqsMessage | None] = asyncio.Queue()
        pollers = [asyncio.create_task(self._poll(client, ready)) for _ in range(self.config.pollers)]
        running = len(pollers)
        try:
            while running:
                message = await ready.get()
                if message is None:
                    running -= 1
                else:
                    yield message
            for task in pollers:
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise error
        finally:
            for task in pollers:
                task.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)
            leftover = [m for m in _drain(ready) if not m.settled]
            if leftover:  # received, never handed out: visible again at once for another consumer
                await self._release(leftover)

    async def _poll(self, client: SqsClient, ready: asyncio.Queue[SqsMessage | None]) -> None:
        failures = 0
        try:
            while not self._stopping.is_set():
                taken = await self._take_slots()
                received: list[SqsMessage] = []
                try:
                    if self._stopping.is_set():
                        break
                    receive = asyncio.ensure_future(self._receive(client, taken))
                    if not await self._unless_stopped(receive):
                        break  # stop() cut the long poll short
                    received = receive.result()
                except _aws_errors() as exc:
                    failures += 1
                    self.counts.receive_errors += 1
                    self.ready = False
                    log.error("receive_failed", queue=self.queue_name, error=_error_text(exc))
                    await self._unless_stopped(
                        self.clock.sleep(min(RECEIVE_ERROR_BACKOFF_CAP, 2.0 ** (failures - 1)))
                    )
                    continue
                finally:
                    self._give_back(taken - len(received))
                failures = 0
                for message in received:
                    ready.put_nowait(message)
        finally:
            ready.put_nowait(None)

    async def _take_slots(self) -> int:
        """At least one in-flight slot (waiting for it unless stopped: then 0), and up to `max_messages`."""
        if not await self._unless_stopped(self._slots.acquire()):
            return 0
        taken = 1
        while taken < self.config.max_messages and not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            taken += 1
        self._held += taken
        return taken

    async def _unless_stopped(self, work: Awaitable[object]) -> bool:
        """Await `work` unless stop() comes first (then it is cancelled); whether it completed."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (task, stopping):
                waiting.cancel()
            await asyncio.gather(task, stopping, return_exceptions=True)
        return not task.cancelled()

    def _give_back(self, slots: int) -> None:
        self._held -= slots
        for _ in range(slots):
            self._slots.release()

    async def _receive(self, client: SqsClient, count: int) -> list[SqsMessage]:
        response = await client.receive_message(
            QueueUrl=self.config.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self.config.wait_time_seconds,
            VisibilityTimeout=self.config.visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        self.ready = True
        received = [self._message(raw) for raw in response.get("Messages", [])[:count]]
        self.counts.received += len(received)
        return received

    def _message(self, raw: Mapping[str, Any]) -> SqsMessage:
        message_id = str(raw["MessageId"])
        attributes = raw.get("Attributes", {})
        sent = attributes.get("SentTimestamp")
        return SqsMessage(
            id=message_id,
            documents=[Document(raw.get("Body", ""), Location(f"sqs:{self.queue_name}/{message_id}"))],
            receipt_handle=str(raw["ReceiptHandle"]),
            receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            sent_at=int(sent) / 1000 if sent else None,
            _source=self,
        )

    # --- acks -------------------------------------------------------------------------------------------

    async def _ack(self, message: SqsMessage) -> None:
        self.counts.acked += 1
        if self._shut:
            log.warning("message_acked_after_close", message_id=message.id, consequence="redelivered later")
            return
        await self._acks.add(message)

    async def flush(self) -> None:
        """Delete every pending acked message now, in batches of 10."""
        await self._acks.flush()

    # --- visibility -------------------------------------------------------------------------------------

    async def _retry(self, message: SqsMessage, reason: str) -> None:
        self.counts.retried += 1
        delay = retry_visibility(
            message.receive_count,
            self.config.retry_backoff_base_seconds,
            self.config.retry_backoff_max_seconds,
        )
        log.warning(
            "message_retried",
            message_id=message.id,
            receive_count=message.receive_count,
            visible_in=delay,
            reason=reason,
        )
        await self._change_visibility(message, delay, "retry")

    async def _change_visibility(self, message: SqsMessage, seconds: int, why: str) -> None:
        seconds = max(0, min(MAX_VISIBILITY_SECONDS, int(seconds)))
        if self._shut:
            log.warning("visibility_change_after_close", message_id=message.id, purpose=why)
            return
        try:
            client = await self.client()
            await client.change_message_visibility(
                QueueUrl=self.config.queue_url,
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except _aws_errors() as exc:
            log.error(
                "visibility_change_failed",
                message_id=message.id,
                purpose=why,
                seconds=seconds,
                error=_error_text(exc),
            )
            return
        if why == "extended":
            self.counts.extended += 1

    async def release(self, messages: Sequence[Message]) -> None:
        """Give messages nobody will process back to the queue at once (visibility 0), never deleting."""
        mine = [m for m in messages if isinstance(m, SqsMessage) and m._source is self and not m.settled]
        await self._release(mine)

    async def _release(self, messages: list[SqsMessage]) -> None:
        """Give unprocessed messages back to the queue at once (visibility 0), never deleting them."""
        for message in messages:
            message.settled = True
            self._give_back(1)
        if self._client is None:
            return
        for start in range(0, len(messages), DELETE_BATCH):
            batch = messages[start : start + DELETE_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                for i, m in enumerate(batch)
            ]
            try:
                await self._client.change_message_visibility_batch(
                    QueueUrl=self.config.queue_url, Entries=entries
                )
            except _aws_errors() as exc:
                log.warning("messages_release_failed", count=len(batch), error=_error_text(exc))

    async def aclose(self) -> None:
        """Stop receiving, send pending deletes, close the client."""
        self.stop()
        try:
            await self._acks.close()
        finally:
            self._shut = True
            await self._stack.aclose()
            self._client = None


def _drain(queue: asyncio.Queue[SqsMessage | None]) -> list[SqsMessage]:
    items: list[SqsMessage] = []
    while not queue.empty():
        item = queue.get_nowait()
        if item is not None:
            items.append(item)
    return items


__all__ = [
    "MAX_VISIBILITY_SECONDS",
    "SqsClient",
    "SqsCounts",
    "SqsMessage",
    "SqsSource",
    "SqsSourceConfig",
    "aiobotocore_client",
    "queue_name",
    "queue_region",
    "retry_visibility",
]
