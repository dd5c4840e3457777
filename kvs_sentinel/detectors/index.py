"""Find the detectors that can match an event with at most three dict lookups, however many are loaded."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from kvs_sentinel.detectors.compiler import Detector
from kvs_sentinel.events import Event


class DetectorIndex:
    """Detectors keyed by the eventSource/eventName values their conditions require.

    A detector constrained on both sits under each (source, name) pair; on one, under that source or name;
    on neither, everywhere. Every lookup result is precomputed and keeps the detectors' load order.
    """

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)
        pairs: dict[tuple[str, str], list[Detector]] = defaultdict(list)
        by_source: dict[str, list[Detector]] = defaultdict(list)
        by_name: dict[str, list[Detector]] = defaultdict(list)
        everywhere: list[Detector] = []
        for detector in self.detectors:
            sources, names = detector.event_sources, detector.event_names
            if sources is not None and names is not None:
                for source in sources:
                    for name in names:
                        pairs[source, name].append(detector)
            elif sources is not None:
                for source in sources:
                    by_source[source].append(detector)
            elif names is not None:
                for name in names:
                    by_name[name].append(detector)
            else:
                everywhere.append(detector)
        order = {id(detector): position for position, detector in enumerate(self.detectors)}

        def merged(*groups: Sequence[Detector]) -> tuple[Detector, ...]:
            unique = {id(d): d for group in groups for d in group}
            return tuple(sorted(unique.values(), key=lambda d: order[id(d)]))

        self._everywhere = merged(everywhere)
        self._by_source = {s: merged(found, everywhere) for s, found in by_source.items()}
        self._by_name = {n: merged(found, everywhere) for n, found in by_name.items()}
        exact_keys = set(pairs) | {(s, n) for s in by_source for n in by_name}
        for source, name in {(s, n) for (s, n) in pairs}:
            exact_keys.add((source, name))
        self._exact = {
            (s, n): merged(pairs.get((s, n), ()), by_source.get(s, ()), by_name.get(n, ()), everywhere)
            for s, n in exact_keys
        }
        for (source, name), found in list(self._exact.items()):
            # a pair also needs the source-only detectors' siblings reachable by source alone
            self._by_source.setdefault(source, self._everywhere)
            self._by_name.setdefault(name, self._everywhere)
            self._exact[source, name] = found

    def candidates(self, event: Event) -> tuple[Detector, ...]:
        doc = event.doc
        source = doc.eventSource if type(doc.eventSource) is str else None
        name = doc.eventName if type(doc.eventName) is str else None
        found = self._exact.get((source, name))  # type: ignore[arg-type]
        if found is not None:
            return found
        by_source = self._by_source.get(source) if source is not None else None
        by_name = self._by_name.get(name) if name is not None else None
        if by_name is None:
            return by_source if by_source is not None else self._everywhere
        if by_source is None:
            return by_name
        # source and name are both known to the index but never together: their union is small and rare
        return tuple(sorted({*by_source, *by_name}, key=self.detectors.index))
