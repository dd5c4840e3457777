"""Slack's pace (about one message per second per webhook) kept by every task together.

Each task already spaces its own posts (`slack.Pacer`). With a store every task shares, a post also takes
a slot: wall time is cut into slots of `interval` seconds, and a counter per (webhook, slot) in the store
gives each slot to one post. A task whose slot is taken tries the next ones and waits for the first free
one, so N tasks post at the pace one would. The store failing never holds a post back: the task keeps its
own pace alone (and Slack's 429 `Retry-After`, honoured by each task, is the backstop).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from kvs_sentinel.clock import Clock
from kvs_sentinel.state.base import SharedState, StateError

log = structlog.get_logger("kvs_sentinel.sinks.slack")

_SLOTS_AHEAD = 600  # past this many taken slots, post anyway: the webhook's 429s will pace us
_SLOT_TTL_SECONDS = 300.0


class Pacing(Protocol):
    """Waits before each post to one webhook; `pause` after a 429 (`slack.Pacer` paces one task)."""

    async def wait(self) -> None: ...

    def pause(self, seconds: float) -> None: ...


class SharedPacer:
    def __init__(
        self,
        local: Pacing,
        shared: SharedState,
        webhook_url: str,
        interval: float,
        clock: Clock,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.local = local
        self.store = shared.store
        self.decided_alone = shared.decided_alone
        # the key names the webhook without revealing it: the URL is the secret
        self.key = "pace/" + hashlib.blake2b(webhook_url.encode(), digest_size=16).hexdigest()
        self.interval = interval
        self.clock = clock
        self.wall = wall

    async def wait(self) -> None:
        await self.local.wait()
        if self.interval <= 0:
            return
        now = self.wall()
        slot = math.floor(now / self.interval)
        try:
            for _ in range(_SLOTS_AHEAD):
                taken = await self.store.count(f"{self.key}/{slot}", 1, now=now, ttl=_SLOT_TTL_SECONDS)
                # a slot that ended while the store answered is no longer ours to post in: the next
                # slot's holder may be posting now
                if taken == 1 and self.wall() < (slot + 1) * self.interval:
                    break
                slot = max(slot + 1, math.floor(self.wall() / self.interval))
        except StateError as exc:
            self.decided_alone("slack_pace")
            log.warning("slack_pace_unshared", error=str(exc), consequence="this task keeps its own pace")
            return
        delay = slot * self.interval - self.wall()
        if delay > 0:
            await self.clock.sleep(delay)

    def pause(self, seconds: float) -> None:
        self.local.pause(seconds)
