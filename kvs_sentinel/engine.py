"""Documents in, alerts out: the shared core of `replay` and `run`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from kvs_sentinel.alerts import Alert, build_alert
from kvs_sentinel.detectors.compiler import Detector
from kvs_sentinel.detectors.index import DetectorIndex
from kvs_sentinel.envelopes import Document, LogFileRef, Malformed, Skipped, items_of
from kvs_sentinel.events import Event
from kvs_sentinel.stats import RunStats

log = structlog.get_logger("kvs_sentinel.engine")


class Engine:
    """Matches events against the loaded detectors through the eventSource/eventName index."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.index = DetectorIndex(detectors)

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self.index.detectors

    def evaluate(self, event: Event) -> list[Alert]:
        alerts: list[Alert] = []
        for plan in self.index.plans(event):
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
        stats = self.stats
        evaluate = self.engine.evaluate
        events = stats.events_by_form
        for item in items_of(document):
            if type(item) is Event:
                events[item.form] += 1
                try:
                    alerts = evaluate(item)
                except Exception as exc:  # a detector bug must not lose the other events
                    stats.detector_errors += 1
                    log.error(
                        "detector_failed", where=item.where(), event_id=str(item.doc.eventID), error=repr(exc)
                    )
                    continue
                if alerts:
                    outcome.alerts.extend(alerts)
                    for alert in alerts:
                        stats.alerts_by_detector[alert.detector] += 1
            elif type(item) is Skipped:
                stats.skipped[item.reason] += 1
            elif type(item) is Malformed:
                outcome.malformed += 1
                stats.report_malformed(item)
            elif type(item) is LogFileRef:
                outcome.log_files.append(item)
        return outcome
