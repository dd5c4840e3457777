"""Prometheus metrics for `run`: messages, events, alerts, sink failures, processing latency, lag.

One `Metrics` holds its own registry (no global state: tests and several runs in one process don't
collide). Counters that already live in plain objects (the source's `SqsCounts`, the run's `RunStats`)
are read at scrape time by a collector, so the hot path never touches Prometheus for them; the rest is
observed through the methods below.

    kvs_sentinel_messages_{received,acked,retried,deleted,delete_failed}_total{queue}
    kvs_sentinel_receive_errors_total{queue}
    kvs_sentinel_events_total{form}   kvs_sentinel_skipped_total{reason}   kvs_sentinel_malformed_total
    kvs_sentinel_detector_errors_total
    kvs_sentinel_alerts_total{detector,severity}   kvs_sentinel_alerts_deduplicated_total{detector}
    kvs_sentinel_sink_failures_total{sink,retryable}   kvs_sentinel_messages_unreadable_total
    kvs_sentinel_message_processing_seconds (histogram)
    kvs_sentinel_event_lag_seconds (histogram: now - eventTime)   kvs_sentinel_event_lag_last_seconds
    process_* (resident memory, CPU, open fds)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from kvs_sentinel.stats import RunStats

PREFIX = "kvs_sentinel"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LAG_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
# the source counters exported, as named in SqsCounts
SOURCE_COUNTERS = {
    "received": "messages received from the queue",
    "acked": "messages acknowledged (every alert delivered)",
    "retried": "messages left for redelivery after a failure",
    "deleted": "messages deleted from the queue",
    "delete_failed": "acknowledged messages whose delete failed (redelivered, then deduplicated)",
    "receive_errors": "ReceiveMessage calls that failed",
}


def event_lag_seconds(event_time: str | None, now: float) -> float | None:
    """now - eventTime (ISO 8601, as CloudTrail writes it), or None when absent or unreadable."""
    if not event_time:
        return None
    try:
        moment = datetime.fromisoformat(event_time)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return now - moment.timestamp()


class _Snapshots:
    """Exports plain counters (read at scrape time) as Prometheus counters."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, Callable[[], Mapping[str, int]]]] = []
        self.stats: list[RunStats] = []

    def collect(self) -> Iterable[Metric]:
        families = {
            name: CounterMetricFamily(
                f"{PREFIX}_{'' if name == 'receive_errors' else 'messages_'}{name}", text, labels=["queue"]
            )
            for name, text in SOURCE_COUNTERS.items()
        }
        for queue, read in self.sources:
            counts = read()
            for name, family in families.items():
                family.add_metric([queue], counts.get(name, 0))
        yield from families.values()
        events = CounterMetricFamily(f"{PREFIX}_events", "events read, by delivery form", labels=["form"])
        skipped = CounterMetricFamily(f"{PREFIX}_skipped", "documents skipped, by reason", labels=["reason"])
        malformed = CounterMetricFamily(f"{PREFIX}_malformed", "malformed documents or records")
        errors = CounterMetricFamily(f"{PREFIX}_detector_errors", "detector evaluations that raised")
        for stats in self.stats:
            for form, count in sorted(stats.events_by_form.items()):
                events.add_metric([form], count)
            for reason, count in sorted(stats.skipped.items()):
                skipped.add_metric([reason], count)
        malformed.add_metric([], sum(stats.malformed for stats in self.stats))
        errors.add_metric([], sum(stats.detector_errors for stats in self.stats))
        yield from (events, skipped, malformed, errors)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, registry: CollectorRegistry | None = None, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.wall_clock = wall_clock
        self._snapshots = _Snapshots()
        self.registry.register(self._snapshots)
        ProcessCollector(registry=self.registry)
        self.alerts = Counter(
            f"{PREFIX}_alerts", "alerts emitted", ["detector", "severity"], registry=self.registry
        )
        self.deduplicated = Counter(
            f"{PREFIX}_alerts_deduplicated",
            "alerts not sent again for a redelivered event",
            ["detector"],
            registry=self.registry,
        )
        self.unreadable = Counter(
            f"{PREFIX}_messages_unreadable",
            "messages left for the redrive policy (DLQ) because a part could not be read",
            registry=self.registry,
        )
        self.sink_failures = Counter(
            f"{PREFIX}_sink_failures", "failed deliveries", ["sink", "retryable"], registry=self.registry
        )
        self.state_failures = Counter(
            f"{PREFIX}_state_failures",
            "messages retried because the state store failed (stateful detectors not judged)",
            ["retryable"],
            registry=self.registry,
        )
        self.decisions_alone = Counter(
            f"{PREFIX}_shared_decisions_alone",
            "decisions this task took alone because the shared state store failed (grouping windows, "
            "Slack's pace): alerts still go out, possibly one per task",
            ["decision"],
            registry=self.registry,
        )
        self.processing = Histogram(
            f"{PREFIX}_message_processing_seconds",
            "from receiving a message to acking or retrying it",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lag = Histogram(
            f"{PREFIX}_event_lag_seconds",
            "now - eventTime when an event is processed",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.last_lag = Gauge(
            f"{PREFIX}_event_lag_last_seconds", "the lag of the last event observed", registry=self.registry
        )
        self._lag_max: float | None = None  # the largest lag since take_lag_max() (CloudWatch EMF)

    def watch_source(self, queue: str, counts: Callable[[], Mapping[str, int]]) -> None:
        """Export a source's counters (`SqsSource.counts.as_dict`), read at each scrape."""
        self._snapshots.sources.append((queue, counts))

    def watch_stats(self, stats: RunStats) -> None:
        """Export a run's events by form, skips, malformed and detector errors, read at each scrape."""
        self._snapshots.stats.append(stats)

    def alert_emitted(self, detector: str, severity: str) -> None:
        self.alerts.labels(detector, severity).inc()

    def message_unreadable(self) -> None:
        self.unreadable.inc()

    def alert_deduplicated(self, detector: str) -> None:
        self.deduplicated.labels(detector).inc()

    def sink_failed(self, sink: str, *, retryable: bool) -> None:
        self.sink_failures.labels(sink, "true" if retryable else "false").inc()

    def state_failed(self, *, retryable: bool) -> None:
        self.state_failures.labels("true" if retryable else "false").inc()

    def decided_alone(self, decision: str) -> None:
        self.decisions_alone.labels(decision).inc()

    def message_processed(self, seconds: float) -> None:
        self.processing.observe(max(0.0, seconds))

    def event_seen(self, event_time: str | None) -> float | None:
        """Observe now - eventTime; returns the lag (None when eventTime is missing or unreadable)."""
        lag = event_lag_seconds(event_time, self.wall_clock())
        if lag is not None:
            lag = max(0.0, lag)  # a clock a little behind CloudTrail's is not negative lag
            self.lag.observe(lag)
            self.last_lag.set(lag)
            self._lag_max = lag if self._lag_max is None else max(self._lag_max, lag)
        return lag

    def take_lag_max(self) -> float | None:
        """The largest lag observed since the last call (None: no event), and start a new interval."""
        lag, self._lag_max = self._lag_max, None
        return lag

    def render(self) -> bytes:
        """The text exposition format (content type: `Metrics.content_type`)."""
        return generate_latest(self.registry)
