"""Idempotent alerts: an SQS redelivery of an event already alerted on must not alert twice.

SQS delivers at least once: a message whose delete failed, or whose visibility ran out while a sink was
slow, comes back, to this task or another. `AlertDeduper` remembers which (detector, eventID) pairs were
alerted on within a window, in the state store `run` was given (`service.state`): with `memory` the
window is one task's and is forgotten at a restart; with `sqlite:` it survives a restart of a single
task; with `dynamodb:` every task shares it, so a redelivery to another task is caught too.

Ask `is_duplicate` before delivering and `record` only once the alert was delivered: recording before a
failed delivery would suppress the retry, and lose the alert. Two tasks that both ask before either
records can still both deliver (at least once, never lost). Events without an eventID never dedupe.
A store that fails raises StateError, and the message is retried: never acked on a guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kvs_sentinel.state.base import StateStore

DEFAULT_WINDOW_SECONDS = 6 * 3600.0
DEFAULT_MAX_ENTRIES = 100_000


class AlertDeduper:
    def __init__(
        self,
        store: StateStore,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.store = store
        self.window_seconds = window_seconds
        self.clock = clock  # wall time: redeliveries happen now, whatever the event's time

    async def is_duplicate(self, detector_id: str, event_id: str | None) -> bool:
        """Whether the pair was recorded within the window, without recording it."""
        if not event_id:
            return False
        return await self.store.is_claimed(_key(detector_id, event_id), now=self.clock())

    async def record(self, detector_id: str, event_id: str | None) -> None:
        """Remember the pair for the window from now (a pair already remembered keeps its first time)."""
        if event_id:
            await self.store.claim(_key(detector_id, event_id), now=self.clock(), ttl=self.window_seconds)


def _key(detector_id: str, event_id: str) -> str:
    return f"dedupe/{detector_id}/{event_id}"
