"""Documents in, alerts out: the shared core of `replay` and `run`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import structlog

from kvs_sentinel.alerts import Alert, build_alert
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
    items_of,
    normalise,
)
from kvs_sentinel.events import DOC_DECODER, Doc, Event, Location
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
        alerts: list[Alert] = []
        for plan in self.index.plans(event) if plans is None else plans:
            if plan.predicate(event):
                severity, because = plan.severity_for(event)
                alerts.append(build_alert(plan.detector, event, severity, because))
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
    the rest go on.
    """

    def __init__(self, engine: Engine, stats: RunStats) -> None:
        self.engine = engine
        self.stats = stats

    def process(self, document: Document, outcome: Outcome | None = None) -> Outcome:
        outcome = outcome or Outcome()
        if document.kind == "lines":
            self._lines(document, outcome)
        else:
            self._items(items_of(document), outcome)
        return outcome

    def _lines(self, document: Document, outcome: Outcome) -> None:
        """JSON Lines, the bulk of large replays: a bare or EventBridge record becomes an Event only when
        some detector applies to its API call. Anything else takes the general path, line by line."""
        plans_for = self.engine.index.plans_for
        decode = DOC_DECODER.decode
        location = document.location
        counts = {"record": 0, "eventbridge": 0}
        lines: list[bytes] = document.data  # type: ignore[assignment]
        for number, line in enumerate(lines, document.start):
            try:
                doc = decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                if line.strip():
                    self._items(normalise(line, Location(location.source, number)), outcome)
                continue
            envelope = None
            if type(doc) is Doc and doc.eventSource is not None and doc.s3 is None:
                form = "record"
            elif (
                type(doc) is Doc
                and type(doc.detail_type) is str
                and doc.detail_type in CLOUDTRAIL_DETAIL_TYPES
            ):
                envelope, doc = doc, as_doc(doc.detail) if doc.detail else None
                form = "eventbridge"
            else:
                self._items(normalise(line, Location(location.source, number)), outcome)
                continue
            if doc is None:
                self._items(normalise(line, Location(location.source, number)), outcome)
                continue
            counts[form] += 1
            source, name = doc.eventSource, doc.eventName
            if (source is None or type(source) is str) and (name is None or type(name) is str):
                plans = plans_for(source, name)
                if plans:
                    self._evaluate(Event(doc, form, location, None, envelope, number), outcome, plans)
            else:
                self._evaluate(Event(doc, form, location, None, envelope, number), outcome, None)
        events = self.stats.events_by_form
        for form, count in counts.items():
            if count:
                events[form] += count

    def _items(self, items: Iterable[Item], outcome: Outcome) -> None:
        stats = self.stats
        for item in items:
            if type(item) is Event:
                stats.events_by_form[item.form] += 1
                self._evaluate(item, outcome, None)
            elif type(item) is Skipped:
                stats.skipped[item.reason] += 1
            elif type(item) is Malformed:
                outcome.malformed += 1
                stats.report_malformed(item)
            elif type(item) is LogFileRef:
                outcome.log_files.append(item)

    def _evaluate(self, event: Event, outcome: Outcome, plans: tuple[Plan, ...] | None) -> None:
        try:
            alerts = self.engine.evaluate(event, plans)
        except Exception as exc:  # a detector bug must not lose the other events
            self.stats.detector_errors += 1
            log.error(
                "detector_failed", where=event.where(), event_id=str(event.doc.eventID), error=repr(exc)
            )
            return
        if alerts:
            outcome.alerts.extend(alerts)
            for alert in alerts:
                self.stats.alerts_by_detector[alert.detector] += 1
