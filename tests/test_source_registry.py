"""The source seam: a source type is one module and one registration, and `run` consumes any of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kvs_sentinel.config import load_config
from kvs_sentinel.envelopes import Document
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import Location
from kvs_sentinel.service import Service
from kvs_sentinel.sources.base import Message, SourceConfig
from kvs_sentinel.sources.merge import MergedSource
from kvs_sentinel.sources.registry import register_source
from kvs_sentinel.sources.sqs import SqsSource, SqsSourceConfig
from kvs_sentinel.testing import FakeMessage, RecordingSink
from tests.aws_fixtures import moto_server
from tests.support.events import eventbridge
from tests.support.queues import make_filled_queue, queue_counts

__all__ = ["moto_server"]

PACK = Path(__file__).resolve().parents[1] / "config" / "packs" / "kvs.yaml"


class InlineConfig(SourceConfig):
    name: str
    bodies: list[str]

    def identity(self) -> str:
        return self.name


@dataclass
class InlineCounts:
    acked: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"acked": self.acked}


@dataclass
class InlineMessage(FakeMessage):
    on_ack: asyncio.Event = field(default_factory=asyncio.Event)

    async def ack(self) -> None:
        await super().ack()
        self.on_ack.set()


@dataclass
class InlineSource:
    """A source of messages written in the configuration: everything a new source type needs."""

    config: InlineConfig
    counts: InlineCounts = field(default_factory=InlineCounts)
    sent: list[InlineMessage] = field(default_factory=list)
    ready: bool = True
    in_flight: int = 0
    yielded: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    Config = InlineConfig

    @classmethod
    def from_config(cls, config: SourceConfig) -> InlineSource:
        assert isinstance(config, InlineConfig)
        return cls(config)

    @property
    def name(self) -> str:
        return self.config.name

    async def startup_check(self) -> bool:
        return True

    def stop(self) -> None:
        self._stopping.set()

    async def messages(self) -> AsyncGenerator[Message, None]:
        for i, body in enumerate(self.config.bodies):
            message = InlineMessage(f"{self.name}-{i}", [Document(body, Location(f"{self.name}/{i}"))])
            self.sent.append(message)
            self.yielded.set()
            yield message
        await self._stopping.wait()  # a consumed source ends when asked to, not when it runs dry

    async def release(self, messages: Sequence[Message]) -> None:
        return None

    async def aclose(self) -> None:
        self.stop()


register_source("inline-test")(InlineSource)


def config_file(tmp_path: Path, sources: str) -> Path:
    path = tmp_path / "sentinel.yaml"
    service = "service: {health_port: 0, health_host: 127.0.0.1, grace_seconds: 5, close_seconds: 1}\n"
    path.write_text(f"packs: [{PACK}]\ngrouping: {{window_seconds: 0}}\n{service}sources:\n{sources}")
    return path


async def test_a_registered_source_type_is_configured_by_name_and_consumed_by_run(tmp_path: Path) -> None:
    bodies = json.dumps([json.dumps(eventbridge(n)) for n in range(3)])
    loaded = load_config(config_file(tmp_path, f"  - {{type: inline-test, name: cams, bodies: {bodies}}}\n"))
    sink = RecordingSink()
    service = Service(loaded, sinks={sink.name: sink})
    [source] = service.sources
    assert isinstance(source, InlineSource)
    running = asyncio.create_task(service.run())
    for i in range(3):
        while len(source.sent) <= i:
            await asyncio.wait_for(source.yielded.wait(), 10)
            source.yielded.clear()
        await asyncio.wait_for(source.sent[i].on_ack.wait(), 10)
    service.request_stop()
    summary = await asyncio.wait_for(running, 10)
    assert summary.exit_code == 0
    assert summary.counts.messages_done == 3
    assert len(sink.alerts) == 6  # each event: the media read, and the long-term key


def test_an_unknown_source_type_names_the_known_ones_and_a_repeated_one_is_an_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\]\.type: unknown source type 'kinesis'; known: .*sqs"):
        load_config(config_file(tmp_path, "  - {type: kinesis}\n"))
    twice = "  - {type: inline-test, name: a, bodies: []}\n" * 2
    with pytest.raises(ConfigError, match=r"sources: listed twice: a$"):
        load_config(config_file(tmp_path, twice))


async def test_two_merged_queues_yield_every_message_and_give_back_the_rest(
    moto_server: str,
) -> None:
    first, second = (
        await make_filled_queue("kvs-merge-a", messages=3),
        await make_filled_queue("kvs-merge-b", messages=4),
    )
    sources = [SqsSource(SqsSourceConfig(queue_url=url, wait_time_seconds=1)) for url in (first, second)]
    merged = MergedSource(sources)
    taken: list[Message] = []
    try:
        async with contextlib.aclosing(merged.messages()) as messages:
            async for message in messages:
                taken.append(message)
                await message.ack()
                if len(taken) == 5:
                    break  # the rest were received (one receive per queue takes them all) but not taken
    finally:
        await merged.aclose()
    assert len({message.id for message in taken}) == 5
    visible_and_in_flight = [await queue_counts(url) for url in (first, second)]
    assert sum(visible for visible, _ in visible_and_in_flight) == 2  # released: visible again at once
    assert [in_flight for _, in_flight in visible_and_in_flight] == [0, 0]
