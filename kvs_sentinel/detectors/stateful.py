"""Stateful conditions, compiled: `threshold` and `first_seen`.

A stateful detector first matches statelessly (its `match`), then its rule turns the matching event into an
`Observation`: the event's time, its eventID, its group key and the value to remember. This is all
synchronous and runs in the engine; asking the store what the observation means (a count crossing its
threshold, a value new for its group) is left to `kvs_sentinel.stateful`, which the pipeline awaits.

Time is the event's own `eventTime`, never the clock, so a replay of last month behaves as it did live.
Windows are fixed and aligned on the epoch (`window` seconds each): events arriving late or out of order
are counted in the window of their own time, as long as the store still holds it (README *Memory*: a day
after the latest event, in SQLite).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kvs_sentinel.detectors.codegen import generate_getter
from kvs_sentinel.events import Event, Getter

Derive = Literal["network"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or text such as `10m`, `1h`, `30d`; ValueError says why not."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value))
        if found is None:
            raise ValueError(f"{value!r} is not a duration: write seconds, or a number with s, m, h or d")
        seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return seconds


# Addresses and event times repeat (a busy account's devices, events sharing their second), and parsing
# one costs microseconds. Plain dicts, emptied when full: the observer reads them inline, where a
# functools.lru_cache call costs several times a dict look-up.
_NETWORKS: dict[str, str] = {}
_EPOCHS: dict[str, float] = {}
_CACHED = 65_536


def network_of(text: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address; anything else (a service name such as
    `kinesisvideo.amazonaws.com`, `AWS Internal`) is its own network."""
    network = _NETWORKS.get(text)
    if network is None:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            network = text
        else:
            prefix = 24 if address.version == 4 else 48
            network = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
        _cache_answer(_NETWORKS, text, network)
    return network


def event_epoch(event: Event) -> float:
    """The event's `eventTime` in epoch seconds; ValueError when it has none a stateful rule can use."""
    text = event.doc.eventTime
    if type(text) is not str:
        return _refuse(text)
    at = _EPOCHS.get(text)
    if at is None:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return _refuse(text)
        # CloudTrail writes UTC with a Z; a time without a zone is UTC too, never this machine's local time
        at = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        _cache_answer(_EPOCHS, text, at)
    return at


def _cache_answer(cache: dict[str, Any], text: str, answer: Any) -> None:
    if len(text) <= 256:  # hostile input can neither grow memory nor fill the cache with one value
        if len(cache) >= _CACHED:
            cache.clear()
        cache[text] = answer


def _refuse(text: Any) -> float:
    raise ValueError(f"eventTime {text!r} is not an ISO 8601 time; a stateful detector judges on event time")


@dataclass(frozen=True, slots=True)
class _Field:
    """A field path, or several: the first the event has a plain value for."""

    paths: tuple[str, ...]
    getters: tuple[Getter, ...]

    @property
    def path(self) -> str:
        return " or ".join(self.paths)

    def of(self, event: Event) -> str | None:
        for getter in self.getters:
            value = getter(event)
            if type(value) is str:
                if value:
                    return value
            elif value is not None and not isinstance(value, dict | list):
                return str(value)  # a number: an account id written without quotes
        return None


@dataclass(frozen=True, slots=True)
class _Grouping:
    fields: tuple[_Field, ...]

    def values(self, event: Event) -> tuple[str, ...] | None:
        values = []
        for field in self.fields:
            value = field.of(event)
            if value is None:
                return None  # a group without its key cannot be told apart from others: not judged
            values.append(value)
        return tuple(values)


@dataclass(slots=True)  # not frozen: a frozen dataclass is slow to build, and this is built per event
class Observation:
    """What a matching event says to a stateful rule, before the store is asked."""

    at: float  # event time, epoch seconds
    event_id: str | None
    group: str  # the group's values as canonical text: part of every store key
    value: str | None  # the distinct or first-seen value (after derivation); None for a plain count
    grouping: _Grouping
    group_values: tuple[str, ...]

    @property
    def shown_group(self) -> str:
        """The group for people (only alerts need it)."""
        pairs = zip(self.grouping.fields, self.group_values, strict=True)
        return ", ".join(f"{field.path}={value}" for field, value in pairs)


Observe = Callable[[Event], Observation | None]
# What the store said about a value of a group lately (a local cache of its answers, kept by
# kvs_sentinel.stateful): the event time it confirmed the value at, and the eventIDs that alerted for it.
Answer = tuple[float, frozenset[str]]
Known = dict[str, dict[str, Answer]]  # one detector's: group -> value -> Answer


def answers_for(rule: StatefulRule, answer: Answer, at: float, event_id: str | None) -> bool:
    """Whether the store's `answer` about a value still decides an event of the value at `at`: it is
    not one that alerted for the value, and the answer is fresh: from the same window (a distinct
    count), or from within a tenth of the value's expiry (first_seen: then the store refreshes it).
    Such an event can give no alert. `_observer` inlines this."""
    if answer[1] and event_id in answer[1]:
        return False
    confirmed = answer[0]
    if isinstance(rule, FirstSeenRule):
        return abs(at - confirmed) < rule.expiry / 10
    window = rule.window
    return confirmed - confirmed % window == at - at % window


