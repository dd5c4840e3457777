"""CloudWatch EMF lines: each checked against the embedded metric format specification, the counters sent
as increases, and `run` writing them (the last after the drain)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import time
from typing import Any

import pytest

from kvs_sentinel.config import SentinelConfig
from kvs_sentinel.emf import EmfConfig, EmfEmitter
from kvs_sentinel.metrics import Metrics
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import RecordingSink
from tests.support.events import eventbridge
from tests.support.fake_sqs import FakeSqs, service_for
from tests.support.waiting import wait_until

UNITS = {
    *("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes"),
    *("Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count"),
    *("Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second"),
    *("Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second"),
    *("Count/Second", "None"),
}
NOW = 1_770_113_742.5


def check_emf(line: str) -> dict[str, Any]:
    """The specification's rules for one log event (CloudWatch_Embedded_Metric_Format_Specification)."""
    assert len(line.encode()) <= 256 * 1024, "a log event is at most 256 KB"
    root = json.loads(line)
    assert isinstance(root, dict), "the root is a JSON object"
    metadata = root["_aws"]
    assert set(metadata) <= {"Timestamp", "CloudWatchMetrics"}, "no other members in the metadata"
    assert isinstance(metadata["Timestamp"], int), "milliseconds since the epoch, a number"
    assert abs(metadata["Timestamp"] / 1000 - time.time()) < 10 * 365 * 86400
    directives = metadata["CloudWatchMetrics"]
    assert isinstance(directives, list)
    assert directives, "at least one directive"
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert re.fullmatch(r"[A-Za-z0-9._#:/-]{1,255}", directive["Namespace"])
        assert not directive["Namespace"].startswith("AWS/")
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30, "at most 30 dimensions in a set"
            for key in dimension_set:
                value = root[key]  # a dimension references a root member ...
                assert isinstance(value, str), "... whose value is a string"
                assert 1 <= len(value) <= 1024
                assert value.isascii()
        metrics = directive["Metrics"]
        assert 1 <= len(metrics) <= 100, "at most 100 metrics per directive"
        for metric in metrics:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert 1 <= len(metric["Name"]) <= 255
            assert metric.get("Unit", "None") in UNITS
            value = root[metric["Name"]]  # a metric references a root member: a number
            values = value if isinstance(value, list) else [value]
            assert len(values) <= 100
            assert all(isinstance(v, int | float) and math.isfinite(v) for v in values)
    return root


def emitter(metrics: Metrics, **options: Any) -> EmfEmitter:
    return EmfEmitter(metrics, EmfConfig.model_validate(options), wall_clock=lambda: NOW)


def docs(emf: EmfEmitter) -> list[dict[str, Any]]:
    return [check_emf(line) for line in emf.lines()]


def value_of(documents: list[dict[str, Any]], name: str, **dimensions: str) -> float | None:
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        names = {m["Name"] for m in directive["Metrics"]}
        keys = {k for dimension_set in directive["Dimensions"] for k in dimension_set}
        if (
            name in names
            and all(document.get(k) == v for k, v in dimensions.items())
            and set(dimensions) <= keys
        ):
            return float(document[name])
    return None


def test_counters_are_sent_as_their_increase_since_the_last_line() -> None:
    metrics = Metrics()
    stats = RunStats()
    metrics.watch_stats(stats)
    emf = emitter(metrics)
    stats.events_by_form["eventbridge"] += 5
    metrics.alert_emitted("kvs-a", "high")
    metrics.alert_emitted("kvs-a", "high")
    first = docs(emf)
    assert value_of(first, "Events") == 5
    assert value_of(first, "Alerts") == 2
    stats.events_by_form["eventbridge"] += 1
    second = docs(emf)
    assert value_of(second, "Events") == 1
    assert value_of(second, "Alerts") == 0


