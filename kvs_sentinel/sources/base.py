"""What every source yields (messages of documents, each with its own ack/retry handle), and what a
source `run` consumes must offer besides (readiness, counters, stop, release)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from kvs_sentinel.envelopes import Decodable


class Message(Protocol):
    """A unit of work that is acknowledged only after its alerts are delivered."""

    @property
    def id(self) -> str: ...

    @property
    def documents(self) -> Sequence[Decodable]: ...

    @property
    def received_at(self) -> float:
        """time.monotonic() when it was received: for the processing-time metric."""
        ...

    def heartbeat(self) -> AbstractAsyncContextManager[None]:
        """Held while the message is worked on: keeps it from being handed to another consumer
        (SQS: extends its visibility). A source without leases returns a context that does nothing."""
        ...

    async def ack(self) -> None: ...

    async def retry(self, reason: str) -> None: ...


class Source(Protocol):
    def messages(self) -> AsyncGenerator[Message, None]: ...

    async def aclose(self) -> None: ...


class SourceCounts(Protocol):
    def as_dict(self) -> Mapping[str, int]:
        """Counters for /metrics and the closing summary; `deleted` and `retried` if it has them."""
        ...


class ConsumedSource(Source, Protocol):
    """A source `run` consumes for ever: configured under `sources:`, built by its registered type."""

    @property
    def name(self) -> str:
        """Short, for logs and the metrics' label (SQS: the queue's name)."""
        ...

    @property
    def ready(self) -> bool:
        """Its last call to the service behind it succeeded: for /readyz."""
        ...

    @property
    def in_flight(self) -> int: ...

    @property
    def counts(self) -> SourceCounts: ...

    async def startup_check(self) -> bool:
        """Whether it can reach what it reads; logs what an operator should fix."""
        ...

    def stop(self) -> None:
        """No new receives: `messages()` ends once the ones under way have answered."""
        ...

    async def release(self, messages: Sequence[Message]) -> None:
        """Give back messages it yielded that nobody will process (never deleting them)."""
        ...


class SourceConfig(BaseModel):
    """Base of a source type's options (`sources[i]` without its `type`)."""

    model_config = ConfigDict(defer_build=True)

    def identity(self) -> str:
        """What two entries must not share (SQS: the queue URL): one source listed twice is an error."""
        return repr(self)

    def describe(self) -> str:
        """A few words for `validate` (SQS: "queue NAME")."""
        return type(self).__name__


class Unleased:
    """Mixin for messages nothing else can take meanwhile (local files, tests): the heartbeat does
    nothing, and the receive time is when the message was made."""

    def heartbeat(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()
