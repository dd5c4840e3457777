"""The `memory` backend: one process's dicts. Atomic because the event loop runs one coroutine at a time
and no operation awaits; forgotten at exit, and never shared between tasks.

Bounded: past `max_keys` keys of one kind, the oldest key goes first (for claims, expired ones first).
Expired claims are dropped only once the limit is reached: callers on event time pass `now` out of
order (a late event), so a claim expired for one call may still hold for the next.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from kvs_sentinel.state.base import Membership, Unbatched, remember_in_turn

DEFAULT_MAX_KEYS = 100_000


class MemoryStore:
    overlaps = False  # no operation awaits anything

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._claims: OrderedDict[str, float] = OrderedDict()
        self._counters: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._sets: OrderedDict[str, _Set] = OrderedDict()

    def __len__(self) -> int:
        return len(self._claims) + len(self._counters) + len(self._sets)

    async def claim(self, key: str, *, now: float, ttl: float) -> bool:
        claims = self._claims
        while len(claims) >= self.max_keys and next(iter(claims.values())) <= now:  # the oldest first
            claims.popitem(last=False)
        if claims.get(key, now) > now:
            return False
        claims.pop(key, None)
        claims[key] = now + ttl
        _bound(claims, self.max_keys)
        return True

    async def release(self, key: str, *, expires_at: float) -> None:
        if self._claims.get(key) == expires_at:
            del self._claims[key]

    async def is_claimed(self, key: str, *, now: float) -> bool:
        return await self.claimed_until(key, now=now) is not None

    async def claimed_until(self, key: str, *, now: float) -> float | None:
        expires_at = self._claims.get(key, now)
        return expires_at if expires_at > now else None

    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        total, expires_at = self._counters.get(key, (0, now))
        if expires_at <= now:
            total, expires_at = 0, now + ttl
        total += amount
        self._counters[key] = (total, expires_at)
        _bound(self._counters, self.max_keys)
        return total

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        kept = self._sets.get(key)
        if kept is None:
            kept = self._sets[key] = _Set()
            _bound(self._sets, self.max_keys)
        found = kept.members
        if kept.earliest <= now:  # a member may have expired (a big set is not swept on every call)
            for name in [name for name, expires_at in found.items() if expires_at <= now]:
                del found[name]
            kept.earliest = min(found.values(), default=float("inf"))
        kept.earliest = min(kept.earliest, now + ttl)
        if member in found:
            found[member] = now + ttl
            return Membership(False, len(found), False)
        if len(found) >= limit:
            return Membership(False, len(found), True)
        found[member] = now + ttl
        return Membership(True, len(found), False)

    async def remember_all(
        self, key: str, members: Sequence[tuple[str, float]], *, ttl: float, limit: int
    ) -> list[Membership]:
        return await remember_in_turn(self, key, members, ttl=ttl, limit=limit)

    async def forget(self, key: str, member: str, *, expires_at: float) -> None:
        kept = self._sets.get(key)
        if kept is not None and kept.members.get(member) == expires_at:
            del kept.members[member]

    async def members(self, key: str, *, now: float) -> frozenset[str]:
        kept = self._sets.get(key)
        members = kept.members if kept is not None else {}
        return frozenset(name for name, expires_at in members.items() if expires_at > now)

    def batch(self) -> Unbatched:
        return Unbatched()

    async def aclose(self) -> None:
        return None


class _Set:
    """A set's members, each with when it expires; no member expires before `earliest`."""

    __slots__ = ("earliest", "members")

    def __init__(self) -> None:
        self.members: dict[str, float] = {}
        self.earliest = float("inf")


def _bound(entries: OrderedDict[str, Any], max_keys: int) -> None:
    while len(entries) > max_keys:
        entries.popitem(last=False)
