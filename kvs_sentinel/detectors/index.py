"""Which detectors can match an event, and their closures specialised to its API call.

Detectors are keyed by the literal eventSource/eventName values their conditions require. For each
(eventSource, eventName) met, the candidates' conditions are specialised once (see conditions.py) and the
resulting plans cached, so a detector that cannot match an API call costs nothing for its events and
tests on eventSource/eventName are never repeated per event.

Keys ignore case, so that case-insensitive conditions (Sigma's default) are indexed too: the index only
proposes candidates, and specialising a case-sensitive condition on the real values still decides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from kvs_sentinel.detectors.compiler import Detector, Plan
from kvs_sentinel.events import Event

# eventName values come from the input; past this many distinct API calls the plan cache starts over.
MAX_CACHED_CALLS = 20_000


class DetectorIndex:
    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)
        self._order = {detector.id: position for position, detector in enumerate(self.detectors)}
        self._pairs: dict[tuple[str, str], list[Detector]] = defaultdict(list)
        self._by_source: dict[str, list[Detector]] = defaultdict(list)
        self._by_name: dict[str, list[Detector]] = defaultdict(list)
        self._everywhere: list[Detector] = []
        for detector in self.detectors:
            sources, names = detector.event_sources, detector.event_names
            if sources is not None and names is not None:
                for source in {s.casefold() for s in sources}:
                    for name in {n.casefold() for n in names}:
                        self._pairs[source, name].append(detector)
            elif sources is not None:
                for source in {s.casefold() for s in sources}:
                    self._by_source[source].append(detector)
            elif names is not None:
                for name in {n.casefold() for n in names}:
                    self._by_name[name].append(detector)
            else:
                self._everywhere.append(detector)
        self._plans: dict[tuple[str | None, str | None], tuple[Plan, ...]] = {}
        self._generic = {d.id: plan for d in self.detectors if (plan := d.plan()) is not None}

    def candidates(self, event: Event) -> tuple[Detector, ...]:
        """Detectors whose eventSource/eventName constraints admit the event's API call, in load order."""
        source, name = event.doc.eventSource, event.doc.eventName
        return self.candidates_for(
            source if type(source) is str else None, name if type(name) is str else None
        )

    def candidates_for(self, source: str | None, name: str | None) -> tuple[Detector, ...]:
        source = source.casefold() if source is not None else None
        name = name.casefold() if name is not None else None
        found = {
            detector.id: detector
            for group in (
                self._pairs.get((source, name), ()) if source is not None and name is not None else (),
                self._by_source.get(source, ()) if source is not None else (),
                self._by_name.get(name, ()) if name is not None else (),
                self._everywhere,
            )
            for detector in group
        }
        return tuple(sorted(found.values(), key=lambda detector: self._order[detector.id]))

    def plans(self, event: Event) -> tuple[Plan, ...]:
        doc = event.doc
        source, name = doc.eventSource, doc.eventName
        if (source is not None and type(source) is not str) or (name is not None and type(name) is not str):
            # odd input: no specialising on values that are not names; plans built once per detector
            return tuple(self._generic[d.id] for d in self.candidates(event) if d.id in self._generic)
        return self.plans_for(source, name)

    @property
    def known_plans(self) -> Mapping[tuple[str | None, str | None], tuple[Plan, ...]]:
        """The plans built so far, by API call: `plans_for` fills it (the decoder looks here first)."""
        return self._plans

    def plans_for(self, source: str | None, name: str | None) -> tuple[Plan, ...]:
        """The plans for one API call (strings or None only), built on first use and cached."""
        plans = self._plans.get((source, name))
        if plans is None:
            plans = self._plan(source, name)
        return plans

    def _plan(self, source: str | None, name: str | None) -> tuple[Plan, ...]:
        known = {"eventSource": source, "eventName": name}
        plans = tuple(
            plan
            for detector in self.candidates_for(source, name)
            if (plan := detector.plan(known)) is not None
        )
        if len(self._plans) >= MAX_CACHED_CALLS:
            self._plans.clear()
        self._plans[source, name] = plans
        return plans
