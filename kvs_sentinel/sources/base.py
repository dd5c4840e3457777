"""What every source yields: messages of documents, each with its own ack/retry handle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from kvs_sentinel.envelopes import Decodable


class Message(Protocol):
    """A unit of work that is acknowledged only after its alerts are delivered."""

    id: str

    @property
    def documents(self) -> Sequence[Decodable]: ...

    async def ack(self) -> None: ...

    async def retry(self, reason: str) -> None: ...


class Source(Protocol):
    def messages(self) -> AsyncIterator[Message]: ...

    async def aclose(self) -> None: ...
