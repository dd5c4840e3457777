"""Several sources as one: their messages merged, stopped and closed together.

Each source keeps its own in-flight bound, so the merge needs none of its own: a message waits here only
until a worker takes it. Messages still here when the merge ends are released (visible again at once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence

from kvs_sentinel.sources.base import ConsumedSource, Message

_DONE = None


class MergedSource:
    def __init__(self, sources: Sequence[ConsumedSource]) -> None:
        if not sources:
            raise ValueError("no sources to merge")
        self.sources = tuple(sources)

    @property
    def ready(self) -> bool:
        """Every queue answered its last call."""
        return all(source.ready for source in self.sources)

    def stop(self) -> None:
        for source in self.sources:
            source.stop()

    async def messages(self) -> AsyncGenerator[Message, None]:
        if len(self.sources) == 1:
            async with contextlib.aclosing(self.sources[0].messages()) as only:
                async for message in only:
                    yield message
            return
        merged: asyncio.Queue[tuple[ConsumedSource, Message] | None] = asyncio.Queue()
        pumps = [asyncio.create_task(_pump(source, merged)) for source in self.sources]
        running = len(pumps)
        try:
            while running:
                if (received := await merged.get()) is _DONE:
                    running -= 1
                else:
                    yield received[1]
            for pump in pumps:
                if (error := pump.exception()) is not None:
                    raise error
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            leftover: list[tuple[ConsumedSource, Message]] = []
            while not merged.empty():
                if (item := merged.get_nowait()) is not None:
                    leftover.append(item)
            for source in self.sources:
                await source.release([message for owner, message in leftover if owner is source])

    async def aclose(self) -> None:
        """Close every source (each flushes its pending deletes), even if one fails."""
        errors: list[BaseException] = []
        for source in self.sources:
            try:
                await source.aclose()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


async def _pump(source: ConsumedSource, into: asyncio.Queue[tuple[ConsumedSource, Message] | None]) -> None:
    try:
        async with contextlib.aclosing(source.messages()) as messages:
            async for message in messages:
                into.put_nowait((source, message))
    finally:
        into.put_nowait(_DONE)
