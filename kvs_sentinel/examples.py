"""Detector tests kept as data: every example event runs through the whole engine, in every delivery form.

An inline example is wrapped as a bare record, a `Records` log file, an EventBridge envelope and an SNS
notification around the EventBridge envelope, so a detector is proven in each form AWS delivers.
A `file:` example is read as-is (any form) and every event in it must (or must not) alert.
A stateful detector's example is a sequence of `steps`, each an event and the alerts expected for it, run
in order in each form on a fresh memory store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from kvs_sentinel.alerts import Alert
from kvs_sentinel.detectors.compiler import Detector
from kvs_sentinel.detectors.spec import ExampleSpec, StepSpec
from kvs_sentinel.engine import Engine, Outcome, Processor
from kvs_sentinel.envelopes import Decodable, Document
from kvs_sentinel.errors import InputError
from kvs_sentinel.events import Location
from kvs_sentinel.sources.files import read_documents
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.stateful import StatefulJudge
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
    if example.steps is not None:
        for form in FORMS:
            yield _run_steps(engine, detector, example, example.steps, form)
        return
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
    if outcome.pending:
        judge = StatefulJudge(MemoryStore(), stats)
        outcome.alerts.extend(asyncio.run(judge.judge(outcome.pending)))
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


def _run_steps(
    engine: Engine, detector: Detector, example: ExampleSpec, steps: Sequence[StepSpec], form: str
) -> ExampleResult:
    stats = RunStats()
    processor = Processor(engine, stats)
    judge = StatefulJudge(MemoryStore(), stats)

    async def run() -> str:
        for number, step in enumerate(steps, 1):
            mine = 0
            for event in _repeated(step):
                where = Location(f"example {example.name!r} step {number}")
                outcome = processor.process(Document(wrap(event, form), where))
                alerts = outcome.alerts + await judge.judge(outcome.pending)
                mine += sum(alert.detector == detector.id for alert in alerts)
            if stats.malformed or stats.detector_errors:
                errors = stats.detector_errors
                return f"step {number}: {stats.malformed} malformed, {errors} detector error(s)"
            if mine != step.alerts:
                return f"step {number}: expected {step.alerts} alert(s), got {mine}"
        return ""

    problem = asyncio.run(run())
    return ExampleResult(detector.id, example.name, form, not problem, problem)


def _repeated(step: StepSpec) -> Iterator[dict[str, Any]]:
    """The step's event `repeat` times, each with its own eventID (the same eventID is a redelivery)."""
    if step.repeat == 1:
        yield step.event
        return
    for copy in range(1, step.repeat + 1):
        event_id = step.event.get("eventID")
        yield {**step.event, "eventID": f"{event_id}-{copy}"} if isinstance(event_id, str) else step.event