def test_an_idle_sentinel_still_says_zero_events() -> None:
    metrics = Metrics()
    metrics.watch_stats(RunStats())
    emf = emitter(metrics, dimensions={"Stack": "kvs-sentinel"})
    (only,) = docs(emf)
    assert only["Events"] == 0, "the silence alarm needs a zero, not a missing point"
    assert only["Stack"] == "kvs-sentinel"
    assert only["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stack"]]
    assert only["_aws"]["Timestamp"] == int(NOW * 1000)
    assert "EventLagSeconds" not in only, "no events, no lag"


def test_alerts_are_also_counted_by_severity_and_by_detector() -> None:
    metrics = Metrics()
    for detector, severity in [("kvs-a", "high"), ("kvs-a", "high"), ("kvs-b", "critical")]:
        metrics.alert_emitted(detector, severity)
    metrics.sink_failed("slack", retryable=True)
    found = docs(emitter(metrics, dimensions={"Stack": "s"}))
    assert value_of(found, "Alerts", Severity="high") == 2
    assert value_of(found, "Alerts", Detector="kvs-b") == 1
    assert value_of(found, "SinkFailures", Sink="slack") == 1
    severity_doc = next(d for d in found if d.get("Detector") == "kvs-a")
    assert severity_doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["Stack", "Severity"],
        ["Stack", "Detector"],
    ]


def test_lag_is_the_largest_of_the_interval_and_processing_time_its_mean() -> None:
    metrics = Metrics(wall_clock=lambda: NOW)
    emf = emitter(metrics)
    metrics.event_seen("2026-02-03T10:15:00Z")  # 42.5 s before NOW
    metrics.event_seen("2026-02-03T10:00:00Z")  # 942.5 s
    metrics.message_processed(0.2)
    metrics.message_processed(0.4)
    first = docs(emf)
    assert value_of(first, "EventLagSeconds") == 942.5
    assert value_of(first, "MessageProcessingSeconds") == pytest.approx(0.3)
    second = docs(emf)
    assert value_of(second, "EventLagSeconds") is None, "a past interval's lag is not repeated"


def test_dimension_values_are_ascii() -> None:
    metrics = Metrics()
    metrics.sink_failed("équipe-slack", retryable=False)
    found = docs(emitter(metrics))
    assert value_of(found, "SinkFailures", Sink="\\xe9quipe-slack") == 1


def test_a_broken_stream_does_not_stop_the_run() -> None:
    out = io.StringIO()
    out.close()
    emf = EmfEmitter(Metrics(), EmfConfig.model_validate({}), out=out)
    emf.emit()
    assert emf.lines_written == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"namespace": "AWS/KVS"}, "namespace"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"dimensions": {"Stack": ""}}, "dimensions"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmfConfig.model_validate(options)


def test_true_turns_it_on_with_the_defaults() -> None:
    config = SentinelConfig.model_validate({"service": {"cloudwatch_emf": True}})
    assert config.service.cloudwatch_emf == EmfConfig.model_validate({})
    assert (
        SentinelConfig.model_validate({"service": {"cloudwatch_emf": False}}).service.cloudwatch_emf is None
    )
    assert SentinelConfig.model_validate({}).service.cloudwatch_emf is None, "opt-in"


async def test_run_writes_emf_lines_and_a_last_one_after_the_drain(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeSqs([eventbridge(n) for n in range(3)])
    sink = RecordingSink()
    emf = {"interval_seconds": 3600, "dimensions": {"Stack": "t"}}
    service = service_for(fake, sink, cloudwatch_emf=emf)
    running = asyncio.create_task(service.run())
    await wait_until(lambda: len(fake.deleted) == 3, 10, "three messages deleted")
    service.request_stop()
    await asyncio.wait_for(running, 10)
    lines = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    found = [check_emf(line) for line in lines]
    assert value_of(found, "MessagesReceived") == 3
    assert value_of(found, "MessagesDeleted") == 3
    assert value_of(found, "Events") == 3
    assert value_of(found, "Alerts") == len(sink.alerts)
    assert all(document["Stack"] == "t" for document in found)
