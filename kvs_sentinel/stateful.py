"""Judging stateful detectors through the state store: the asynchronous half of `threshold` and
`first_seen` (detectors/stateful.py compiles them and turns matching events into observations).

The engine stays synchronous: a stateful detector that matches leaves a `Pending` in the outcome, and the
pipeline hands a message's pending checks here, in event order, before it delivers. Every decision is
made with the store's atomic operations, so N tasks on one shared store decide as one task would.

Idempotent: an SQS redelivery of an event (same eventID) never counts twice, and the event that made a
detector alert makes it alert again when redelivered (the pipeline's dedupe then drops the alert if it was
delivered): a delivery that failed is retried instead of lost.

- threshold: each eventID is counted once per window (a claim); a distinct count is a set of values. The
  first event to reach the threshold is recorded as the window's one alert (a set holding one eventID).
- first_seen: the group's values are a set whose members expire `expiry` after they were last seen. A
  value added to an empty set starts the group's learning period; a new value after it alerts, and its
  eventID is recorded so that a redelivery of that event alerts again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from kvs_sentinel.alerts import Alert, build_alert
from kvs_sentinel.detectors.compiler import Detector
from kvs_sentinel.detectors.stateful import (
    Answer,
    FirstSeenRule,
    Known,
    Observation,
    Observe,
    StatefulRule,
    ThresholdRule,
    answers_for,
)
from kvs_sentinel.engine import Pending
from kvs_sentinel.state.base import Membership, StateError, StateStore, forget_members, forget_new
from kvs_sentinel.stats import RunStats

_NO_EVENT_ID = "(no eventID)"
DEFAULT_CACHE_SIZE = 200_000
CacheKey = tuple[str, str, str]  # (detector, group, value)
GroupKey = tuple[str, str]  # (detector, group)


@dataclass
class Learnt:
    """What the store told one message's judging, for the cache once the message's batch committed."""

    known: dict[CacheKey, Answer] = field(default_factory=dict)
    learning: dict[GroupKey, float] = field(default_factory=dict)


class StatefulJudge:
    """Decides, through `store`, which pending stateful checks alert. With `learn`, every event is
    remembered and counted as usual but nothing alerts (`replay --learn`: a baseline from history).

    A local cache spares the store the common case, a value already known: once the store said a value
    is in a group's baseline (or a window's distinct set), the same value is judged here, with no store
    call, until a tenth of its expiry has passed (then one call refreshes its expiry) or for the rest of
    its window. The cache also holds the eventIDs that alerted for the value, read from the store when it
    was cached, so a redelivery of an alerting event still alerts again, whichever task alerted first.
    """

    def __init__(
        self, store: StateStore, stats: RunStats, *, learn: bool = False, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self.store = store
        self.stats = stats
        self.learn = learn
        self.cache_size = cache_size
        self._known: dict[str, Known] = {}  # by detector: what its `observer` reads
        self._held = 0  # answers in `_known`
        self._learning: dict[GroupKey, float] = {}  # until when a group learns, from our own claim

    async def judge(self, pending: Sequence[Pending]) -> list[Alert]:
        """The alerts the pending checks give, in order; StateError when the store fails (the caller
        retries the message: a stateful detector is never skipped on a guess)."""
        alerts: list[Alert] = []
        quiet = self.quiet
        # the engine asked `quiet` already when given it; what another worker taught since is used here
        asking = [item for item in pending if not quiet(item.plan.detector, item.observation)]
        if not asking:
            return alerts  # the common case, decided without a store call
        learnt = Learnt()  # this message's, and no other worker's
        async with self.store.batch():
            decided = await self._decide(asking, learnt)
        self._remember(learnt)  # only now: a batch that failed was undone, and so is what it taught
        for item, details in zip(asking, decided, strict=True):
            if details is None or self.learn:
                continue
            detector = item.plan.detector
            severity, because = item.plan.severity_for(item.event)
            alert = build_alert(detector, item.event, severity, because)
            alerts.append(msgspec.structs.replace(alert, details={**alert.details, **details}))
            self.stats.alerts_by_detector[detector.id] += 1
        return alerts

    async def _decide(self, asking: Sequence[Pending], learnt: Learnt) -> list[dict[str, Any] | None]:
        """`_ask` for each check. A detector's group is one chain, judged in event order; chains share no
        key, so on a store whose operations overlap (DynamoDB's round trips) they run concurrently: the
        message waits for its longest chain, not for every request in turn. Elsewhere (memory, SQLite:
        nothing to wait for) tasks would only add their cost: the checks run in event order."""
        if not self.store.overlaps:
            return [await self._ask(item, learnt) for item in asking]
        chains: dict[GroupKey, list[int]] = {}
        for position, item in enumerate(asking):
            chains.setdefault((item.plan.detector.id, item.observation.group), []).append(position)
        decided: list[dict[str, Any] | None] = [None] * len(asking)

        async def judge_chain(positions: list[int]) -> None:
            remembered = await self._values_of(positions, asking)
            for done, position in enumerate(positions):
                values = None if remembered is None else remembered.answers[done]
                try:
                    decided[position] = await self._ask(asking[position], learnt, values)
                except BaseException:  # a failed store, or a stop: the message comes back
                    if remembered is not None:
                        await remembered.forget_from(self.store, done)
                    raise

        if len(chains) == 1:
            await judge_chain(next(iter(chains.values())))
            return decided
        tasks = [asyncio.create_task(judge_chain(positions)) for positions in chains.values()]
        try:
            await asyncio.wait(tasks)  # every chain ends inside the batch, whether or not one failed
        finally:
            for task in tasks:
                task.cancel()  # only those still running: the caller was cancelled
        for task in tasks:
            failure = task.exception()
            if failure is not None:
                raise failure
        return decided

    async def _values_of(self, positions: list[int], asking: Sequence[Pending]) -> _Remembered | None:
        """For a first_seen chain (one group's baseline) of several checks, their values remembered by one
        store operation (one DynamoDB request, not one each): what each check's own `remember` would have
        said, in the chain's order."""
        detector = asking[positions[0]].plan.detector
        rule = detector.stateful
        if not isinstance(rule, FirstSeenRule) or len(positions) < 2:
            return None
        seen = [asking[position].observation for position in positions]
        key = f"{baseline_key(detector.id, seen[0].group)}/values"
        added = [(observation.value or "", observation.at) for observation in seen]
        answers = await self._store_values(
            detector.id, rule, key, seen[0].group, added, limit=rule.max_values
        )
        return _Remembered(key, added, answers, rule.expiry)

    async def _store_values(
        self,
        detector: str,
        rule: StatefulRule,
        key: str,
        group: str,
        added: Sequence[tuple[str, float]],
        *,
        limit: int,
    ) -> list[Membership]:
        """The (value, event time) of one group's observations remembered in `key`: one `remember`, or
        `remember_all`.

        A write whose answer never came (`StateError.maybe_applied`: DynamoDB timed out) may have added
        its values, and the retried message would find a new value known: its alert lost. So before the
        error goes on, the values the store cannot have held already are forgotten again (only if they
        still hold the expiry this write gave them), and the retry finds a new value new. A value the
        task's cache shows the store held at the event's time (`_held`) stays: this write only refreshed
        it. The price, for a value the store held but this task did not know (learnt by another task, or
        out of the cache): the retry finds it new, and it may alert once though it was known. Losing the
        alert of a new value would be worse."""
        ttl = rule.expiry if isinstance(rule, FirstSeenRule) else rule.window
        try:
            if len(added) == 1:
                value, at = added[0]
                return [await self.store.remember(key, value, now=at, ttl=ttl, limit=limit)]
            return await self.store.remember_all(key, added, ttl=ttl, limit=limit)
        except StateError as exc:
            if exc.maybe_applied:
                cached = self._known.get(detector, {}).get(group, {})
                held = {value for value, at in added if _held(rule, cached.get(value), at)}
                unknown = [(value, at) for value, at in added if value not in held]
                await forget_members(self.store, key, unknown, ttl=ttl)
            raise

    async def _ask(
        self, item: Pending, learnt: Learnt, values: Membership | None = None
    ) -> dict[str, Any] | None:
        """The alert's details if the store says the pending check alerts; what the store said about
        known values goes into `learnt`. `values`: a first_seen check's value already remembered."""
        detector = item.plan.detector
        rule = detector.stateful
        if isinstance(rule, ThresholdRule):
            return await self._threshold(detector.id, rule, item.observation, learnt)
        if isinstance(rule, FirstSeenRule):
            return await self._first_seen(detector.id, rule, item.observation, learnt, values)
        return None

    async def _threshold(
        self, detector: str, rule: ThresholdRule, seen: Observation, learnt: Learnt
    ) -> dict[str, Any] | None:
        store, at = self.store, seen.at
        start = rule.window_start(at)
        window = f"threshold/{detector}/{rule.window:g}/{seen.group}/{start:.0f}"
        alert_key = f"{window}/alert"
        # every key of the window lives at least until the window ends: `at` is inside it
        if rule.distinct is None:
            seen_key = f"{window}/seen/{seen.event_id}"
            counted: bool | None = None  # None: the claim failed
            try:
                counted = seen.event_id is None or await store.claim(seen_key, now=at, ttl=rule.window)
                total = await store.count(f"{window}/count", 1 if counted else 0, now=at, ttl=rule.window)
            except StateError as exc:
                # not counted after all: undo the claim, or the retry of this message would skip the count
                # (DynamoDB has no transaction around the two; SQLite's batch already undoes both). So
                # too a claim whose answer was lost (a timeout): it may have been applied. A claim
                # refused outright (throttled) is left alone: it may be an earlier delivery's, counted.
                ours = counted if counted is not None else exc.maybe_applied
                if ours and seen.event_id is not None:
                    with contextlib.suppress(StateError):
                        await store.release(seen_key, expires_at=at + rule.window)
                raise
            if total < rule.count or not await self._alerts_for(alert_key, seen, rule.window):
                return None
        else:
            assert seen.value is not None  # observe() gives a value to a distinct count
            distinct = f"{window}/distinct"
            cached = (detector, seen.group, seen.value)
            (added,) = await self._store_values(
                detector, rule, distinct, seen.group, [(seen.value, at)], limit=rule.count
            )
            total = added.size
            if added.new:
                # only the value that makes the count is the one that alerts; if its alert cannot be
                # recorded, the retry must find the value new again
                try:
                    alerted = total >= rule.count and await self._alerts_for(alert_key, seen, rule.window)
                except BaseException:
                    await forget_new(store, distinct, [(seen.value, at)], [added], ttl=rule.window)
                    raise
                learnt.known[cached] = (at, frozenset([seen.event_id or ""]) if alerted else frozenset())
                if not alerted:
                    return None
            else:
                alerted_by = await store.members(alert_key, now=at) if total >= rule.count else frozenset()
                learnt.known[cached] = (at, alerted_by)
                if seen.event_id not in alerted_by:
                    return None
        details: dict[str, Any] = {
            "group": seen.shown_group,
            "count": total,
            "threshold": rule.count,
            "window_seconds": rule.window,
            "window_start": _iso(start),
        }
        if rule.distinct is not None:
            details["distinct"] = rule.distinct.described
            details["values"] = sorted(await store.members(f"{window}/distinct", now=at))
        return details

    async def _first_seen(
        self,
        detector: str,
        rule: FirstSeenRule,
        seen: Observation,
        learnt: Learnt,
        values: Membership | None = None,
    ) -> dict[str, Any] | None:
        assert seen.value is not None  # observe() gives first_seen a value
        if values is not None:  # remembered by the chain, which undoes it if this fails
            return await self._first_seen_of(detector, rule, seen, learnt, values)
        key = f"{baseline_key(detector, seen.group)}/values"
        (values,) = await self._store_values(
            detector, rule, key, seen.group, [(seen.value, seen.at)], limit=rule.max_values
        )
        try:
            return await self._first_seen_of(detector, rule, seen, learnt, values)
        except BaseException:  # the retry must find the value new again (SQLite's batch undoes it anyway)
            await forget_new(self.store, key, [(seen.value, seen.at)], [values], ttl=rule.expiry)
            raise

    async def _first_seen_of(
        self, detector: str, rule: FirstSeenRule, seen: Observation, learnt: Learnt, values: Membership
    ) -> dict[str, Any] | None:
        """`_first_seen` once the value is remembered (`values`: what the store said)."""
        store, at = self.store, seen.at
        assert seen.value is not None
        group = baseline_key(detector, seen.group)
        cached = (detector, seen.group, seen.value)
        novel = f"{group}/alerted/{seen.value}"
        if values.full:
            return None  # more values than max_values are live: nothing new can be told from the rest
        if not values.new:
            # a redelivery of the event that alerted alerts again; any other known value is quiet
            alerted_by = await store.members(novel, now=at)
            learnt.known[cached] = (at, alerted_by)
            if seen.event_id not in alerted_by:
                return None
        elif values.size == 1 or await self._learning_at(detector, group, seen, learnt):
            # the group starts learning; when this claim is the one that starts it, its end is known here
            if values.size == 1 and await store.claim(f"{group}/learning", now=at, ttl=rule.learning):
                learnt.learning[detector, seen.group] = at + rule.learning
            learnt.known[cached] = (at, frozenset())
            return None
        elif self.learn:
            learnt.known[cached] = (at, frozenset())
        else:
            await self._alerts_for(novel, seen, rule.expiry)
            learnt.known[cached] = (at, frozenset([seen.event_id or ""]))
        return {
            "group": seen.shown_group,
            "first_seen": seen.value,
            "field": rule.value.described,
            "known_values": values.size - 1 if values.new else values.size,
        }

    async def _learning_at(self, detector: str, group: str, seen: Observation, learnt: Learnt) -> bool:
        """Whether the group learns at the event's time: known without a store call when this task's
        claim started the learning (a claim holds until it expires: nothing else removes it)."""
        until = learnt.learning.get((detector, seen.group)) or self._learning.get((detector, seen.group))
        if until is not None and seen.at < until:
            return True
        return await self.store.is_claimed(f"{group}/learning", now=seen.at)

    async def _alerts_for(self, key: str, seen: Observation, ttl: float) -> bool:
        """Whether this event is the one that alerts for `key`: the first to ask, or that one again."""
        member = seen.event_id or _NO_EVENT_ID
        recorded = await self.store.remember(key, member, now=seen.at, ttl=ttl, limit=1)
        return not recorded.full and (seen.event_id is not None or recorded.new)

    def observer(self, detector: Detector) -> Observe:
        """How the engine turns the detector's matching events into observations: none for those
        `quiet` would say are quiet, read straight from the event (most are: a quiet event costs no
        object, and is never queued for judging)."""
        rule = detector.stateful
        assert rule is not None
        return rule.observer(self._known.setdefault(detector.id, {}))

    def quiet(self, detector: Detector, seen: Observation) -> bool:
        """Whether the cache holds the store's answer about the value, and it still decides this event:
        then the event can give no alert, and the store need not be asked."""
        if seen.value is None or detector.stateful is None:
            return False  # a plain count: every event counts
        answer = self._known.get(detector.id, {}).get(seen.group, {}).get(seen.value)
        return answer is not None and answers_for(detector.stateful, answer, seen.at, seen.event_id)

    def _remember(self, learnt: Learnt) -> None:
        if self._held + len(learnt.known) + len(self._learning) > self.cache_size:
            # simplest bound: the store answers again, and the cache fills up anew (emptied in place:
            # the engine's observers read these very dicts)
            for known in self._known.values():
                known.clear()
            self._held = 0
            self._learning.clear()
        for (detector, group, value), answer in learnt.known.items():
            answers = self._known.setdefault(detector, {}).setdefault(group, {})
            self._held += value not in answers
            answers[value] = answer
        self._learning.update(learnt.learning)


def _held(rule: StatefulRule, answer: Answer | None, at: float) -> bool:
    """Whether the store's cached `answer` about a value shows the store held the value at `at`: within
    the value's expiry of when it was confirmed (first_seen), or in the same window (a distinct count,
    whose every window has a set of its own)."""
    if answer is None:
        return False
    confirmed = answer[0]
    if isinstance(rule, FirstSeenRule):
        return at < confirmed + rule.expiry
    return rule.window_start(confirmed) == rule.window_start(at)


@dataclass(frozen=True)
class _Remembered:
    """A first_seen chain's values, remembered together before its checks are judged."""

    key: str
    added: list[tuple[str, float]]  # (value, event time), in the chain's order
    answers: list[Membership]
    ttl: float

    async def forget_from(self, store: StateStore, done: int) -> None:
        """Undo the values of the checks from position `done` on (not judged, or failed): their retry
        must find them new again. A value new there last occurs there too, so its expiry is known."""
        await forget_new(store, self.key, self.added[done:], self.answers[done:], ttl=self.ttl)


def baseline_key(detector: str, group: str) -> str:
    """Where a first_seen detector keeps one group's baseline (`/values`, `/learning`, `/alerted/…`)."""
    return f"first_seen/{detector}/{group}"


@dataclass(frozen=True)
class Baseline:
    detector: str
    grouped_by: str
    values: tuple[str, ...]
    learning: bool


async def baselines(
    store: StateStore, detectors: Sequence[Detector], group: str, now: float
) -> list[Baseline]:
    """What each first_seen detector grouped by one field holds for `group` at `now` (if anything)."""
    found = []
    for detector in detectors:
        rule = detector.stateful
        if not isinstance(rule, FirstSeenRule) or len(rule.grouping.fields) != 1:
            continue
        key = baseline_key(detector.id, group)
        values = await store.members(f"{key}/values", now=now)
        if values:
            learning = await store.is_claimed(f"{key}/learning", now=now)
            found.append(Baseline(detector.id, rule.grouping.fields[0].path, tuple(sorted(values)), learning))
    return found


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
