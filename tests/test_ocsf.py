"""`format: ocsf` on the JSON Lines sink: OCSF 1.1.0 Detection Findings, checked against a JSON Schema
written from the OCSF spec (tests/data), with the mappings a Security Lake query relies on."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kvs_sentinel.cli import main
from kvs_sentinel.sinks.base import SinkSpec
from kvs_sentinel.sinks.ocsf import ocsf_finding
from kvs_sentinel.sinks.registry import validate_sink
from kvs_sentinel.sinks.stdout import JsonLinesSink
from tests.support.alert_samples import sample_alert

SCHEMA = json.loads((Path(__file__).parent / "data" / "ocsf_detection_finding_1.1.0.schema.json").read_text())


async def written(tmp_path: Path, *alerts: Any) -> list[dict[str, Any]]:
    out = tmp_path / "findings.jsonl"
    sink = JsonLinesSink(str(out), format="ocsf")
    for alert in alerts:
        await sink.send(alert)
    await sink.aclose()
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"event_id": None, "principal": None, "access_key_id": None, "resource": None},
        {"source_ip": "cloudtrail.amazonaws.com", "error_code": None, "error_message": None},
        {"source_ip": "2001:db8::7", "severity": "info", "tags": ("mitre-attack:T1562.008",)},
        {"account": None, "region": None, "event_time": "not a time", "event_name": None},
    ],
)
async def test_every_line_is_a_valid_detection_finding(tmp_path: Path, changes: dict[str, Any]) -> None:
    (finding,) = await written(tmp_path, sample_alert(**changes))
    jsonschema.validate(finding, SCHEMA)


async def test_the_alert_maps_onto_ocsf_attributes(tmp_path: Path) -> None:
    before = int(time.time() * 1000)
    (finding,) = await written(tmp_path, sample_alert())
    assert before <= finding["time"] <= int(time.time() * 1000)
    assert (finding["class_uid"], finding["category_uid"], finding["type_uid"]) == (2004, 2, 200401)
    assert (finding["severity_id"], finding["severity"]) == (5, "Critical")
    info = finding["finding_info"]
    assert info["uid"] == "kvs-sentinel/kvs-producer-consumer-endpoint/6b1e8f3a-2c44-4f0e-9d51-0c7f5b2a9e10"
    assert info["analytic"] == {
        "name": "kvs-producer-consumer-endpoint",
        "uid": "kvs-producer-consumer-endpoint",
        "type_id": 1,
        "type": "Rule",
    }
    assert info["first_seen_time"] == 1770113742000  # 2026-02-03T10:15:42Z
    (evidence,) = finding["evidences"]
    assert evidence["actor"]["user"]["uid"] == "arn:aws:sts::111122223333:assumed-role/kvs-producer-cam1/s"
    assert evidence["actor"]["user"]["credential_uid"] == "ASIAEXAMPLEKEY123456"
    assert evidence["api"]["operation"] == "GetDataEndpoint"
    assert evidence["api"]["response"]["error"] == "AccessDenied"
    assert evidence["src_endpoint"] == {"ip": "198.51.100.7"}
    assert finding["cloud"] == {"provider": "AWS", "region": "eu-west-1", "account": {"uid": "111122223333"}}
    assert {o["type_id"] for o in finding["observables"]} == {2, 10}
    assert finding["resources"] == [{"uid": "front-door", "type": "Other", "region": "eu-west-1"}]
    assert finding["remediation"]["desc"].startswith("Remove kinesisvideo read actions")
    assert finding["unmapped"]["detector"] == "kvs-producer-consumer-endpoint"
    assert finding["metadata"]["product"]["name"] == "kvs-sentinel"


async def test_a_finding_written_again_is_an_update(tmp_path: Path) -> None:
    first, again, other = await written(tmp_path, sample_alert(), sample_alert(), sample_alert(event_id="x"))
    assert (first["activity_id"], first["type_uid"]) == (1, 200401)
    assert (again["activity_id"], again["activity_name"], again["type_uid"]) == (2, "Update", 200402)
    assert other["activity_id"] == 1
    assert again["finding_info"]["uid"] == first["finding_info"]["uid"]


async def test_hidden_characters_are_escaped_in_ocsf_lines_too(tmp_path: Path) -> None:
    hostile = "admin\u202egnp.exe"
    out = tmp_path / "findings.jsonl"
    sink = JsonLinesSink(str(out), format="ocsf")
    await sink.send(sample_alert(principal=hostile))
    await sink.aclose()
    text = out.read_text()
    assert "\u202e" not in text
    assert json.loads(text)["evidences"][0]["actor"]["user"]["uid"] == hostile


def test_replay_writes_ocsf_findings_with_format_ocsf(tmp_path: Path) -> None:
    output = tmp_path / "findings.jsonl"
    examples = Path(__file__).resolve().parents[1] / "examples"
    assert main(["replay", "--no-progress", "--format", "ocsf", "-o", str(output), str(examples)]) == 0
    findings = [json.loads(line) for line in output.read_text().splitlines()]
    assert findings
    for finding in findings:
        jsonschema.validate(finding, SCHEMA)
    assert {f["class_uid"] for f in findings} == {2004}


def test_the_format_is_chosen_in_the_sink_config() -> None:
    setting = validate_sink("lake", SinkSpec.model_validate({"type": "stdout", "format": "ocsf"}))
    assert setting.config.format == "ocsf"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="format"):
        validate_sink("lake", SinkSpec.model_validate({"type": "stdout", "format": "cef"}))


def test_severity_ids_follow_ocsf() -> None:
    ids = {
        s: ocsf_finding(sample_alert(severity=s), now=datetime(2026, 2, 3, tzinfo=UTC))["severity_id"]
        for s in ("info", "low", "medium", "high")
    }
    assert ids == {"info": 1, "low": 2, "medium": 3, "high": 4}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("class_uid",), 2003),
        (("finding_info", "uid"), None),
        (("metadata", "product", "vendor_name"), None),
        (("finding_info", "analytic", "type_id"), 7),
        (("severity_id",), 9),
    ],
)
def test_the_schema_rejects_what_ocsf_forbids(path: tuple[str, ...], value: Any) -> None:
    finding = ocsf_finding(sample_alert(), now=datetime(2026, 2, 3, tzinfo=UTC))
    parent = finding
    for key in path[:-1]:
        parent = parent[key]
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(finding, SCHEMA)
