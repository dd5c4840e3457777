"""Grouping windows every task shares: the first alert of a burst goes out once, whichever task gets it.

With a shared store (`service.state: dynamodb:TABLE`), a task about to open a grouping window first claims
the window's key in the store for the window's length. The winner sends the first alert. A loser counts
the alert as a repeat, in a window of its own that ends when the shared one does (its next alert wins the
claim) or at its own deadline, and summarises what it counted: N tasks send one first alert per window,
and a summary from each task that counted repeats.

A first alert that fails is released, so its retry, on any task, goes out first. A task that dies between
its claim and the delivery leaves the claim to expire; the redelivered alert is counted and summarised by
the task that gets it: reported late, never lost. The store failing never holds an alert back: the task
decides alone, as it would with `state: memory`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Hashable

import structlog

from kvs_sentinel.state.base import SharedState, StateError

log = structlog.get_logger("kvs_sentinel.delivery")


class SharedWindows:
    def __init__(
        self, shared: SharedState, window_seconds: float, wall: Callable[[], float] = time.time
    ) -> None:
        self.store = shared.store
        self.decided_alone = shared.decided_alone
        self.window_seconds = window_seconds
        self.wall = wall  # the store's clock is wall time: every task's `now` must agree

    async def claim(self, key: Hashable) -> float | None:
        """The claim's expiry when this task opens the shared window, None when another task holds it."""
        now = self.wall()
        expires_at = now + self.window_seconds  # what the store computes: `release` must name it exactly
        try:
            won = await self.store.claim(_store_key(key), now=now, ttl=self.window_seconds)
        except StateError as exc:
            self._failed("claim", exc)
            return expires_at
        return expires_at if won else None

    async def release(self, key: Hashable, expires_at: float) -> None:
        try:
            await self.store.release(_store_key(key), expires_at=expires_at)
        except StateError as exc:
            self._failed("release", exc)  # the claim expires by itself; meanwhile its retry is a repeat

    def _failed(self, operation: str, exc: StateError) -> None:
        self.decided_alone("group_window")
        log.warning("group_window_unshared", operation=operation, error=str(exc), consequence="decided alone")


def _store_key(key: Hashable) -> str:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
    return f"group/{digest}"