def _observer(
    grouping: _Grouping, value: _Value | None, window: float | None, known: Known | None, fresh: float
) -> Observe:
    """One closure per rule that turns a matching event into its observation: stateful detectors match
    a large share of the events (every producer call), so this runs on the hot path and inlines what
    `_Value.of`, `_Grouping.values`, `event_epoch` and `answers_for` do, keeping them as the general
    (slow) path.

    `value` None: a plain count (no value); `window` None: first_seen (`fresh`: a tenth of its expiry).
    With `known`, an event whose value it holds an answer for that still decides it gives no
    observation: most matching events are such, and building an object for each would cost more than
    all the rest."""
    # each field's first path is read inline; when it holds no plain non-empty string, `_Field.of`
    # looks further (the other paths, a number)
    single = grouping.fields[0] if len(grouping.fields) == 1 else None
    group_first, group_of = (single.getters[0], single.of) if single is not None else (None, None)
    value_first, value_of = (value.field.getters[0], value.field.of) if value is not None else (None, None)
    derive = value is not None and value.derive == "network"
    networks, epochs = _NETWORKS.get, _EPOCHS.get
    known_in = known.get if known is not None and value is not None else None

    def observe(event: Event) -> Observation | None:
        seen: Any = None
        if value_first is not None:
            seen = value_first(event)
            if not (type(seen) is str and seen):
                seen = value_of(event)  # type: ignore[misc]
                if seen is None:
                    return None
            if derive:
                seen = networks(seen) or network_of(seen)
        if group_first is not None:
            group = group_first(event)
            if not (type(group) is str and group):
                group = group_of(event)  # type: ignore[misc]
                if group is None:
                    return None  # a group without its key cannot be told apart from others: not judged
            values: tuple[str, ...] | None = None  # (group,), once an observation is built
        else:
            found = grouping.values(event)
            if found is None:
                return None
            values, group = found, json.dumps(found)
        doc = event.doc
        text = doc.eventTime
        at = epochs(text) if type(text) is str else None  # None too for a time not seen lately
        if at is None:
            at = event_epoch(event)
        event_id = doc.eventID
        if not (isinstance(event_id, str) and event_id):
            event_id = None
        if known_in is not None and (answers := known_in(group)) is not None:
            answer = answers.get(seen)
            if answer is not None and not (answer[1] and event_id in answer[1]):
                confirmed = answer[0]
                if window is None:
                    if abs(at - confirmed) < fresh:
                        return None
                elif confirmed - confirmed % window == at - at % window:
                    return None
        return Observation(at, event_id, group, seen, grouping, values or (group,))

    return observe


@dataclass(frozen=True, slots=True)
class _Value:
    field: _Field
    derive: Derive | None

    @property
    def path(self) -> str:
        return self.field.path

    @property
    def described(self) -> str:
        return self.path + (f" ({self.derive})" if self.derive else "")

    def of(self, event: Event) -> str | None:
        value = self.field.of(event)
        if value is None:
            return None
        return network_of(value) if self.derive == "network" else value


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """At least `count` matching events (or distinct values of a field) per group within one window."""

    count: int
    window: float
    grouping: _Grouping
    distinct: _Value | None
    observe: Observe = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "observe", self.observer())

    def observer(self, known: Known | None = None) -> Observe:
        """`observe`, or with `known`, one that gives nothing for the events it decides (`_observer`)."""
        return _observer(self.grouping, self.distinct, self.window, known, math.inf)

    def window_start(self, at: float) -> float:
        return at - at % self.window


@dataclass(frozen=True, slots=True)
class FirstSeenRule:
    """A value (or its derived network) new for its group, once the group's learning period is over.

    A group's learning starts when its first value is remembered; values expire `expiry` after they were
    last seen, so a baseline follows change, and a group whose values all expired learns afresh."""

    value: _Value
    grouping: _Grouping
    learning: float
    expiry: float
    max_values: int
    observe: Observe = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "observe", self.observer())

    def observer(self, known: Known | None = None) -> Observe:
        """`observe`, or with `known`, one that gives nothing for the events it decides (`_observer`)."""
        return _observer(self.grouping, self.value, None, known, self.expiry / 10)


StatefulRule = ThresholdRule | FirstSeenRule


def compile_threshold(spec: Any) -> ThresholdRule:
    """ValueError names the field at fault (`window: ...`)."""
    if spec.derive is not None and spec.distinct is None:
        raise ValueError("derive: applies to the distinct field, and there is none")
    return ThresholdRule(
        count=spec.count,
        window=_field("window", parse_duration, spec.window),
        grouping=_grouping(spec.group_by),
        distinct=None if spec.distinct is None else _value("distinct", spec.distinct, spec.derive),
    )


def compile_first_seen(spec: Any) -> FirstSeenRule:
    return FirstSeenRule(
        value=_value("value", spec.value, spec.derive),
        grouping=_grouping(spec.group_by),
        learning=_field("learning", parse_duration, spec.learning),
        expiry=_field("expiry", parse_duration, spec.expiry),
        max_values=spec.max_values,
    )


def _field(name: str, compile_one: Any, value: Any) -> Any:
    try:
        return compile_one(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _grouping(choices: Sequence[str | list[str]]) -> _Grouping:
    return _Grouping(tuple(_choice(f"group_by[{i}]", choice) for i, choice in enumerate(choices)))


def _value(name: str, choice: str | list[str], derive: Derive | None) -> _Value:
    return _Value(_choice(name, choice), derive)


def _choice(name: str, choice: str | list[str]) -> _Field:
    paths = (choice,) if isinstance(choice, str) else tuple(choice)
    if not paths:
        raise ValueError(f"{name}: an empty list of field paths")
    return _Field(paths, tuple(_field(name, generate_getter, path) for path in paths))
