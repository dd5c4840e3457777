"""The run service's lifecycle against an in-memory SQS client: drain on stop, the hard deadline, the
probes; redelivery dedupe in the pipeline; the `sources:` and `service:` sections of the config."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from kvs_sentinel.alerts import Alert
from kvs_sentinel.config import load_config
from kvs_sentinel.dedupe import AlertDeduper
from kvs_sentinel.engine import Engine, Processor
from kvs_sentinel.envelopes import Document
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import Location
from kvs_sentinel.pipeline import Pipeline
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.service import RunSummary
from kvs_sentinel.sources.sqs import SqsSource
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import FakeMessage, ListSource, RecordingSink
from tests.support.events import eventbridge
from tests.support.fake_sqs import FakeSqs, service_for
from tests.support.waiting import wait_until

PACK = Path(__file__).resolve().parents[1] / "config" / "packs" / "kvs.yaml"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/kvs-sentinel-test"


class GatedSink(RecordingSink):
    """Accepts alerts only once `gate` is set; `entered` tells a send is under way."""

    def __init__(self) -> None:
        super().__init__("gated")
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def send(self, alert: Alert) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().send(alert)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_stop_lets_in_flight_messages_finish_then_deletes_them_and_returns() -> None:
    fake = FakeSqs([eventbridge(n) for n in range(3)])
    sink = GatedSink()
    service = service_for(fake, sink)
    running = asyncio.create_task(service.run())
    await asyncio.wait_for(sink.entered.wait(), 5)  # a worker is inside the sink: work is in flight
    service.request_stop()
    [source] = service.sources
    assert isinstance(source, SqsSource)
    await wait_until(lambda: source.stopping, 5, "the service to stop its source, then drain")
    assert not running.done()  # it waits for the in-flight work
    sink.gate.set()
    summary: RunSummary = await asyncio.wait_for(running, 5)
    assert (summary.counts.messages_done, summary.counts.messages_failed) == (3, 0)
    assert not summary.forced
    assert summary.exit_code == 0
    assert sorted(fake.deleted) == ["rh-m0", "rh-m1", "rh-m2"]
    assert len(sink.alerts) == 6
    assert sink.closed


async def test_a_hung_sink_is_cancelled_at_the_hard_deadline_and_nothing_is_deleted() -> None:
    fake = FakeSqs([eventbridge(1)])
    sink = GatedSink()  # never opens
    service = service_for(fake, sink, grace_seconds=0.6, close_seconds=0.3)
    running = asyncio.create_task(service.run())
    await asyncio.wait_for(sink.entered.wait(), 5)
    service.request_stop()
    summary = await asyncio.wait_for(running, 2)
    assert summary.forced
    assert summary.exit_code == 0
    assert fake.deleted == []  # half-done: SQS delivers it again when its visibility timeout ends
    assert fake.visibility == []  # not retried either: no backoff for a message nothing failed on


async def test_health_endpoints_follow_the_service_state() -> None:
    fake = FakeSqs([eventbridge(1)])
    sink = RecordingSink()
    service = service_for(fake, sink)
    running = asyncio.create_task(service.run())
    await wait_until(lambda: fake.deleted, 5, "the message deleted")
    assert service.health is not None
    url = service.health.url
    assert await get(f"{url}/healthz") == (200, "alive\n")
    assert await get(f"{url}/readyz") == (200, "ready\n")
    metrics = (await get(f"{url}/metrics"))[1]
    assert 'kvs_sentinel_messages_deleted_total{queue="kvs-sentinel-test"} 1.0' in metrics
    assert 'kvs_sentinel_events_total{form="eventbridge"} 1.0' in metrics
    fake.fail_receives = True  # SQS unreachable: not ready, still alive

    async def readyz_says_not_ready() -> bool:
        # a receive already under way may still succeed once: readiness follows the next one
        return (await get(f"{url}/readyz"))[0] == 503

    await wait_until(readyz_says_not_ready, 5, "/readyz to answer 503")
    assert (await get(f"{url}/healthz"))[0] == 200
    service.request_stop()
    await asyncio.wait_for(running, 5)


def media_message(n: int) -> FakeMessage:
    body = json.dumps(eventbridge(n))
    return FakeMessage(f"m{n}", [Document(body, Location(f"m{n}"))])


async def test_a_redelivered_event_is_not_alerted_twice_but_a_failed_delivery_is_retried() -> None:
    sink = RecordingSink("slack")
    processor = Processor(Engine(load_config().detectors), RunStats())
    pipeline = Pipeline(
        ListSource([]), processor, Dispatcher.broadcast([sink]), dedupe=AlertDeduper(MemoryStore())
    )
    sink.fail_next = 1
    first = media_message(1)
    await pipeline.handle(first)  # fails: nothing recorded
    assert first.retries
    again = media_message(1)
    await pipeline.handle(again)
    assert again.acked
    assert len(sink.alerts) == 2
    third = media_message(1)  # SQS redelivers once more (a delete that failed)
    await pipeline.handle(third)
    assert third.acked
    assert len(sink.alerts) == 2
    assert pipeline.counts.alerts_deduplicated == 2


def test_sources_and_service_sections_are_validated_with_their_path(tmp_path: Path) -> None:
    path = tmp_path / "sentinel.yaml"
    path.write_text(f"packs: [{PACK}]\nsources:\n  - type: sqs\n    queue_url: ${{KVS_TEST_QUEUE}}\n")
    with pytest.raises(ConfigError, match="KVS_TEST_QUEUE is not set"):
        load_config(path)
    path.write_text(f"packs: [{PACK}]\nsources:\n  - type: sqs\n    queue_url: {QUEUE}\n    pollers: 0\n")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.pollers"):
        load_config(path)
    path.write_text(f"packs: [{PACK}]\nsources:\n  - type: kinesis\n")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.type: unknown source type 'kinesis'"):
        load_config(path)
    path.write_text(f"packs: [{PACK}]\nservice:\n  grace_seconds: 2\n  close_seconds: 3\n")
    with pytest.raises(ConfigError, match="close_seconds must be shorter"):
        load_config(path)
    path.write_text(f"packs: [{PACK}]\nsources:\n  - {{type: sqs, queue_url: '{QUEUE}', pollers: 4}}\n")
    loaded = load_config(path)
    assert [source.pollers for source in loaded.sources] == [4]
    assert loaded.config.service.grace_seconds == 25
    assert loaded.config.service.drain_seconds == 21
