"""The one decode layer: a unit of input in; the events some detector wants, and everything else counted.

`Decoder.decode` takes any unit the splitters produce (a whole document, a batch of JSON Lines, a chunk of
an array or of a log file's `Records`, or a Malformed/Skipped marker the splitter already made) and
yields what its consumer needs: the events that some detector can match (each with its plans looked up
once), log-file references, and the Malformed and Skipped markers. It is the only writer of the input
counters of `RunStats`: events by form, skipped by reason, malformed, log-file notifications.

Two fast paths cover the bulk of large inputs: a JSON Lines line or a `Records` element that is certainly
a bare CloudTrail record (it names its eventSource and is not an S3 notification), or a JSON Lines line
that is a CloudTrail EventBridge envelope. Such an event is counted, and becomes an `Event` only when a
detector applies to its API call. Anything else — every other envelope, anything odd — takes the general
path of `envelopes.normalise`, so each envelope rule is written once, there; the fast paths only decide
that a document needs none. tests/test_decode.py checks that both paths find the same events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec

from kvs_sentinel.envelopes import (
    CLOUDTRAIL_DETAIL_TYPES,
    ArrayChunk,
    Document,
    Item,
    LineBatch,
    LogFileRef,
    Malformed,
    RecordsChunk,
    Skipped,
    Unit,
    array_chunk_items,
    as_doc,
    is_record,
    normalise,
    record_element,
    records_items,
    records_of,
)
from kvs_sentinel.events import DOC_DECODER, Doc, Event, Location, decode_tolerant
from kvs_sentinel.stats import RunStats

# The detectors' plans for an API call (eventSource, eventName); empty when no detector can match it.
PlansFor = Callable[[str, str], tuple[Any, ...]]
# The plans `PlansFor` already built, by (eventSource, eventName): looked up inline on the fast paths,
# where a call per event costs more than the lookup.
KnownPlans = Mapping[tuple[str | None, str | None], tuple[Any, ...]]
Decoded = Event | LogFileRef | Malformed | Skipped


class Decoder:
    """Decodes units of input into the events worth judging, counting everything in `stats`.

    `plans_for` None: every event is wanted (tools and tests). `known_plans`: what `plans_for` has built so
    far (it must fill this mapping). `on_event_time`, when given, sees the `eventTime` of every event read,
    wanted or not (`run` measures its lag with it).
    """

    def __init__(
        self,
        stats: RunStats,
        plans_for: PlansFor | None = None,
        on_event_time: Callable[[object], object] | None = None,
        known_plans: KnownPlans | None = None,
    ) -> None:
        self.stats = stats
        self.plans_for = plans_for
        self.on_event_time = on_event_time
        self.known_plans: KnownPlans = {} if known_plans is None else known_plans

    def decode(self, unit: Unit | Malformed | Skipped) -> Iterator[Decoded]:
        if isinstance(unit, LineBatch):
            return self._lines(unit)
        if isinstance(unit, RecordsChunk):
            return self._records(unit.data, unit.location, unit.start)
        if isinstance(unit, Document):
            records = _records_field(unit.data)
            if records is not None:
                return self._records(records, unit.location, 0)
            return self._general(normalise(unit.data, unit.location))
        if isinstance(unit, ArrayChunk):
            return self._general(array_chunk_items(unit))
        return self._general((unit,))

    def _lines(self, batch: LineBatch) -> Iterator[Decoded]:
        decode = DOC_DECODER.decode
        plans_for = self.plans_for
        known = self.known_plans.get
        observe = self.on_event_time
        location = batch.location
        bare = 0
        try:
            for number, line in enumerate(batch.lines, batch.first_line):
                try:
                    doc = decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                    if line.strip():
                        yield from self._general(normalise(line, Location(location.source, number)))
                    continue
                if type(doc) is Doc and doc.eventSource is not None and doc.s3 is None:
                    bare += 1
                    if observe is not None:
                        observe(doc.eventTime)
                    source, name = doc.eventSource, doc.eventName
                    if plans_for is None or type(source) is not str or type(name) is not str:
                        yield Event(doc, "record", location, None, None, number)
                        continue
                    plans = known((source, name))
                    if plans is None:
                        plans = plans_for(source, name)
                    if plans:
                        yield Event(doc, "record", location, None, None, number, plans)
                elif (
                    type(doc) is Doc
                    and type(doc.detail_type) is str
                    and doc.detail_type in CLOUDTRAIL_DETAIL_TYPES
                    and (inner := as_doc(doc.detail) if doc.detail else None) is not None
                ):
                    yield from self._wanted(Event(inner, "eventbridge", location, None, doc, number))
                else:
                    yield from self._general(normalise(line, Location(location.source, number)))
        finally:
            if bare:
                self.stats.events_by_form["record"] += bare

    def _records(self, raw: bytes | msgspec.Raw, location: Location, start: int) -> Iterator[Decoded]:
        elements = records_of(raw)
        if elements is None:
            yield from self._general(records_items(raw, location, "", start))
            return
        plans_for = self.plans_for
        known = self.known_plans.get
        observe = self.on_event_time
        records = 0
        try:
            for position, element in enumerate(elements, start):
                doc = as_doc(element)
                if doc is not None and doc.eventSource is not None and doc.s3 is None:
                    records += 1
                    if observe is not None:
                        observe(doc.eventTime)
                    source, name = doc.eventSource, doc.eventName
                    if plans_for is None or type(source) is not str or type(name) is not str:
                        yield Event(doc, "records", location, position)
                        continue
                    plans = known((source, name))
                    if plans is None:
                        plans = plans_for(source, name)
                    if plans:
                        yield Event(doc, "records", location, position, plans=plans)
                else:
                    yield from self._general(record_element(doc, "records", location, position))
        finally:
            if records:
                self.stats.events_by_form["records"] += records

    def _general(self, items: Iterable[Item]) -> Iterator[Decoded]:
        stats = self.stats
        for item in items:
            kind = type(item)
            if kind is Event:
                yield from self._wanted(item)  # type: ignore[arg-type]
            elif kind is Skipped:
                stats.skipped[item.reason] += 1  # type: ignore[union-attr]
                yield item
            elif kind is Malformed:
                stats.report_malformed(item)  # type: ignore[arg-type]
                yield item
            elif kind is LogFileRef:
                stats.log_files_referenced += 1
                yield item

    def _wanted(self, event: Event) -> Iterator[Event]:
        """Count an event found by any path; yield it if some detector may match it."""
        doc = event.doc
        self.stats.events_by_form[event.form] += 1
        if self.on_event_time is not None:
            self.on_event_time(doc.eventTime)
        source, name = doc.eventSource, doc.eventName
        if self.plans_for is None or type(source) is not str or type(name) is not str:
            yield event  # odd values: the engine picks generic plans
        elif plans := self.plans_for(source, name):
            event.plans = plans
            yield event


def decode_all(unit: Unit | Malformed | Skipped) -> Iterator[Decoded]:
    """Every event and marker of one unit, for tools and tests (nothing filtered, counts thrown away)."""
    return Decoder(RunStats()).decode(unit)


def _records_field(data: bytes | str) -> msgspec.Raw | None:
    """The `Records` array of a CloudTrail log file document, undecoded; None for any other document."""
    try:
        parsed = decode_tolerant(DOC_DECODER, data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if type(parsed) is Doc and parsed.Records and not is_record(parsed):
        return parsed.Records
    return None
