"""Documents in, alerts out: the shared core of `replay` and `run`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import structlog

from kvs_sentinel.alerts import Alert, build_alert, build_failure_alert
from kvs_sentinel.detectors.compiler import Detector, Plan
from kvs_sentinel.detectors.index import DetectorIndex
from kvs_sentinel.envelopes import (
    CLOUDTRAIL_DETAIL_TYPES,
    Document,
    Item,
    LogFileRef,
    Malformed,
    Skipped,
    as_doc,
    is_record,
    items_of,
    normalise,
    record_element,
    records_of,
)
from kvs_sentinel.events import DOC_DECODER, Doc, Event, Location, decode_tolerant
from kvs_sentinel.stats import RunStats

log = structlog.get_logger("kvs_sentinel.engine")


class Engine:
    """Matches events against the loaded detectors through the eventSource/eventName index."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.index = DetectorIndex(detectors)

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self.index.detectors

    def evaluate(self, event: Event, plans: tuple[Plan, ...] | None = None) -> list[Alert]:
        """Every alert for the event. A detector that raises costs nobody else: it yields an alert that
        says it failed on this event (`Alert.detector_failed`), and the other detectors still run."""
        alerts: list[Alert] = []
        for plan in self.index.plans(event) if plans is None else plans:
            try:
                if plan.predicate(event):
                    severity, because = plan.severity_for(event)
                    alerts.append(build_alert(plan.detector, event, severity, because))
            except Exception as exc:
                log.error(
                    "detector_failed",
                    detector=plan.detector.id,
                    where=event.where(),
                    event_id=str(event.doc.eventID),
                    error=repr(exc),
                )
                alerts.append(build_failure_alert(plan.detector, event, exc))
        return alerts


@dataclass
class Outcome:
    """What one document (or one message) produced."""

    alerts: list[Alert] = field(default_factory=list)
    log_files: list[LogFileRef] = field(default_factory=list)
    malformed: int = 0


class Processor:
    """Runs documents through the normaliser and the engine, counting everything in `stats`.

    One bad record or one crashing detector costs that record only: it is counted and reported,
    the rest go on. `on_event_time`, when given, sees the `eventTime` of every event read, whether or not
    a detector looks at it (`run` measures its lag with it; `replay` passes none).
    """

    def __init__(
        self, engine: Engine, stats: RunStats, on_event_time: Callable[[object], object] | None = None
    ) -> None:
        self.engine = engine
        self.stats = stats
        self.on_event_time = on_event_time

    def process(self, document: Document, outcome: Outcome | None = None) -> Outcome:
        outcome = outcome or Outcome()
        try:
            if document.kind == "lines":
                self._lines(document, outcome)
            elif document.kind == "records":
                self._records(document.data, document.location, document.start, outcome)  # type: ignore[arg-type]
            elif document.kind == "document" and (records := _records_field(document.data)) is not None:
                self._records(records, document.location, 0, outcome)
            else:
                self._items(items_of(document), outcome)
        except Exception as exc:  # a decoding bug costs the rest of this document, never other documents
            outcome.malformed += 1
            self.stats.report_malformed(
                Malformed(document.location.describe(), f"could not be read, skipped: {exc!r:.300}")
            )
        return outcome

    # The two fast paths below cover the bulk of large replays and of S3 log files: a bare, EventBridge or
    # Records record is counted, and becomes an Event only when some detector applies to its API call.
    # Anything unusual takes the general path of envelopes.py, element by element.

    def _lines(self, document: Document, outcome: Outcome) -> None:
        decode = DOC_DECODER.decode
        plans_for = self.engine.index.plans_for
        location = document.location
        observe = self.on_event_time
        bare = 0
        lines: list[bytes] = document.data  # type: ignore[assignment]
        for number, line in enumerate(lines, document.start):
            try:
                doc = decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                if line.strip():
                    self._items(normalise(line, Location(location.source, number)), outcome)
                continue
            if type(doc) is Doc and doc.eventSource is not None and doc.s3 is None:
                bare += 1
                if observe is not None:
                    observe(doc.eventTime)
                source, name = doc.eventSource, doc.eventName
                if type(source) is str and type(name) is str:
                    plans = plans_for(source, name)
                    if plans:
                        self._evaluate(Event(doc, "record", location, None, None, number), outcome, plans)
                else:
                    self._evaluate(Event(doc, "record", location, None, None, number), outcome, None)
            elif (
                type(doc) is Doc
                and type(doc.detail_type) is str
                and doc.detail_type in CLOUDTRAIL_DETAIL_TYPES
            ):
                inner = as_doc(doc.detail) if doc.detail else None
                if inner is not None:
                    self.stats.events_by_form["eventbridge"] += 1
                    if observe is not None:
                        observe(inner.eventTime)
                    self._evaluate(Event(inner, "eventbridge", location, None, doc, number), outcome, None)
                else:
                    self._items(normalise(line, Location(location.source, number)), outcome)
            else:
                self._items(normalise(line, Location(location.source, number)), outcome)
        if bare:
            self.stats.events_by_form["record"] += bare

    def _records(self, raw: bytes | msgspec.Raw, location: Location, start: int, outcome: Outcome) -> None:
        elements = records_of(raw)
        if elements is None:
            self._items(items_of(Document(bytes(raw), location, "records", start)), outcome)
            return
        plans_for = self.engine.index.plans_for
        observe = self.on_event_time
        records = 0
        for position, element in enumerate(elements, start):
            doc = as_doc(element)
            if doc is not None and doc.eventSource is not None and doc.s3 is None:
                records += 1
                if observe is not None:
                    observe(doc.eventTime)
                source, name = doc.eventSource, doc.eventName
                if type(source) is str and type(name) is str:
                    plans = plans_for(source, name)
                    if plans:
                        self._evaluate(Event(doc, "records", location, position), outcome, plans)
                else:
                    self._evaluate(Event(doc, "records", location, position), outcome, None)
            else:
                self._items(record_element(doc, "records", location, position), outcome)
        if records:
            self.stats.events_by_form["records"] += records

    def _items(self, items: Iterable[Item], outcome: Outcome) -> None:
        stats = self.stats
        for item in items:
            if type(item) is Event:
                stats.events_by_form[item.form] += 1
                if self.on_event_time is not None:
                    self.on_event_time(item.doc.eventTime)
                self._evaluate(item, outcome, None)
            elif type(item) is Skipped:
                stats.skipped[item.reason] += 1
            elif type(item) is Malformed:
                outcome.malformed += 1
                stats.report_malformed(item)
            elif type(item) is LogFileRef:
                stats.log_files_referenced += 1
                outcome.log_files.append(item)

    def _evaluate(self, event: Event, outcome: Outcome, plans: tuple[Plan, ...] | None) -> None:
        alerts = self.engine.evaluate(event, plans)
        if alerts:
            outcome.alerts.extend(alerts)
            for alert in alerts:
                if alert.detector_failed:
                    self.stats.detector_errors += 1
                else:
                    self.stats.alerts_by_detector[alert.detector] += 1
        if event.unreadable:
            for name in event.unreadable:
                outcome.malformed += 1
                self.stats.report_malformed(
                    Malformed(event.where(), f"`{name}` cannot be decoded; the other fields were judged")
                )


def _records_field(data: object) -> msgspec.Raw | None:
    """The `Records` array of a CloudTrail log file document, undecoded; None for any other document."""
    try:
        parsed = decode_tolerant(DOC_DECODER, data)  # type: ignore[arg-type]
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if type(parsed) is Doc and parsed.Records and not is_record(parsed):
        return parsed.Records
    return None
