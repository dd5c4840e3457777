"""Events in, alerts out: the shared core of `replay` and `run`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from kvs_sentinel.alerts import Alert, build_alert, build_failure_alert
from kvs_sentinel.decode import Decoder
from kvs_sentinel.detectors.compiler import Detector, Plan
from kvs_sentinel.detectors.index import DetectorIndex
from kvs_sentinel.detectors.stateful import Observation, Observe
from kvs_sentinel.envelopes import LogFileRef, Malformed, Skipped, Unit
from kvs_sentinel.events import Event
from kvs_sentinel.stats import RunStats

log = structlog.get_logger("kvs_sentinel.engine")


# How a stateful detector's matching events become the observations to judge: none for an event whose
# judging is already decided (the judge's local cache), so it is not queued. StatefulJudge.observer.
Observer = Callable[[Detector], Observe]


class Engine:
    """Matches events against the loaded detectors through the eventSource/eventName index."""

    def __init__(self, detectors: Sequence[Detector], observer: Observer | None = None) -> None:
        self.index = DetectorIndex(detectors)
        self.observers: dict[str, Observe] = {
            detector.id: detector.stateful.observe if observer is None else observer(detector)
            for detector in detectors
            if detector.stateful is not None
        }

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self.index.detectors

    def evaluate(
        self, event: Event, plans: tuple[Plan, ...] | None = None, pending: list[Pending] | None = None
    ) -> list[Alert]:
        """Every alert for the event. A detector that raises costs nobody else: it yields an alert that
        says it failed on this event (`Alert.detector_failed`), and the other detectors still run.

        A stateful detector that matches adds its observation to `pending`, for the store to judge;
        without `pending`, stateful detectors are not judged (the caller has no store)."""
        alerts: list[Alert] = []
        self.evaluate_into(alerts, event, self.index.plans(event) if plans is None else plans, pending)
        return alerts

    def evaluate_into(
        self, alerts: list[Alert], event: Event, plans: tuple[Plan, ...], pending: list[Pending] | None
    ) -> None:
        """`evaluate`, appending to `alerts` (no list per event: most events have none to add)."""
        for plan in plans:
            try:
                if plan.predicate(event):
                    rule = plan.detector.stateful
                    if rule is not None:
                        if pending is None:
                            rule.observe(event)  # not judged, but an event it cannot judge still fails it
                        elif (observation := self.observers[plan.detector.id](event)) is not None:
                            pending.append(Pending(plan, event, observation))
                        continue
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


@dataclass(slots=True)  # built per matching event: a frozen dataclass is slower to build
class Pending:
    """A stateful detector matched: whether it alerts is for the store to say (stateful.py)."""

    plan: Plan
    event: Event
    observation: Observation


@dataclass
class Outcome:
    """What one document (or one message) produced: alerts, and the stateful checks still to judge."""

    alerts: list[Alert] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    log_files: list[LogFileRef] = field(default_factory=list)
    malformed: int = 0


class Processor:
    """Runs units of input through the decode layer and the engine, into one `Outcome` per call.

    One bad record or one crashing detector costs that record only: it is counted and reported, the
    rest go on. The decode layer counts input; the processor counts what the detectors said.
    """

    def __init__(
        self, engine: Engine, stats: RunStats, on_event_time: Callable[[object], object] | None = None
    ) -> None:
        self.engine = engine
        self.stats = stats
        index = engine.index
        self.decoder = Decoder(stats, index.plans_for, on_event_time, index.known_plans)

    def process(self, unit: Unit | Malformed | Skipped, outcome: Outcome | None = None) -> Outcome:
        outcome = outcome or Outcome()
        try:
            for item in self.decoder.decode(unit):
                kind = type(item)
                if kind is Event:
                    self._evaluate(item, outcome)  # type: ignore[arg-type]
                elif kind is LogFileRef:
                    outcome.log_files.append(item)  # type: ignore[arg-type]
                elif kind is Malformed:
                    outcome.malformed += 1
        except Exception as exc:  # a decoding bug costs the rest of this unit, never other units
            where = unit.where if type(unit) in (Malformed, Skipped) else unit.location.describe()  # type: ignore[union-attr]
            outcome.malformed += 1
            self.stats.report_malformed(Malformed(where, f"could not be read, skipped: {exc!r:.300}"))
        return outcome

    def _evaluate(self, event: Event, outcome: Outcome) -> None:
        engine = self.engine
        plans = event.plans
        alerts = outcome.alerts
        before = len(alerts)
        try:
            engine.evaluate_into(
                alerts, event, engine.index.plans(event) if plans is None else plans, outcome.pending
            )
        except BaseException:
            del alerts[before:]  # as if evaluated apart: a unit that fails adds none of this event's alerts
            raise
        if len(alerts) > before:
            for alert in alerts[before:]:
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
