"""Hostile input costs only itself: every good event beside it is still judged and alerted.

Regression tests for the defects an adversarial test found; the inputs are kept in tests/data/hostile.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from kvs_sentinel.cli import main
from kvs_sentinel.config import LoadedConfig, load_config
from kvs_sentinel.detectors.checks import check
from kvs_sentinel.engine import Engine, Processor
from kvs_sentinel.envelopes import Document, LineBatch, LogFileRef, Malformed
from kvs_sentinel.events import Location
from kvs_sentinel.log_files import LogFileBudget
from kvs_sentinel.pipeline import Pipeline
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.sources import files
from kvs_sentinel.sources.files import FileItem, split_documents
from kvs_sentinel.sources.s3 import documents_of_log_file
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import FakeMessage, ListSource, RecordingSink
from tests.support.logging_reset import fresh_logging

__all__ = ["fresh_logging"]  # autouse: replay's logging setup must not outlive its captured stderr

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HOSTILE = ROOT / "tests" / "data" / "hostile"
EXAMPLE_ALERTS = 22
GET_MEDIA_DETECTOR = "kvs-producer-media-read"


def producer_get_media(n: int = 0) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((HOSTILE / "float-overflow-in-requestParameters.json").read_text())
    record["requestParameters"] = {"streamName": "front-door"}
    record["eventID"] = f"00000000-0000-4000-8000-{n:012d}"
    return record


def replay(tmp_path: Path, *paths: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[Any], Any]:
    summary = tmp_path / "summary.json"
    code = main(["replay", "--no-progress", "--summary-json", str(summary), *map(str, paths)])
    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, alerts, json.loads(summary.read_text())


@pytest.fixture(scope="module")
def shipped() -> LoadedConfig:
    return load_config()


@pytest.fixture
def processor(shipped: LoadedConfig) -> Processor:
    return Processor(Engine(shipped.detectors), RunStats())


# ---------------------------------------------------------------- 1, 2: nesting deeper than any decoder goes
def test_a_deeply_nested_file_costs_only_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = tmp_path / "deep-line.jsonl"
    lines.write_text(json.dumps(producer_get_media()) + "\n" + "[" * 5000 + "]" * 5000 + "\n")
    code, alerts, summary = replay(
        tmp_path, EXAMPLES, HOSTILE / "nested-5000-deep.json", lines, capsys=capsys
    )
    assert code == 0
    assert summary["malformed"] == 2
    assert len([a for a in alerts if a["detector"] == GET_MEDIA_DETECTOR]) == 2  # the example's and ours
    assert len(alerts) == EXAMPLE_ALERTS + 2  # ours also comes from an untrusted network


def test_a_deep_record_inside_a_log_file_costs_only_itself(processor: Processor) -> None:
    deep = (HOSTILE / "record-with-deep-requestParameters.json").read_text()
    records = [json.dumps(producer_get_media(1)), deep, json.dumps(producer_get_media(2))]
    data = gzip.compress(('{"Records": [' + ", ".join(records) + "]}").encode())
    alerts, malformed = _judge(processor, documents_of_log_file(data, Location("s3://b/k")))
    assert malformed == 1
    assert sorted({a.event_id for a in alerts if a.detector == GET_MEDIA_DETECTOR}) == [
        producer_get_media(1)["eventID"],
        producer_get_media(2)["eventID"],
    ]


@pytest.mark.parametrize("position", [0, 20, 40])
def test_a_deep_record_in_a_streamed_log_file_costs_only_itself(
    position: int, processor: Processor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "CHUNK", 4096)
    records = [json.dumps(producer_get_media(n)) for n in range(40)]
    records.insert(position, (HOSTILE / "record-with-deep-requestParameters.json").read_text())
    data = ('{"Records": [' + ", ".join(records) + "]}").encode()
    items = list(split_documents(io.BytesIO(data), Location("s3://b/k"), whole_file_limit=8192))
    alerts, malformed = _judge(processor, iter(items))
    assert [item.where for item in items if type(item) is Malformed] == [f"s3://b/k record {position}"]
    assert malformed == 1
    assert len({a.event_id for a in alerts if a.detector == GET_MEDIA_DETECTOR}) == 40


def _judge(processor: Processor, items: Iterator[FileItem]) -> tuple[list[Any], int]:
    alerts: list[Any] = []
    malformed = 0
    for item in items:
        outcome = processor.process(item)
        alerts += outcome.alerts
        malformed += outcome.malformed
    return alerts, malformed


# ---------------------------------------------------------------- 3: values msgspec will not hold
@pytest.mark.parametrize(
    "name",
    [
        "float-overflow-in-requestParameters.json",
        "negative-overflow-in-userIdentity.json",
        "invalid-utf8-in-requestParameters.json",
        "invalid-utf8-in-userAgent.json",
    ],
)
def test_a_value_msgspec_cannot_hold_does_not_hide_the_event(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, alerts, summary = replay(tmp_path, HOSTILE / name, capsys=capsys)
    assert code == 0
    assert GET_MEDIA_DETECTOR in {alert["detector"] for alert in alerts}
    assert summary["detector_errors"] == 0
    assert summary["malformed"] == 0


@check("test_raises_on_purpose")
def _raises_on_purpose(arguments: Any) -> Any:
    def judge(event: Any) -> None:
        raise ZeroDivisionError("a detector bug")

    return judge


def _with_a_broken_detector(tmp_path: Path) -> LoadedConfig:
    base = {
        "severity": "high",
        "description": "a detector for this test",
        "remediation": "nothing to remediate",
        "match": {"eventName": "GetMedia"},
    }
    broken = base | {"id": "broken", "title": "Broken", "match": {"check": "test_raises_on_purpose"}}
    working = base | {"id": "working", "title": "Working"}
    (tmp_path / "pack.yaml").write_text(json.dumps({"detectors": [broken, working]}))
    (tmp_path / "sentinel.yaml").write_text(json.dumps({"packs": ["pack.yaml"]}))
    return load_config(tmp_path / "sentinel.yaml")


async def test_a_failing_detector_is_an_alert_and_the_others_still_judge(tmp_path: Path) -> None:
    processor = Processor(Engine(_with_a_broken_detector(tmp_path).detectors), RunStats())
    sink = RecordingSink("slack")
    message = FakeMessage("m", [Document(json.dumps(producer_get_media()), Location("m"))])
    await Pipeline(ListSource([message]), processor, Dispatcher.broadcast([sink])).run()
    by_detector = {alert.detector: alert for alert in sink.alerts}
    assert set(by_detector) == {"broken", "working"}
    failure = by_detector["broken"]
    assert failure.detector_failed
    assert not by_detector["working"].detector_failed
    assert failure.title == "Detector failed: Broken"
    assert failure.event_id == producer_get_media()["eventID"]
    assert "ZeroDivisionError" in failure.details["detector_error"]
    assert processor.stats.detector_errors == 1
    assert message.acked  # the failure was said, in a delivered alert


# ---------------------------------------------------------------- 4: a line longer than any event
def test_an_overlong_line_is_malformed_and_the_lines_after_it_are_read(
    processor: Processor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "MAX_ELEMENT", 4096)
    monkeypatch.setattr(files, "CHUNK", 1024)
    good = json.dumps(producer_get_media()).encode() + b"\n"
    data = (
        good + b'{"eventName": "' + b"x" * 20_000 + b'"}\n' + good.replace(b"-000000000000", b"-000000000003")
    )
    items = list(split_documents(io.BytesIO(data), Location("f.jsonl"), whole_file_limit=2048))
    assert [item.where for item in items if type(item) is Malformed] == ["f.jsonl:2"]
    alerts, _ = _judge(processor, iter(items))
    assert sorted({a.location for a in alerts if a.detector == GET_MEDIA_DETECTOR}) == [
        "f.jsonl:1",
        "f.jsonl:3",
    ]


# ---------------------------------------------------------------- 6: floods of blank lines, budgets
@pytest.mark.parametrize("blank", [b"\n", b"\n" * 40 + b" \t\r\n"])
@pytest.mark.parametrize("whole_file_limit", [files.WHOLE_FILE_LIMIT, 4096])
def test_a_flood_of_blank_lines_is_skipped_whole_and_numbering_holds(
    blank: bytes, whole_file_limit: int, processor: Processor
) -> None:
    good = json.dumps(producer_get_media()).encode() + b"\n"
    flood = blank * (100_000 // blank.count(b"\n"))
    data = good + flood + good
    after_flood = flood.count(b"\n") + 2
    items = list(split_documents(io.BytesIO(data), Location("f.jsonl"), whole_file_limit=whole_file_limit))
    lines_held = sum(len(item.lines) for item in items if type(item) is LineBatch)
    assert lines_held < 100  # the flood never became line objects
    alerts, malformed = _judge(processor, iter(items))
    assert malformed == 0
    assert sorted({a.location for a in alerts if a.detector == GET_MEDIA_DETECTOR}) == [
        "f.jsonl:1",
        f"f.jsonl:{after_flood}",
    ]


def test_short_runs_of_blank_lines_stay_lines() -> None:
    pieces = list(files._line_pieces(b"{}\n\n\n{}\n" + b"\n" * files.MIN_BLANK_RUN + b"{}"))
    assert pieces == [[b"{}\n", b"\n", b"\n", b"{}\n"], files.MIN_BLANK_RUN, [b"{}"]]


class _InMemoryLogFiles:
    """A LogFileReader over bytes held in memory (the S3 fetch itself is tested against moto)."""

    def __init__(self, objects: dict[str, bytes], budget: LogFileBudget) -> None:
        self.objects = objects
        self.budget = budget

    async def open(self, ref: LogFileRef) -> BinaryIO:
        return io.BytesIO(self.objects[ref.key])

    def documents(self, stream: BinaryIO, ref: LogFileRef) -> Iterator[FileItem]:
        return documents_of_log_file(stream, Location(f"s3://{ref.bucket}/{ref.key}"))


def _notification(key: str) -> Document:
    body = {"s3Bucket": "trail", "s3ObjectKey": [key]}
    return Document(json.dumps(body), Location("sqs:q/m"))


async def test_a_log_file_over_its_budget_stops_there_and_says_so(processor: Processor) -> None:
    lines = b"".join(
        json.dumps(producer_get_media(n)).encode() + b"\n" for n in range(4 * files.LINES_PER_DOCUMENT)
    )
    reader = _InMemoryLogFiles({"big.json": lines}, LogFileBudget(max_records=files.LINES_PER_DOCUMENT + 1))
    sink = RecordingSink("slack")
    message = FakeMessage("m", [_notification("big.json")])
    await Pipeline(ListSource([message]), processor, Dispatcher.broadcast([sink]), log_files=reader).run()
    judged = {alert.event_id for alert in sink.alerts if alert.detector == GET_MEDIA_DETECTOR}
    assert len(judged) == 2 * files.LINES_PER_DOCUMENT  # the document that crossed the budget, then no more
    assert processor.stats.malformed == 1
    assert message.acked


# ---------------------------------------------------------------- bodies that cannot be read stay for the DLQ
@pytest.mark.parametrize(
    "body",
    [
        (HOSTILE / "unknown-envelope-around-a-record.json").read_text(),
        '{"Records": [',
        "not json at all",
    ],
)
async def test_an_unreadable_body_is_left_for_the_redrive_policy(body: str, processor: Processor) -> None:
    sink = RecordingSink("slack")
    bad = FakeMessage("bad", [Document(body, Location("sqs:q/bad"))])
    good = FakeMessage("good", [Document(json.dumps(producer_get_media()), Location("sqs:q/good"))])
    pipeline = Pipeline(ListSource([bad, good]), processor, Dispatcher.broadcast([sink]))
    counts = await pipeline.run()
    assert not bad.acked
    assert len(bad.retries) == 1
    assert good.acked
    assert counts.messages_unreadable == 1
    assert GET_MEDIA_DETECTOR in {alert.detector for alert in sink.alerts}


@pytest.mark.parametrize(
    "body",
    [
        {"Event": "s3:TestEvent", "Service": "Amazon S3"},
        {"Type": "SubscriptionConfirmation", "Message": "confirm"},
        {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
        {"digestS3Bucket": "trail", "digestStartTime": "2026-02-03T10:00:00Z"},
    ],
)
async def test_a_body_known_to_be_no_event_is_deleted(body: dict[str, Any], processor: Processor) -> None:
    message = FakeMessage("m", [Document(json.dumps(body), Location("sqs:q/m"))])
    counts = await Pipeline(
        ListSource([message]), processor, Dispatcher.broadcast([RecordingSink("slack")])
    ).run()
    assert message.acked
    assert not message.retries
    assert counts.messages_unreadable == 0
