"""No floods: suppressions silence known noise; grouping sends the first of a burst and summarises the rest.

Suppressions match alert fields (glob by default, or any operator of the detector language: `cidr`,
`regex`…), carry a reason and an expiry date, and stop applying the day after they expire.

Grouping keeps one window per (sink, dedupe key). The dedupe key is the detector plus configurable alert
fields (`principal` and `resource` unless told otherwise) and the severity, so an escalated repeat
is sent rather than counted. The first alert of a key goes out at once and
opens a window; repeats inside it are counted and become one summary alert when the window ends (or at
shutdown, or when too many windows are open). State is per sink, so a sink that failed an alert still gets
it when the message is redelivered, while the sinks that already have it count the redelivery as a
duplicate of an event they have seen. With `shared` windows (a store every task shares), a window is
opened by one task only: the others count their alerts into windows of their own that end with it, and
one task summarises every task's repeats (`shared_windows.py`).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kvs_sentinel.alert_fields import AlertField, MatchField
from kvs_sentinel.alerts import Alert
from kvs_sentinel.clock import SYSTEM_CLOCK, Clock
from kvs_sentinel.detectors.operators import Test, compile_operator
from kvs_sentinel.shared_windows import SharedWindows

_MAX_SEEN_IDS = 1_000
_SAMPLE_IDS = 5


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class SuppressionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    match: dict[MatchField, str | list[str] | dict[str, Any]] = Field(min_length=1)
    reason: str = Field(min_length=3, description="why this is known noise; shown in validate and logs")
    expires: dt.date = Field(description="last day the suppression applies (UTC)")

    @field_validator("match")
    @classmethod
    def _compiles(
        cls, match: dict[str, str | list[str] | dict[str, Any]]
    ) -> dict[str, str | list[str] | dict[str, Any]]:
        for name, condition in match.items():
            try:
                _compile_condition(condition)
            except ValueError as exc:
                raise ValueError(f"match.{name}: {exc}") from None
        return match


def _compile_condition(condition: str | list[str] | dict[str, Any]) -> Test:
    """A string or a list of strings is a glob; a mapping is `{operator: argument, ...}`, all must hold."""
    if isinstance(condition, str | list):
        return compile_operator("glob", condition)
    tests = [compile_operator(name, argument) for name, argument in condition.items()]
    if not tests:
        raise ValueError("an empty operator mapping matches nothing")
    return lambda value: all(test(value) for test in tests)


@dataclass(frozen=True)
class Suppression:
    index: int
    spec: SuppressionSpec
    tests: tuple[tuple[str, Test], ...]

    @property
    def label(self) -> str:
        return f"suppressions[{self.index}] ({self.spec.reason})"

    def matches(self, alert: Alert) -> bool:
        return all(test(getattr(alert, name)) for name, test in self.tests)


class Suppressions:
    """The configured suppressions; `match` ignores those expired by `today()` (checked per alert, so a
    long-running process stops applying a suppression the day after its expiry date)."""

    def __init__(self, specs: Sequence[SuppressionSpec], today: Callable[[], dt.date] = _utc_today) -> None:
        self.all = tuple(
            Suppression(i, spec, tuple((name, _compile_condition(c)) for name, c in spec.match.items()))
            for i, spec in enumerate(specs)
        )
        self.today = today
        self.counts: Counter[str] = Counter()

    def expired(self) -> list[Suppression]:
        today = self.today()
        return [s for s in self.all if s.spec.expires < today]

    def match(self, alert: Alert) -> Suppression | None:
        if not self.all:
            return None
        today = self.today()
        for suppression in self.all:
            if suppression.spec.expires >= today and suppression.matches(alert):
                self.counts[suppression.label] += 1
                return suppression
        return None


class GroupingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    window_seconds: float = Field(default=300, ge=0, le=86_400, description="0 turns grouping off")
    key: list[AlertField] = ["principal", "resource"]
    detectors: dict[str, list[AlertField]] = Field(
        default={}, description="per-detector key fields, replacing `key` for that detector"
    )
    max_groups: int = Field(
        default=10_000, ge=1, description="open windows kept; the oldest closes early past it"
    )


@dataclass
class _Group:
    key_fields: tuple[str, ...]
    key_values: tuple[str | None, ...]
    first: Alert
    opened_at: float
    deadline: float
    inflight: bool = True
    delivered: bool = False
    repeats: int = 0
    last: Alert | None = None
    seen_ids: set[str] = field(default_factory=set)
    sample_ids: list[str] = field(default_factory=list)
    follower: bool = False  # another task opened the shared window and sent the first alert
    # when the shared window this group counts into ends (wall time); unless a follower, this task's
    # claim on it, which expires then
    shared_until: float | None = None


Closed = Literal["window_end", "shutdown", "evicted"]
_Key = tuple[str, str, tuple[str | None, ...]]


class Grouper:
    def __init__(
        self, spec: GroupingSpec, clock: Clock = SYSTEM_CLOCK, shared: SharedWindows | None = None
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.shared = shared if spec.window_seconds > 0 else None
        self._groups: OrderedDict[_Key, _Group] = OrderedDict()
        # (deadline, tie-break, key, group), a heap: a follower's window ends with the shared one, not in
        # the order windows opened here; an entry is stale once its group closed or its deadline moved
        self._deadlines: list[tuple[float, int, _Key, _Group]] = []
        self._pushed = itertools.count()
        self._closed: list[tuple[str, Alert]] = []
        # shared windows that ended: (key, group, when the window ended in wall time); their counts are
        # handed in next, then their summaries taken `when` (monotonic) comes
        self._ended_shared: list[tuple[_Key, _Group, float]] = []
        self._summaries_to_take: list[tuple[float, _Key, _Group, float]] = []
        self.repeats = 0
        self.duplicates = 0

    @property
    def enabled(self) -> bool:
        return self.spec.window_seconds > 0

    @property
    def open_groups(self) -> int:
        return len(self._groups)

    def _fields(self, detector: str) -> tuple[str, ...]:
        return tuple(self.spec.detectors.get(detector, self.spec.key))

    def _key(self, sink: str, alert: Alert) -> _Key:
        # severity is always in the key: an escalated repeat (medium → critical) is news, not a repeat
        values = tuple(getattr(alert, name) for name in self._fields(alert.detector))
        return sink, f"{alert.detector}/{alert.severity}", values

    async def observe(self, sink: str, alert: Alert) -> bool:
        """True: send `alert` to `sink` now (then call `settle`). False: it was counted into a window."""
        if not self.enabled:
            return True
        now = self.clock.monotonic()
        key = self._key(sink, alert)
        group = self._groups.get(key)
        if group is not None and now >= group.deadline:
            self._close(key, "window_end")
            group = None
        if group is None:
            group = self._open(key, alert, now)
            return await self._opened_here(key, group) or self._count(group, alert)
        if group.follower:
            # the shared window may have ended before this task's own: then this alert opens the next
            expires_at = await self._shared_windows().claim(key)
            if expires_at is None:
                return self._count(group, alert)
            self._close(key, "window_end")
            self._open(key, alert, now).shared_until = expires_at
            return True
        if not group.delivered and not group.inflight:
            group.first, group.inflight = alert, True  # the first one failed: this one goes out instead
            return await self._opened_here(key, group) or self._count(group, alert)
        return self._count(group, alert)

    async def _opened_here(self, key: _Key, group: _Group) -> bool:
        """Whether this task holds the window (always, unless windows are shared and another task does)."""
        if self.shared is None:
            return True
        group.shared_until = await self.shared.claim(key)
        if group.shared_until is not None:
            return True
        group.follower, group.inflight, group.delivered = True, False, True
        group.seen_ids.clear()  # the alert is counted next, as a repeat of the other task's first
        group.shared_until = await self.shared.held_until(key)
        if group.shared_until is not None:  # else this task's own window, summarised alone
            group.deadline = self.clock.monotonic() + self.shared.seconds_until(group.shared_until)
            self._schedule(key, group)
        return False

    def _count(self, group: _Group, alert: Alert) -> bool:
        if alert.event_id is not None and alert.event_id in group.seen_ids:
            self.duplicates += 1  # a redelivered message whose alert this sink already has
            return False
        group.repeats += 1
        self.repeats += 1
        group.last = alert
        if alert.event_id is not None:
            if len(group.seen_ids) < _MAX_SEEN_IDS:
                group.seen_ids.add(alert.event_id)
            if len(group.sample_ids) < _SAMPLE_IDS:
                group.sample_ids.append(alert.event_id)
        return False

    def _open(self, key: _Key, alert: Alert, now: float) -> _Group:
        while len(self._groups) >= self.spec.max_groups:
            self._close(next(iter(self._groups)), "evicted")
        fields = self._fields(alert.detector)
        group = self._groups[key] = _Group(fields, key[2], alert, now, now + self.spec.window_seconds)
        self._schedule(key, group)
        if alert.event_id is not None:
            group.seen_ids.add(alert.event_id)
        return group

    async def settle(self, sink: str, alert: Alert, delivered: bool) -> None:
        """Record whether the alert `observe` let through reached the sink."""
        if not self.enabled:
            return
        key = self._key(sink, alert)
        group = self._groups.get(key)
        if group is not None and group.first is alert:
            group.inflight = False
            group.delivered = delivered
            claimed = None if group.follower else group.shared_until  # a follower holds no claim
            if not delivered and self.shared is not None and claimed is not None:
                await self.shared.release(key, claimed)  # its retry, anywhere, goes first
                group.shared_until = None

    def _schedule(self, key: _Key, group: _Group) -> None:
        heapq.heappush(self._deadlines, (group.deadline, next(self._pushed), key, group))

    def _next_open(self) -> tuple[_Key, _Group] | None:
        """The open window that ends first (dropping stale entries on the way)."""
        while self._deadlines:
            deadline, _, key, group = self._deadlines[0]
            if self._groups.get(key) is group and group.deadline == deadline:
                return key, group
            heapq.heappop(self._deadlines)
        return None

    def next_deadline(self) -> float | None:
        if self._closed or self._ended_shared:
            return self.clock.monotonic()
        deadlines = [when for when, *_ in self._summaries_to_take]
        if (first := self._next_open()) is not None:
            deadlines.append(first[1].deadline)
        return min(deadlines, default=None)

    async def due(self) -> list[tuple[str, Alert]]:
        """Summaries of the windows that have ended (and of those closed early), as (sink, alert)."""
        now = self.clock.monotonic()
        while (first := self._next_open()) is not None and first[1].deadline <= now:
            self._close(first[0], "window_end")
        await self._hand_in_ended()
        await self._take_summaries(lambda when: when <= now)
        closed, self._closed = self._closed, []
        return closed

    async def close_all(self) -> list[tuple[str, Alert]]:
        """Shutdown: every open window ends now; its repeats are summarised. A shared window's summary
        that was waiting for the other tasks' counts is taken now, with what they have handed in."""
        while self._groups:
            self._close(next(iter(self._groups)), "shutdown")
        await self._hand_in_ended()
        await self._take_summaries(lambda when: True)
        closed, self._closed = self._closed, []
        return closed

    def _close(self, key: _Key, how: Closed) -> None:
        group = self._groups.pop(key)
        if how == "window_end" and group.shared_until is not None:
            self._ended_shared.append((key, group, group.shared_until))
        elif group.repeats:
            self._closed.append((key[0], self._summary(group, how)))

    async def _hand_in_ended(self) -> None:
        """Each shared window that ended hands its repeats in; its opener (or, later, a task that counted
        repeats) then takes the summary once every task has had `grace_seconds` to hand theirs in."""
        if not self._ended_shared:
            return
        ended, self._ended_shared = self._ended_shared, []
        shared = self._shared_windows()
        for key, group, until in ended:
            if group.repeats and not await shared.hand_in(key, until, group.repeats):
                self._closed.append((key[0], self._summary(group, "window_end")))  # late, or alone
            elif group.repeats or not group.follower:
                wait = shared.grace_seconds * (2 if group.follower else 1)
                self._summaries_to_take.append((group.deadline + wait, key, group, until))

    async def _take_summaries(self, due: Callable[[float], bool]) -> None:
        if not self._summaries_to_take:
            return
        waiting, self._summaries_to_take = self._summaries_to_take, []
        shared = self._shared_windows()
        for when, key, group, until in waiting:
            if not due(when):
                self._summaries_to_take.append((when, key, group, until))
                continue
            total = await shared.take_summary(key, until, own=group.repeats)
            if total:
                self._closed.append((key[0], self._summary(group, "window_end", total)))

    def _shared_windows(self) -> SharedWindows:
        if self.shared is None:
            raise AssertionError("a window was shared without shared windows")
        return self.shared

    def _summary(self, group: _Group, how: Closed, every_task: int | None = None) -> Alert:
        """`every_task`: the repeats every task sharing the window counted, when this summary is theirs."""
        first, last = group.first, group.last or group.first
        elapsed = self.clock.monotonic() - group.opened_at
        span = (
            f"in the {_duration(self.spec.window_seconds)} after it"
            if how == "window_end"
            else f"in the {_duration(elapsed)} after it, before "
            + ("shutdown" if how == "shutdown" else "too many windows were open")
        )
        same = ", ".join(
            f"{name} {value}" for name, value in zip(group.key_fields, group.key_values, strict=True) if value
        )
        repeats = group.repeats if every_task is None else every_task
        plural = "s" if repeats != 1 else ""
        count = f"{repeats} more alert{plural}"
        if every_task is not None:
            count += " counted by every task"
        elif group.follower:  # this task counted them; another task opened the window and sent the first
            count = f"{repeats} alert{plural} counted by this task"
        details: dict[str, Any] = {
            "grouped": {
                "repeats": repeats,
                "closed": how,
                "window_seconds": self.spec.window_seconds,
                "key": dict(zip(group.key_fields, group.key_values, strict=True)),
                "first_event_id": first.event_id,
                "first_event_time": first.event_time,
                "last_event_time": last.event_time,
                "sample_event_ids": group.sample_ids,
                **({"first_sent_by": "another task"} if group.follower else {}),
                **({"counted_by": "every task"} if every_task is not None else {}),
            }
        }
        return msgspec.structs.replace(
            last,
            title=f"{first.title} (repeated {repeats} times)",
            summary=f"{count} like the first (same detector{', ' + same if same else ''}) {span}. "
            f"First: {first.summary}",
            details=details,
        )


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:.0f} s"
