"""Grouping windows every task shares: the first alert of a burst goes out once, and one summary of its
repeats, whichever tasks counted them.

With a shared store (`service.state: dynamodb:TABLE`), a task about to open a grouping window first claims
the window's key in the store for the window's length. The winner sends the first alert. A loser reads
when the winner's claim ends and counts the alert as a repeat, in a window of its own that ends then.

When a window ends, every task that counted repeats hands its count in to the window's counter in the
store. The task that opened the window takes the summary `grace_seconds` later and sends one summary of
every task's repeats; if it cannot (it stopped, or its store call failed), the first other task to try,
`grace_seconds` after that, does. A task that hands its count in after the summary was taken, or whose
store calls fail, summarises its own repeats: reported late, never lost.

A first alert that fails is released, so its retry, on any task, goes out first. A task that dies between
its claim and the delivery leaves the claim to expire; the redelivered alert is counted and summarised by
the task that gets it. The store failing never holds an alert back: the task decides alone, as it would
with `state: memory`.
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
        self,
        shared: SharedState,
        window_seconds: float,
        wall: Callable[[], float] = time.time,
        grace_seconds: float = 5.0,
    ) -> None:
        self.store = shared.store
        self.decided_alone = shared.decided_alone
        self.window_seconds = window_seconds
        self.wall = wall  # the store's clock is wall time: every task's `now` must agree
        self.grace_seconds = grace_seconds  # for every task's count to reach the store, clocks a little apart
        self._kept = window_seconds + 60 * grace_seconds  # a window's count and summary claim outlive it

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

    async def held_until(self, key: Hashable) -> float | None:
        """When the shared window another task opened ends (wall time); None when no task holds it now
        (released since) or the store failed."""
        try:
            return await self.store.claimed_until(_store_key(key), now=self.wall())
        except StateError as exc:
            self._failed("held_until", exc)
            return None

    def seconds_until(self, until: float) -> float:
        return max(0.0, until - self.wall())

    async def hand_in(self, key: Hashable, until: float, repeats: int) -> bool:
        """Add this task's repeats to the count of the window ending at `until`. False when this task must
        summarise them itself: the window's summary was taken already, or the store failed."""
        window, now = _window_key(key, until), self.wall()
        try:
            await self.store.count(f"{window}/repeats", repeats, now=now, ttl=self._kept)
            return not await self.store.is_claimed(f"{window}/summary", now=now)
        except StateError as exc:
            self._failed("hand_in", exc)
            return False

    async def take_summary(self, key: Hashable, until: float, own: int) -> int | None:
        """Every task's repeats in the window ending at `until`, when this task is the first to take its
        summary; None when another task took it. When the store fails: `own`, summarised alone."""
        window, now = _window_key(key, until), self.wall()
        try:
            if not await self.store.claim(f"{window}/summary", now=now, ttl=self._kept):
                return None
            return await self.store.count(f"{window}/repeats", 0, now=now, ttl=self._kept)
        except StateError as exc:
            self._failed("take_summary", exc)
            return own

    def _failed(self, operation: str, exc: StateError) -> None:
        self.decided_alone("group_window")
        log.warning("group_window_unshared", operation=operation, error=str(exc), consequence="decided alone")


def _store_key(key: Hashable) -> str:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
    return f"group/{digest}"


def _window_key(key: Hashable, until: float) -> str:
    # one window of the key: its end, to the millisecond a store keeps (DynamoDB numbers are rounded so)
    return f"{_store_key(key)}/{until:.3f}"
