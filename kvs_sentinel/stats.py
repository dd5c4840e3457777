"""Counters for one run, and the closing summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import structlog

from kvs_sentinel.envelopes import Malformed

log = structlog.get_logger("kvs_sentinel.input")

# Past this many, malformed inputs are counted but no longer logged one by one.
MAX_REPORTED_MALFORMED = 200
# The summary names this many skipped files per reason, then counts the rest.
SHOWN_SKIPPED_FILES = 5


@dataclass
class RunStats:
    events_by_form: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    alerts_by_detector: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    detector_errors: int = 0
    files_read: int = 0
    files_unreadable: int = 0
    # files a directory walk left out, by reason (each reason's names in walk order, without repeats)
    files_skipped: dict[str, dict[str, None]] = field(default_factory=dict)
    log_files_referenced: int = 0  # S3 / CloudTrail "new log file" notifications (run fetches them)

    @property
    def events(self) -> int:
        return sum(self.events_by_form.values())

    @property
    def alerts(self) -> int:
        return sum(self.alerts_by_detector.values())

    def skip_file(self, reason: str, name: str) -> None:
        self.files_skipped.setdefault(reason, {})[name] = None

    def report_malformed(self, item: Malformed) -> None:
        self.malformed += 1
        if self.malformed <= MAX_REPORTED_MALFORMED:
            log.warning("input_malformed", where=item.where, error=item.error)
        elif self.malformed == MAX_REPORTED_MALFORMED + 1:
            log.warning("input_malformed_reports_suppressed", after=MAX_REPORTED_MALFORMED)

    def as_dict(self) -> dict[str, object]:
        return {
            "files_read": self.files_read,
            "files_unreadable": self.files_unreadable,
            "files_skipped": {reason: len(names) for reason, names in sorted(self.files_skipped.items())},
            "events": self.events,
            "events_by_form": dict(sorted(self.events_by_form.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "log_files_referenced": self.log_files_referenced,
            "malformed": self.malformed,
            "detector_errors": self.detector_errors,
            "alerts": self.alerts,
            "alerts_by_detector": dict(sorted(self.alerts_by_detector.items())),
        }

    def render(self) -> str:
        lines = [
            f"files read: {self.files_read}, unreadable: {self.files_unreadable}",
            *([self._render_skipped_files()] if self.files_skipped else []),
            f"events: {self.events}" + _breakdown(self.events_by_form),
            f"skipped: {sum(self.skipped.values())}" + _breakdown(self.skipped),
            *(
                [f"log-file notifications: {self.log_files_referenced} (fetched by run)"]
                if self.log_files_referenced
                else []
            ),
            f"malformed: {self.malformed}"
            + (f", detector errors: {self.detector_errors}" if self.detector_errors else ""),
            f"alerts: {self.alerts}" + _breakdown(self.alerts_by_detector),
        ]
        return "\n".join(lines)

    def _render_skipped_files(self) -> str:
        total = sum(len(names) for names in self.files_skipped.values())
        reasons = []
        for reason, names in sorted(self.files_skipped.items()):
            shown = list(names)[:SHOWN_SKIPPED_FILES]
            more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
            reasons.append(f"{reason}: {', '.join(shown)}{more}")
        return f"files skipped: {total} ({'; '.join(reasons)})"


def _breakdown(counter: Counter[str]) -> str:
    if not counter:
        return ""
    return " (" + ", ".join(f"{key} {count}" for key, count in sorted(counter.items())) + ")"
