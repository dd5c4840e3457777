"""Idempotent alerts: an SQS redelivery of an event already alerted on must not alert twice.

SQS delivers at least once: a message whose delete failed, or whose visibility ran out while a sink was
slow, comes back. `AlertDeduper` remembers which (detector, eventID) pairs were alerted on within a
window and answers whether a pair is a repeat.

The memory is **per process**: several ECS tasks consuming one queue are several windows, so a message
redelivered to a different task alerts again there. Within one task, a restart forgets the window too.
That is the "exactly once, as far as an operator can tell" of the issue: duplicates need a failure *and*
a redelivery to another task (or after a restart); nothing is ever lost for dedupe's sake.

Ask `is_duplicate` before delivering and `record` only once the alert was delivered: recording before a
failed delivery would suppress the retry, and lose the alert.
Events without an eventID never dedupe. Memory is bounded: past `max_entries`, the oldest pair is
forgotten first (a redelivery of it would alert again; SQS redeliveries come within minutes).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_WINDOW_SECONDS = 6 * 3600.0
DEFAULT_MAX_ENTRIES = 100_000


class AlertDeduper:
    def __init__(
        self,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_seconds <= 0 or max_entries < 1:
            raise ValueError("window_seconds must be positive and max_entries at least 1")
        self.window_seconds = window_seconds
        self.max_entries = max_entries
        self.clock = clock
        # (detector, event id) → when recorded. Insertion order is expiry order: the window is fixed.
        self._recorded: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._recorded)

    def is_duplicate(self, detector_id: str, event_id: str | None) -> bool:
        """Whether the pair was recorded within the window, without recording it."""
        if not event_id:
            return False
        self._expire(self.clock())
        return (detector_id, event_id) in self._recorded

    def record(self, detector_id: str, event_id: str | None) -> None:
        """Remember the pair from now on (a pair already remembered keeps its first time)."""
        if not event_id:
            return
        now = self.clock()
        self._expire(now)
        key = (detector_id, event_id)
        if key in self._recorded:
            return
        self._recorded[key] = now
        while len(self._recorded) > self.max_entries:
            self._recorded.popitem(last=False)

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        recorded = self._recorded
        while recorded:
            key, at = next(iter(recorded.items()))
            if at > horizon:
                break
            del recorded[key]
