"""The state seam: what stateful features remember, in one task's memory, a local file, or a table every
task shares.

Three operations cover what dedupe, grouping, thresholds and baselines need, and each is atomic in every
backend, so N tasks on one store decide as one task would:

- `claim(key)`: set a key unless it is set; exactly one caller wins (dedupe, "first alert goes out now");
  `release` undoes a claim whose purpose failed (the first alert was not delivered: its retry goes first);
- `count(key, n)`: add to a counter that lives `ttl` seconds from its first add (a threshold's window is
  part of its key);
- `remember(key, member)`: add a member to a bounded set, each member expiring `ttl` after it was last
  added, and say whether it was new (first-seen baselines, distinct counts); `remember_all` adds several
  in turn as one operation, one request on DynamoDB (a message's new values of one baseline); `forget`
  undoes a `remember` whose purpose failed (the new value's alert was not recorded: its retry alerts).

Every operation takes `now`, epoch seconds on the caller's clock (event time, so that a replay of last
month behaves as it did live), and nothing expired is ever returned, whether or not the backend has
deleted it yet (DynamoDB's TTL deletes hours or days late).

`batch()` groups the operations of one message: SQLite runs them in one transaction (one commit, and
all or nothing); the other backends have nothing to group and run each operation as it comes.

A backend is chosen by URL (`memory`, `sqlite:PATH`, `dynamodb:TABLE`) through `state.open_store`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class Unbatched:
    """`batch()` for backends whose operations each commit alone."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class StateError(Exception):
    """The store failed. `retryable`: whether trying again may succeed (throttling, a network error).
    `maybe_applied`: the write may have been applied though its answer never came (a request that timed
    out or lost its connection after it was sent), as opposed to refused or never sent."""

    def __init__(self, message: str, *, retryable: bool, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.maybe_applied = maybe_applied


class Membership(NamedTuple):
    new: bool  # the member was absent (or expired) before this call
    size: int  # unexpired members after this call
    full: bool  # the set was at its limit and the member was not added


class StateStore(Protocol):
    # whether operations on different keys gain from running concurrently (each is a network round
    # trip): the judge then runs a message's independent checks as tasks
    overlaps: bool

    async def claim(self, key: str, *, now: float, ttl: float) -> bool:
        """Set `key` until `now + ttl` if it is absent or expired. True when this call set it."""
        ...

    async def release(self, key: str, *, expires_at: float) -> None:
        """Undo a claim this caller won with `now + ttl == expires_at`. A claim that has since expired and
        been won by another caller (its expiry differs) is left alone."""
        ...

    async def is_claimed(self, key: str, *, now: float) -> bool:
        """Whether `key` is set and unexpired (no change)."""
        ...

    async def claimed_until(self, key: str, *, now: float) -> float | None:
        """When the unexpired claim on `key` expires, as its winner was told (`now + ttl`); None when
        there is none (no change)."""
        ...

    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        """Add `amount` to the counter `key`, created (or restarted, once expired) to live until
        `now + ttl`. The new total."""
        ...

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        """Add `member` to the set `key` until `now + ttl` (a member already there is refreshed). A set
        holding `limit` unexpired members takes no new one."""
        ...

    async def remember_all(
        self, key: str, members: Sequence[tuple[str, float]], *, ttl: float, limit: int
    ) -> list[Membership]:
        """`remember(key, member, now=now, ...)` for each (member, now) in turn: the answers the calls one
        by one would give, from one atomic operation where the backend has one (DynamoDB)."""
        ...

    async def forget(self, key: str, member: str, *, expires_at: float) -> None:
        """Undo a `remember` that added `member` with `now + ttl == expires_at` when what it was for failed
        (a new value whose alert could not be recorded: its retry must find it new again). A member
        remembered again since (its expiry differs) is left alone."""
        ...

    async def members(self, key: str, *, now: float) -> frozenset[str]:
        """The unexpired members of the set `key`."""
        ...

    def batch(self) -> AbstractAsyncContextManager[None]:
        """Around several operations: they may be committed together (a failure undoes them all)."""
        ...

    async def aclose(self) -> None: ...


async def remember_in_turn(
    store: StateStore, key: str, members: Sequence[tuple[str, float]], *, ttl: float, limit: int
) -> list[Membership]:
    """`remember_all` as calls one by one, in one batch (atomic for a backend whose batch is)."""
    answers: list[Membership] = []
    async with store.batch():
        try:
            for member, now in members:
                answers.append(await store.remember(key, member, now=now, ttl=ttl, limit=limit))
        except BaseException:
            await forget_new(store, key, members[: len(answers)], answers, ttl=ttl)
            raise
    return answers


async def forget_new(
    store: StateStore,
    key: str,
    members: Sequence[tuple[str, float]],
    answers: Sequence[Membership],
    *,
    ttl: float,
) -> None:
    """Undo the members a `remember_all` that failed midway added (`answers`: what it said for the first
    `len(answers)` of them): none of them was judged, so a retry must find them new again. Each is
    forgotten at the expiry its last call gave it; a failure to forget is left to the store's expiry."""
    new = {member for (member, _), answer in zip(members, answers, strict=False) if answer.new}
    await forget_members(store, key, [(m, now) for m, now in members[: len(answers)] if m in new], ttl=ttl)


async def forget_members(
    store: StateStore, key: str, members: Sequence[tuple[str, float]], *, ttl: float
) -> None:
    """Forget each (member, now) remembered with `ttl`, at the expiry its last call gave it, if it still
    holds that expiry (remembered again since, it is not ours to undo). A failure to forget is left to
    the store's expiry. On a store whose operations overlap (DynamoDB, where each may wait out a timeout)
    all at once; elsewhere one by one: a SQLite batch must not pause, or another worker's operations
    would run inside it (its transaction, and its rollback)."""
    last = {member: now + ttl for member, now in members}

    async def forget(member: str, expires_at: float) -> None:
        with contextlib.suppress(StateError):
            await store.forget(key, member, expires_at=expires_at)

    if store.overlaps:
        await asyncio.gather(*(forget(member, expires_at) for member, expires_at in last.items()))
        return
    for member, expires_at in last.items():
        await forget(member, expires_at)


def _nobody_told(decision: str) -> None:
    return None


@dataclass(frozen=True)
class SharedState:
    """A store every task shares, for decisions a task takes alone when the store fails (grouping
    windows, Slack's pace): `decided_alone(decision)` is told each time (the metrics count it)."""

    store: StateStore
    decided_alone: Callable[[str], None] = _nobody_told
