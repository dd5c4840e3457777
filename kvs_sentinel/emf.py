"""The `/metrics` numbers as CloudWatch Embedded Metric Format (EMF) log lines: metrics without an agent.

On ECS the task's log group receives standard output; CloudWatch Logs turns each EMF line into metric
data points. Every `interval_seconds` (and once more at shutdown) the emitter reads the same Prometheus
registry `/metrics` serves and writes one JSON line per dimension combination:

    MessagesReceived, MessagesAcked, MessagesRetried, MessagesDeleted, MessagesDeleteFailed,
    ReceiveErrors, MessagesUnreadable, Events, Skipped, Malformed, DetectorErrors, Alerts,
    AlertsDeduplicated, SinkFailures, StateFailures (Count: the increase since the last line, zeros
    included, so an idle sentinel is told from a dead one), EventLagSeconds (the largest lag of the
    interval, only when events were seen), MessageProcessingSeconds (the interval's mean), MemoryBytes.

    by dimension, when not zero: Alerts by Severity and by Detector, Events by Form, Skipped by Reason,
    AlertsDeduplicated by Detector, SinkFailures by Sink.

Every line carries the configured static dimensions too (`dimensions: {Stack: kvs-sentinel}`), so
several deployments in one account stay apart. Counters from several tasks add up in CloudWatch.
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, TextIO

import msgspec
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from kvs_sentinel.metrics import Metrics

log = structlog.get_logger("kvs_sentinel.emf")

MAX_METRICS_PER_DIRECTIVE = 100
MAX_DIMENSIONS_PER_SET = 30
MAX_DIMENSION_VALUE = 1024
_NAMESPACE = r"^[A-Za-z0-9._#:/-]{1,255}$"
_DIMENSION_NAME = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,249}$")

# Prometheus counter sample → EMF metric name, and the labels that become dimensions (label → name).
COUNTERS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("kvs_sentinel_messages_received_total", "MessagesReceived", {}),
    ("kvs_sentinel_messages_acked_total", "MessagesAcked", {}),
    ("kvs_sentinel_messages_retried_total", "MessagesRetried", {}),
    ("kvs_sentinel_messages_deleted_total", "MessagesDeleted", {}),
    ("kvs_sentinel_messages_delete_failed_total", "MessagesDeleteFailed", {}),
    ("kvs_sentinel_receive_errors_total", "ReceiveErrors", {}),
    ("kvs_sentinel_messages_unreadable_total", "MessagesUnreadable", {}),
    ("kvs_sentinel_events_total", "Events", {"form": "Form"}),
    ("kvs_sentinel_skipped_total", "Skipped", {"reason": "Reason"}),
    ("kvs_sentinel_malformed_total", "Malformed", {}),
    ("kvs_sentinel_detector_errors_total", "DetectorErrors", {}),
    ("kvs_sentinel_alerts_total", "Alerts", {"severity": "Severity", "detector": "Detector"}),
    ("kvs_sentinel_alerts_deduplicated_total", "AlertsDeduplicated", {"detector": "Detector"}),
    ("kvs_sentinel_sink_failures_total", "SinkFailures", {"sink": "Sink"}),
    ("kvs_sentinel_state_failures_total", "StateFailures", {}),
)
_PROCESSING = "kvs_sentinel_message_processing_seconds"
_MEMORY = "process_resident_memory_bytes"

Sample = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels


class EmfConfig(BaseModel):
    """`service.cloudwatch_emf`: `true` for the defaults, or these options."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    namespace: str = Field("KvsSentinel", pattern=_NAMESPACE)
    interval_seconds: float = Field(60, ge=1, le=3600)
    dimensions: dict[str, str] = Field(
        default={}, description="added to every metric, e.g. {Stack: kvs-sentinel}", max_length=26
    )
    stream: Literal["stdout", "stderr"] = "stdout"

    @field_validator("namespace")
    @classmethod
    def _not_aws(cls, value: str) -> str:
        if value.startswith("AWS/"):
            raise ValueError("AWS/ namespaces are AWS's own")
        return value

    @field_validator("dimensions")
    @classmethod
    def _valid_dimensions(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _DIMENSION_NAME.match(name) or name.startswith(":"):
                raise ValueError(f"dimension name {name!r}: 1-250 printable ASCII characters, not ':' first")
            if not text.strip() or not text.isascii() or len(text) > MAX_DIMENSION_VALUE:
                raise ValueError(f"dimension {name}: the value must be 1-1024 ASCII characters")
        return value


def dimension_value(text: str) -> str:
    """A label value as a dimension value: ASCII (others escaped), not empty, at most 1024 characters."""
    escaped = text.encode("ascii", "backslashreplace").decode() or "(none)"
    return escaped[:MAX_DIMENSION_VALUE]


def read_registry(metrics: Metrics) -> dict[Sample, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in metrics.registry.collect()
        for sample in family.samples
    }


class EmfEmitter:
    def __init__(
        self,
        metrics: Metrics,
        config: EmfConfig,
        *,
        out: TextIO | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.config = config
        self.out = out
        self.wall_clock = wall_clock
        self.lines_written = 0
        self._previous: dict[Sample, float] = {}

    def documents(self) -> list[dict[str, Any]]:
        """The EMF documents for what changed since the last call (the first: since start)."""
        current = read_registry(self.metrics)
        previous, self._previous = self._previous, current

        def increase(key: Sample) -> float:
            return max(0.0, current.get(key, 0.0) - previous.get(key, 0.0))

        static = dict(self.config.dimensions)
        totals: dict[str, float] = {}
        by_dimensions: defaultdict[tuple[tuple[tuple[str, str], ...], str], float] = defaultdict(float)
        for sample_name, metric, labels in COUNTERS:
            totals[metric] = 0.0
            for key in current:
                if key[0] != sample_name:
                    continue
                delta = increase(key)
                totals[metric] += delta
                if delta and labels:
                    found = dict(key[1])
                    dimensions = tuple(
                        (name, dimension_value(found.get(label, ""))) for label, name in labels.items()
                    )
                    by_dimensions[(dimensions, metric)] += delta
        summary: dict[str, tuple[float, str]] = {name: (value, "Count") for name, value in totals.items()}
        count = increase((f"{_PROCESSING}_count", ()))
        if count:
            summary["MessageProcessingSeconds"] = (increase((f"{_PROCESSING}_sum", ())) / count, "Seconds")
        lag = self.metrics.take_lag_max()
        if lag is not None:
            summary["EventLagSeconds"] = (lag, "Seconds")
        memory = current.get((_MEMORY, ()))
        if memory is not None:
            summary["MemoryBytes"] = (memory, "Bytes")
        timestamp = int(self.wall_clock() * 1000)
        documents = [self._document(timestamp, static, [[*static]], summary)]
        for (dimensions, metric), value in sorted(by_dimensions.items()):
            root = {**static, **dict(dimensions)}
            sets = [[*static, name] for name, _ in dimensions]
            documents.append(self._document(timestamp, root, sets, {metric: (value, "Count")}))
        return documents

    def _document(
        self,
        timestamp: int,
        dimensions: dict[str, str],
        sets: list[list[str]],
        values: dict[str, tuple[float, str]],
    ) -> dict[str, Any]:
        finite = {name: (value, unit) for name, (value, unit) in values.items() if math.isfinite(value)}
        directive = {
            "Namespace": self.config.namespace,
            "Dimensions": sets,
            "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in finite.items()],
        }
        return {
            "_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [directive]},
            **dimensions,
            **{name: value for name, (value, _) in finite.items()},
        }

    def lines(self) -> Iterator[str]:
        for document in self.documents():
            yield msgspec.json.encode(document).decode()

    def emit(self) -> None:
        out = self.out or (sys.stdout if self.config.stream == "stdout" else sys.stderr)
        text = "".join(line + "\n" for line in self.lines())
        try:
            out.write(text)
            out.flush()
        except (OSError, ValueError) as exc:  # a closed or broken stream must not stop the run
            log.warning("metrics_not_written", error=str(exc))
            return
        self.lines_written += text.count("\n")

    async def run(self, stop: asyncio.Event) -> None:
        """Emit every interval until `stop` is set, then once more (what the shutdown drain did)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.config.interval_seconds)
            except TimeoutError:
                self._emit_logging_errors()
        self._emit_logging_errors()

    def _emit_logging_errors(self) -> None:
        """The boundary of one interval: a failure is logged, and the next interval tries again."""
        try:
            self.emit()
        except Exception as exc:
            log.exception("metrics_emit_failed", error=repr(exc))
