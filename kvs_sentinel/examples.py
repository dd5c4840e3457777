"""Detector tests kept as data: every example event runs through the whole engine, in every delivery form.

An inline example is wrapped as a bare record, a `Records` log file, an EventBridge envelope and an SNS
notification around the EventBridge envelope, so a detector is proven in each form AWS delivers.
A `file:` example is read as-is (any form) and every event in it must (or must not) alert.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from kvs_sentinel.alerts import Alert
from kvs_sentinel.detectors.compiler import Detector
from kvs_sentinel.detectors.spec import ExampleSpec
from kvs_sentinel.engine import Engine, Outcome, Processor
from kvs_sentinel.envelopes import Decodable, Document
from kvs_sentinel.errors import InputError
from kvs_sentinel.events import Location
from kvs_sentinel.sources.files import read_documents
from kvs_sentinel.stats import RunStats

FORMS = ("record", "records", "eventbridge", "sns/eventbridge")
_DETAIL_TYPES = {
    "AwsConsoleSignIn": "AWS Console Sign In via CloudTrail",
    "AwsServiceEvent": "AWS Service Event via CloudTrail",
    "AwsConsoleAction": "AWS Console Action via CloudTrail",
}


@dataclass(frozen=True)
class ExampleResult:
    detector: str
    example: str
    form: str
    passed: bool
    problem: str = ""


def wrap(event: dict[str, Any], form: str) -> bytes:
    """The event as AWS would deliver it in `form`."""
    if form == "record":
        return msgspec.json.encode(event)
    if form == "records":
        return msgspec.json.encode({"Records": [event]})
    source = str(event.get("eventSource", "unknown")).removesuffix(".amazonaws.com")
    envelope = {
        "version": "0",
        "id": "00000000-0000-0000-0000-000000000000",
        "detail-type": _DETAIL_TYPES.get(str(event.get("eventType")), "AWS API Call via CloudTrail"),
        "source": f"aws.{source}",
        "account": event.get("recipientAccountId", "111122223333"),
        "time": event.get("eventTime", "2026-01-01T00:00:00Z"),
        "region": event.get("awsRegion", "us-east-1"),
        "resources": [],
        "detail": event,
    }
    if form == "eventbridge":
        return msgspec.json.encode(envelope)
    notification = {
        "Type": "Notification",
        "MessageId": "00000000-0000-0000-0000-000000000001",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:cloudtrail-events",
        "Message": msgspec.json.encode(envelope).decode(),
    }
    return msgspec.json.encode(notification)


def run_examples(detectors: Sequence[Detector]) -> list[ExampleResult]:
    engine = Engine(detectors)
    results: list[ExampleResult] = []
    for detector in detectors:
        for example in detector.spec.examples:
            results.extend(_run_example(engine, detector, example))
    return results


def _run_example(engine: Engine, detector: Detector, example: ExampleSpec) -> Iterator[ExampleResult]:
    if example.event is None and example.file is None:
        yield ExampleResult(detector.id, example.name, "-", False, "example has neither `event` nor `file`")
        return
    if example.event is not None:
        for form in FORMS:
            document = Document(wrap(example.event, form), Location(f"example {example.name!r}"))
            yield _judge(engine, detector, example, form, [document])
    if example.file is not None:
        path = detector.origin.parent / example.file
        try:
            documents = list(read_documents(str(path)))
        except InputError as exc:
            yield ExampleResult(detector.id, example.name, "file", False, str(exc))
            return
        yield _judge(engine, detector, example, f"file {Path(example.file).name}", documents)


def _judge(
    engine: Engine, detector: Detector, example: ExampleSpec, form: str, documents: Sequence[Decodable]
) -> ExampleResult:
    stats = RunStats()
    processor = Processor(engine, stats)
    outcome = Outcome()
    for document in documents:
        processor.process(document, outcome)
    mine: list[Alert] = [alert for alert in outcome.alerts if alert.detector == detector.id]

    def result(problem: str = "") -> ExampleResult:
        return ExampleResult(detector.id, example.name, form, not problem, problem)

    if stats.malformed or stats.detector_errors:
        return result(f"{stats.malformed} malformed input(s), {stats.detector_errors} detector error(s)")
    if stats.events == 0:
        return result("the example holds no CloudTrail event")
    if example.expect == "no_match":
        return result(f"alerted: {mine[0].summary}" if mine else "")
    if len(mine) < stats.events:
        return result(f"expected an alert for each of {stats.events} event(s), got {len(mine)}")
    wrong = [alert.severity for alert in mine if example.severity and alert.severity != example.severity]
    if wrong:
        return result(f"expected severity {example.severity}, got {wrong[0]}")
    return result()
