"""The source for `replay`: local files and stdin, batched into messages."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from kvs_sentinel.envelopes import Decodable
from kvs_sentinel.errors import InputError
from kvs_sentinel.events import Location
from kvs_sentinel.sources.base import Unleased
from kvs_sentinel.sources.files import STDIN, approximate_events, expand_paths, open_input, split_documents
from kvs_sentinel.stats import RunStats

log = structlog.get_logger("kvs_sentinel.replay")

BATCH_DOCUMENTS = 256


@dataclass
class FileBatch(Unleased):
    """Units cut from local files. Nothing to acknowledge: a failed delivery is counted by the pipeline."""

    id: str
    documents: Sequence[Decodable] = field(default_factory=list)
    received_at: float = field(default_factory=time.monotonic)

    async def ack(self) -> None:
        return None

    async def retry(self, reason: str) -> None:
        return None


class FileSource:
    def __init__(
        self,
        paths: Sequence[str],
        stats: RunStats,
        on_bytes: Callable[[int], None] | None = None,
        batch_documents: int = BATCH_DOCUMENTS,
    ) -> None:
        self.names = list(expand_paths(paths, skipped=stats.skip_file))
        self.stats = stats
        self.on_bytes = on_bytes
        self.batch_documents = batch_documents

    def total_bytes(self) -> int | None:
        try:
            return sum(os.path.getsize(name) for name in self.names if name != STDIN)
        except OSError:
            return None

    async def messages(self) -> AsyncGenerator[FileBatch, None]:
        batch: list[Decodable] = []
        weight = 0  # about how many events the batch holds: its memory bound
        count = 0
        for name in self.names:
            try:
                raw, stream = open_input(name)
            except InputError as exc:
                self.stats.files_unreadable += 1
                log.error("input_unreadable", error=str(exc))
                continue
            position = 0
            try:
                location = Location("<stdin>" if name == STDIN else name)
                for item in split_documents(stream, location):
                    batch.append(item)  # markers too: the decode layer counts them
                    weight += approximate_events(item)
                    if weight >= self.batch_documents:
                        position = self._progress(raw, position)
                        count += 1
                        yield FileBatch(f"batch-{count}", batch)
                        batch, weight = [], 0
                self.stats.files_read += 1
                self._progress(raw, position)
            finally:
                if name != STDIN:
                    stream.close()
                    raw.close()
        if batch:
            yield FileBatch(f"batch-{count + 1}", batch)

    def _progress(self, raw: object, position: int) -> int:
        if self.on_bytes is None or raw is None:
            return position
        try:
            now = raw.tell()  # type: ignore[attr-defined]
        except (OSError, ValueError, AttributeError):
            return position
        self.on_bytes(now - position)
        return int(now)

    async def aclose(self) -> None:
        return None
