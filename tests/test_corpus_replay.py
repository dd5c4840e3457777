"""Replaying every third-party sample in ../shared/corpus: the run completes, broken inputs are reported
with where they are, and every readable event is counted in the form it came in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS

# Files known to be broken as published (see shared/corpus/SOURCES.md), and what must be said of them.
BROKEN = {
    "aws-cloudtrail-processing-library/src/test/resources/resources/"
    "SerializerTestFileBadJsonFormat.json": "line 37",
    "cado-security-cloudgrep/tests/data/bad_cloudtrail.json": "truncated",
    "awsdocs-kinesis-video/monitoring-cloudtrail__block01.json": "line 27",
    "awsdocs-aws-cloudtrail-user-guide/cloudtrail-log-file-examples__block06.json": "line 19",
    "awsdocs-aws-cloudtrail-user-guide/view-cloudtrail-events-cli__block01.json": "line 8",
}


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], list[dict[str, str]], Path]:
    summary = tmp_path_factory.mktemp("corpus") / "summary.json"
    command = [sys.executable, "-m", "kvs_sentinel", "--log-format", "json", "replay"]
    result = subprocess.run(
        [*command, "--summary-json", str(summary), str(CORPUS)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reports = []
    for line in result.stderr.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["event"] == "input_malformed":
                reports.append(entry)
    return json.loads(summary.read_text()), reports, CORPUS


def test_every_corpus_file_is_read_and_every_event_counted(
    replay: tuple[dict[str, object], list[dict[str, str]], Path],
) -> None:
    summary, _, _ = replay
    assert summary["files_read"] == 130  # 279 files less the Panther rule YAML, SOURCES.md and the like
    assert summary["files_unreadable"] == 0
    assert summary["events_by_form"] == {"eventbridge": 11, "lookup_events": 2, "record": 442, "records": 56}
    assert summary["skipped"] == {"digest_file": 1}
    assert summary["log_files_referenced"] == 2  # the SNS "new log file" bodies of the AWS library
    assert summary["malformed"] == 983
    assert summary["detector_errors"] == 0
    assert summary["messages_failed"] == 0


@pytest.mark.parametrize(("relative", "said"), sorted(BROKEN.items()))
def test_broken_file_is_reported_with_its_location(
    replay: tuple[dict[str, object], list[dict[str, str]], Path], relative: str, said: str
) -> None:
    _, reports, corpus = replay
    mine = [r for r in reports if r["where"].startswith(str(corpus / relative))]
    assert mine, f"{relative} was not reported"
    assert any(said in r["error"].lower() for r in mine), mine


def test_wrapped_test_fixtures_are_reported_line_by_line_not_as_one_failure(
    replay: tuple[dict[str, object], list[dict[str, str]], Path],
) -> None:
    _, reports, corpus = replay
    panther = str(corpus / "panther-labs-panther-analysis/extracted_cloudtrail_test_events.jsonl")
    lines = {r["where"] for r in reports if r["where"].startswith(panther + ":")}
    # Reports are capped at 200 per run; the ones shown name distinct lines.
    assert len(lines) == len([r for r in reports if r["where"].startswith(panther + ":")])
