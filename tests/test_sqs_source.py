"""The SQS source against a real (moto server) queue, reached through the standard AWS environment."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from kvs_sentinel.sources.sqs import (
    SqsClient,
    SqsMessage,
    SqsSource,
    SqsSourceConfig,
    aiobotocore_client,
    queue_region,
    retry_visibility,
)
from kvs_sentinel.testing import FakeClock
from tests.aws_fixtures import moto_server
from tests.support.queues import make_filled_queue, queue_counts

__all__ = ["moto_server"]


class Recorder:
    """The real client, with every call recorded (what was asked, and whether stop() was already set)."""

    def __init__(self, client: SqsClient, source: list[SqsSource]) -> None:
        self.client = client
        self.source = source
        self.calls: list[tuple[str, dict[str, Any], bool]] = []
        self.answered: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(**request: Any) -> Any:
            stopped = bool(self.source) and self.source[0]._stopping.is_set()
            self.calls.append((name, request, stopped))
            response = await method(**request)
            self.answered[name].set()
            return response

        return call

    def requests(self, name: str) -> list[dict[str, Any]]:
        return [request for called, request, _ in self.calls if called == name]


@contextlib.asynccontextmanager
async def recorded_source(
    url: str, clock: Any = None, **settings: Any
) -> AsyncIterator[tuple[SqsSource, Recorder]]:
    config = SqsSourceConfig(queue_url=url, **{"wait_time_seconds": 1, **settings})
    holder: list[SqsSource] = []
    recorders: list[Recorder] = []

    @contextlib.asynccontextmanager
    async def factory(config: SqsSourceConfig) -> AsyncIterator[SqsClient]:
        async with aiobotocore_client(config) as client:
            recorders.append(Recorder(client, holder))
            yield recorders[-1]  # type: ignore[misc]

    source = SqsSource(config, client_factory=factory, clock=clock or FakeClock(autoadvance=False))
    holder.append(source)
    await source.client()
    async with source:
        yield source, recorders[0]


def test_retry_visibility_doubles_per_receive_and_is_capped() -> None:
    assert [retry_visibility(n, 10, 900) for n in (1, 2, 3, 4, 7, 8, 1000)] == [10, 20, 40, 80, 640, 900, 900]
    assert retry_visibility(0, 10, 900) == 10
    assert retry_visibility(40, 10, 10**9) == 43_200  # never past the SQS maximum


def test_region_comes_from_the_queue_url() -> None:
    assert queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/q") == "eu-west-1"
    assert queue_region("https://eu-west-2.queue.amazonaws.com/123456789012/q") == "eu-west-2"
    assert queue_region("http://127.0.0.1:5000/123456789012/q") is None


async def test_message_is_one_document_located_by_queue_and_id(moto_server: str) -> None:
    url = await make_filled_queue("kvs-one", messages=1)
    async with recorded_source(url) as (source, _):
        messages = source.messages()
        message = await anext(messages)
        assert message.documents[0].data == '{"n": 0}'
        assert message.documents[0].location.source == f"sqs:kvs-one/{message.id}"
        assert message.receive_count == 1
        assert message.sent_at is not None
        await message.ack()
        await messages.aclose()
    assert await queue_counts(url) == (0, 0)


async def test_acks_are_deleted_in_batches_of_ten_and_the_rest_on_close(moto_server: str) -> None:
    url = await make_filled_queue("kvs-batches", messages=23)
    # a clock that never moves: the flush timer cannot fire however slow the machine is
    clock = FakeClock(autoadvance=False)
    async with recorded_source(url, clock=clock, ack_flush_seconds=10) as (source, recorder):
        received: list[SqsMessage] = []
        async for message in source.messages():
            received.append(message)
            await message.ack()
            if len(received) == 23:
                source.stop()
        assert source.counts.deleted == 20  # two full batches; three wait for the timer or close
    batches = recorder.requests("delete_message_batch")
    assert [len(batch["Entries"]) for batch in batches] == [10, 10, 3]
    assert len({m.id for m in received}) == 23
    assert source.counts.deleted == 23
    assert await queue_counts(url) == (0, 0)


async def test_pending_acks_are_flushed_when_the_interval_ends(moto_server: str) -> None:
    url = await make_filled_queue("kvs-timer", messages=2)
    clock = FakeClock(autoadvance=False)
    async with recorded_source(url, clock=clock, ack_flush_seconds=2, max_messages=2) as (source, recorder):
        messages = source.messages()
        for _ in range(2):
            await (await anext(messages)).ack()
        await asyncio.sleep(0)  # the flusher task starts and waits on the clock
        assert recorder.requests("delete_message_batch") == []
        clock.advance(2)
        await recorder.answered["delete_message_batch"].wait()  # woken by the clock, the flusher sent it
        source.stop()
        async for _ in messages:
            pass
    assert [len(b["Entries"]) for b in recorder.requests("delete_message_batch")] == [2]
    assert await queue_counts(url) == (0, 0)


async def test_retry_keeps_the_message_and_it_comes_back_with_receive_count_two(moto_server: str) -> None:
    url = await make_filled_queue("kvs-retry", messages=1)
    async with recorded_source(url, retry_backoff_base_seconds=0) as (source, recorder):
        messages = source.messages()
        first = await anext(messages)
        await first.retry("sink down")
        again = await anext(messages)  # visible again at once: backoff base 0
        assert again.id == first.id
        assert (first.receive_count, again.receive_count) == (1, 2)
        await again.ack()
        await messages.aclose()
    assert recorder.requests("change_message_visibility")[0]["VisibilityTimeout"] == 0
    assert recorder.requests("delete_message_batch")[0]["Entries"][0]["ReceiptHandle"] == again.receipt_handle


async def test_retry_backs_off_and_never_deletes(moto_server: str) -> None:
    url = await make_filled_queue("kvs-backoff", messages=1)
    async with recorded_source(url, retry_backoff_base_seconds=7) as (source, recorder):
        messages = source.messages()
        await (await anext(messages)).retry("sink down")
        await messages.aclose()
    assert recorder.requests("change_message_visibility")[0]["VisibilityTimeout"] == 7
    assert recorder.requests("delete_message_batch") == []
    assert await queue_counts(url) == (0, 1)  # still on the queue, invisible for 7 s


async def test_no_more_than_max_in_flight_unacked_messages(moto_server: str) -> None:
    url = await make_filled_queue("kvs-bound", messages=10)
    async with recorded_source(url, max_in_flight=3, pollers=2) as (source, recorder):
        messages = source.messages()
        held = [await anext(messages) for _ in range(3)]
        assert source.in_flight == 3
        assert await queue_counts(url) == (7, 3)  # the pollers wait for a slot instead of receiving
        seen = 3
        while seen < 10:
            await held.pop(0).ack()
            held.append(await anext(messages))
            seen += 1
            assert len(held) <= 3
            assert source.in_flight <= 3
        for message in held:
            await message.ack()
        source.stop()
        async for message in messages:
            pytest.fail(f"an eleventh message: {message.id}")
    assert all(r["MaxNumberOfMessages"] <= 3 for r in recorder.requests("receive_message"))
    assert await queue_counts(url) == (0, 0)


async def test_stop_ends_messages_without_a_new_receive(moto_server: str) -> None:
    url = await make_filled_queue("kvs-stop", messages=1)
    async with recorded_source(url, pollers=3) as (source, recorder):
        async for message in source.messages():
            await message.ack()
            source.stop()
    receives = [stopped for name, _, stopped in recorder.calls if name == "receive_message"]
    assert receives
    assert not any(receives)


async def test_messages_received_but_not_handed_out_are_released(moto_server: str) -> None:
    url = await make_filled_queue("kvs-release", messages=5)
    async with recorded_source(url, pollers=1, max_in_flight=5) as (source, recorder):
        messages = source.messages()
        first = await anext(messages)
        await first.ack()
        await messages.aclose()
        assert source.in_flight == 0
    released = recorder.requests("change_message_visibility_batch")
    assert [e["VisibilityTimeout"] for e in released[0]["Entries"]] == [0] * 4
    assert await queue_counts(url) == (4, 0)


async def test_heartbeat_extends_visibility_while_the_work_runs(moto_server: str) -> None:
    class TwoBeats:
        def __init__(self) -> None:
            self.calls = 0
            self.third = asyncio.Event()

        def monotonic(self) -> float:
            return 0.0

        async def sleep(self, seconds: float) -> None:
            self.calls += 1
            if self.calls >= 3:
                self.third.set()
                await asyncio.Event().wait()

    url = await make_filled_queue("kvs-heartbeat", messages=1)
    clock = TwoBeats()
    async with recorded_source(url, clock=clock, visibility_timeout=300) as (source, recorder):
        messages = source.messages()
        message = await anext(messages)
        async with message.heartbeat():
            await clock.third.wait()  # two sleeps passed, so two extensions were made
        await message.ack()
        await messages.aclose()
    extended = recorder.requests("change_message_visibility")
    assert [r["VisibilityTimeout"] for r in extended] == [300, 300]
    assert source.counts.extended == 2


async def test_startup_check_warns_without_a_redrive_policy(moto_server: str) -> None:
    bare = await make_filled_queue("kvs-bare")
    guarded = await make_filled_queue("kvs-guarded", redrive=True)
    for url, warned in ((bare, True), (guarded, False)):
        async with SqsSource(SqsSourceConfig(queue_url=url)) as source:
            with capture_logs() as logs:
                assert await source.startup_check() is True
            assert source.ready
        events = [entry["event"] for entry in logs]
        assert ("queue_has_no_redrive_policy" in events) is warned


async def test_startup_check_reports_an_unreachable_queue(moto_server: str) -> None:
    url = f"{moto_server}/123456789012/kvs-missing"
    async with SqsSource(SqsSourceConfig(queue_url=url)) as source:
        with capture_logs() as logs:
            assert await source.startup_check() is False
    assert [entry["event"] for entry in logs] == ["queue_unreachable"]
    assert not source.ready


def test_config_rejects_unknown_keys_and_out_of_range_values() -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/kvs-sentinel"
    with pytest.raises(ValueError, match="extra"):
        SqsSourceConfig(queue_url=url, access_key="AKIA...")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="wait_time_seconds"):
        SqsSourceConfig(queue_url=url, wait_time_seconds=21)
    assert SqsSourceConfig(queue_url=url).max_messages == 10


async def test_a_failed_delete_is_logged_and_the_message_stays(moto_server: str) -> None:
    url = await make_filled_queue("kvs-undeletable", messages=1)
    async with recorded_source(url) as (source, _):
        messages = source.messages()
        message = await anext(messages)
        await messages.aclose()
        message.receipt_handle = "not-a-receipt-handle"
        with capture_logs() as logs:
            await message.ack()
            await source.flush()
    assert source.counts.delete_failed == 1
    assert [e["message_id"] for e in logs if e["event"] == "message_delete_failed"] == [message.id]
    assert await queue_counts(url) == (0, 1)  # still there: visible again when its timeout ends
