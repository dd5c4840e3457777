"""Alert dedupe: a redelivered event alerts once per detector within the window, through the state store.

With a shared store (DynamoDB), a redelivery that lands on another task is caught too; a store that fails
leaves the message for retry.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvs_sentinel.config import load_config
from kvs_sentinel.dedupe import AlertDeduper
from kvs_sentinel.engine import Engine, Processor
from kvs_sentinel.envelopes import Document
from kvs_sentinel.events import Location
from kvs_sentinel.pipeline import Pipeline
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.state.base import StateError
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.state.registry import open_store
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import FakeMessage, ListSource, RecordingSink
from tests.aws_fixtures import moto_server
from tests.support.state_tables import TABLE, make_table

__all__ = ["moto_server"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def seen(dedupe: AlertDeduper, detector: str, event_id: str | None) -> bool:
    """The pipeline's use: a duplicate is skipped; anything else is delivered, then recorded."""
    if await dedupe.is_duplicate(detector, event_id):
        return True
    await dedupe.record(detector, event_id)
    return False


async def test_a_redelivered_event_is_seen_once_per_detector() -> None:
    dedupe = AlertDeduper(MemoryStore(), window_seconds=60, clock=Clock())
    assert await seen(dedupe, "kvs-producer-media-read", "e1") is False
    assert await seen(dedupe, "kvs-producer-media-read", "e1") is True
    assert await seen(dedupe, "kvs-untrusted-source-ip", "e1") is False  # another detector, another alert
    assert await seen(dedupe, "kvs-producer-media-read", "e2") is False


async def test_the_window_ends_and_the_pair_alerts_again() -> None:
    clock = Clock()
    dedupe = AlertDeduper(MemoryStore(), window_seconds=60, clock=clock)
    await seen(dedupe, "d", "e1")
    clock.now += 59.9
    assert await seen(dedupe, "d", "e1") is True  # a repeat does not extend the window
    clock.now += 0.1
    assert await seen(dedupe, "d", "e1") is False


async def test_events_without_an_event_id_never_dedupe() -> None:
    store = MemoryStore()
    dedupe = AlertDeduper(store, window_seconds=60, clock=Clock())
    for event_id in (None, "", None):
        assert await seen(dedupe, "d", event_id) is False
    assert len(store) == 0


async def test_memory_is_bounded_and_the_oldest_goes_first() -> None:
    clock = Clock()
    dedupe = AlertDeduper(MemoryStore(max_keys=3), window_seconds=3600, clock=clock)
    for n in range(5):
        clock.now += 1
        await seen(dedupe, "d", f"e{n}")
    assert await dedupe.is_duplicate("d", "e4")
    assert await dedupe.is_duplicate("d", "e2")
    assert not await dedupe.is_duplicate("d", "e1")  # evicted: a redelivery of it would alert again


async def test_check_then_record_after_delivery() -> None:
    dedupe = AlertDeduper(MemoryStore(), window_seconds=60, clock=Clock())
    assert not await dedupe.is_duplicate("d", "e1")  # delivery failed: nothing recorded, the retry alerts
    assert not await dedupe.is_duplicate("d", "e1")
    await dedupe.record("d", "e1")
    assert await dedupe.is_duplicate("d", "e1")


def test_nonsense_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        AlertDeduper(MemoryStore(), window_seconds=0)
    with pytest.raises(ValueError, match="max_keys"):
        MemoryStore(max_keys=0)


def media_read() -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "GetMedia",
        "eventID": "00000000-0000-4000-8000-000000000001",
        "eventTime": "2026-02-03T10:00:00Z",
        "recipientAccountId": "111122223333",
        "sourceIPAddress": "198.51.100.7",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/kvs-producer-c/s",
        },
        "requestParameters": {"streamName": "front-door"},
    }


async def deliver_once(pipeline_dedupe: AlertDeduper) -> tuple[RecordingSink, FakeMessage]:
    """One task's pipeline handling the message once."""
    sink = RecordingSink("slack")
    message = FakeMessage("m", [Document(json.dumps(media_read()), Location("sqs:q/m"))])
    processor = Processor(Engine(load_config().detectors), RunStats())
    await Pipeline(
        ListSource([message]), processor, Dispatcher.broadcast([sink]), dedupe=pipeline_dedupe
    ).run()
    return sink, message


async def test_a_redelivery_to_another_task_is_caught_through_a_shared_dynamodb_store(
    moto_server: str,
) -> None:
    await make_table()
    first_store, second_store = await open_store(f"dynamodb:{TABLE}"), await open_store(f"dynamodb:{TABLE}")
    try:
        first, first_message = await deliver_once(AlertDeduper(first_store))
        second, second_message = await deliver_once(AlertDeduper(second_store))  # the same event, task two
    finally:
        await first_store.aclose()
        await second_store.aclose()
    assert first.alerts  # the producer's media read alerted, on the first task
    assert second.alerts == []
    assert first_message.acked
    assert second_message.acked


class _BrokenStore(MemoryStore):
    async def is_claimed(self, key: str, *, now: float) -> bool:
        raise StateError("dynamodb:t: get_item: ThrottlingException", retryable=True)


async def test_a_failing_store_leaves_the_message_for_retry() -> None:
    sink, message = await deliver_once(AlertDeduper(_BrokenStore()))
    assert sink.alerts == []
    assert not message.acked
    assert len(message.retries) == 1
    assert "ThrottlingException" in message.retries[0]
