"""Sigma rules as packs: SigmaHQ's AWS CloudTrail rules load and judge events as Sigma says, and what we
cannot run is a one-line load error naming the rule file and the construct."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvs_sentinel.config import LoadedConfig, load_config
from kvs_sentinel.engine import Engine
from kvs_sentinel.envelopes import normalise
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import Event, Location
from tests.support.sigma_cases import IAM_USER_CALL, SIGMA_DATA, merged, rule_cases

DATA = SIGMA_DATA
RULES = DATA / "aws_cloudtrail"
CASES = rule_cases()
BASE = {**IAM_USER_CALL, "eventSource": "iam.amazonaws.com", "eventName": "ListUsers"}


def event(fields: dict[str, Any], event_id: str = "e1") -> Event:
    item = next(iter(normalise(json.dumps(merged(BASE, {**fields, "eventID": event_id})), Location("t"))))
    assert isinstance(item, Event)
    return item


def load_sigma(tmp_path: Path, reference: str) -> LoadedConfig:
    config = tmp_path / "sentinel.yaml"
    config.write_text(yaml.safe_dump({"packs": [reference]}))
    return load_config(config)


@pytest.fixture(scope="module")
def vendored(tmp_path_factory: pytest.TempPathFactory) -> LoadedConfig:
    return load_sigma(tmp_path_factory.mktemp("sigma"), f"sigma:{RULES}")


@pytest.fixture(scope="module")
def engine(vendored: LoadedConfig) -> Engine:
    return Engine(vendored.detectors)


def rule_id(file: str) -> str:
    return str(yaml.safe_load((RULES / file).read_text())["id"])


def test_all_57_vendored_rules_load_and_each_has_a_case() -> None:
    files = sorted(p.name for p in RULES.glob("*.yml"))
    assert len(files) == 57
    assert sorted(CASES) == files


def test_every_vendored_rule_is_a_detector(vendored: LoadedConfig) -> None:
    assert sorted(d.id for d in vendored.detectors) == sorted(rule_id(f) for f in CASES)


@pytest.mark.parametrize("file", sorted(CASES))
def test_event_built_for_the_rule_matches_and_its_near_miss_does_not(engine: Engine, file: str) -> None:
    wanted = rule_id(file)
    hit = [alert.detector for alert in engine.evaluate(event(CASES[file]["match"]))]
    miss = [alert.detector for alert in engine.evaluate(event(CASES[file]["near_miss"]))]
    assert wanted in hit
    assert wanted not in miss


def test_rules_are_indexed_on_event_source_and_name(vendored: LoadedConfig) -> None:
    unindexed = [d for d in vendored.detectors if d.event_sources is None and d.event_names is None]
    by_source_only = [d.origin.name for d in vendored.detectors if d.event_names is None and d.event_sources]
    assert by_source_only == ["aws_new_lambda_layer_attached.yml"]  # eventName|startswith
    # only rules that name neither an eventSource nor an eventName run on every API call
    assert sorted(d.origin.name for d in unindexed) == [
        "aws_cloudtrail_imds_malicious_usage.yml",
        "aws_cloudtrail_pua_trufflehog.yml",
        "aws_root_account_usage.yml",
        "aws_sts_assumerole_misuse.yml",
    ]


def test_alert_carries_the_rules_title_id_level_author_and_references(engine: Engine) -> None:
    (alert,) = engine.evaluate(event(CASES["aws_cloudtrail_disable_logging.yml"]["match"]))
    rule = yaml.safe_load((RULES / "aws_cloudtrail_disable_logging.yml").read_text())
    assert alert.detector == rule["id"]
    assert alert.title == rule["title"]
    assert alert.severity == rule["level"]
    assert alert.details["author"] == rule["author"]
    assert alert.details["references"] == rule["references"]
    assert "sigma" in alert.tags


@pytest.mark.parametrize(("level", "severity"), [("informational", "info"), ("critical", "critical")])
def test_sigma_levels_map_to_severities(tmp_path: Path, level: str, severity: str) -> None:
    detector = load_rule(tmp_path, "selection: {eventName: X}\n  condition: selection", level=level)
    assert detector.severity.name == severity


# ---------------------------------------------------------------- Sigma semantics, rule by rule
RULE = """\
title: A rule written for the tests
id: 5f0e0b8e-6a52-4d7b-9f0e-0123456789ab
status: test
description: a rule written for the tests of Sigma semantics
author: kvs-sentinel tests
logsource: {{product: aws, service: cloudtrail}}
detection:
  {detection}
level: {level}
"""


def load_rule(tmp_path: Path, detection: str, level: str = "medium") -> Any:
    rule = tmp_path / "rule.yml"
    rule.write_text(RULE.format(detection=detection, level=level))
    (detector,) = load_sigma(tmp_path, "sigma:rule.yml").detectors
    return detector


SEL = "\n  condition: sel"
SEMANTICS = [
    # (detection, event fields that match, event fields that do not)
    ("sel: {userAgent: 'AWS-CLI/2.15.0'}" + SEL, {}, {"userAgent": "aws-cli/2.16.0"}),
    ("sel: {userAgent|cased: 'AWS-CLI/2.15.0'}" + SEL, {"userAgent": "AWS-CLI/2.15.0"}, {}),
    ("sel: {userAgent: 'aws-cli/*'}" + SEL, {}, {"userAgent": "boto3/1.34"}),
    ("sel: {userAgent: 'aws-?li*'}" + SEL, {}, {"userAgent": "aws-cxli"}),
    ("sel: {userAgent: 'a\\*b'}" + SEL, {"userAgent": "a*b"}, {"userAgent": "axxb"}),
    ("sel: {userAgent|startswith: AWS-}" + SEL, {}, {"userAgent": "boto3 aws-cli"}),
    ("sel: {userAgent|endswith: '.0'}" + SEL, {}, {"userAgent": "aws-cli/2.15.1"}),
    ("sel: {userAgent|contains|all: [cli, '2.15']}" + SEL, {}, {"userAgent": "aws-cli/2.16.0"}),
    ("sel: {userAgent|re: '^aws-cli/2\\.1[0-9]'}" + SEL, {}, {"userAgent": "AWS-CLI/2.15.0"}),
    ("sel: {userAgent|re|i: '^AWS-CLI/'}" + SEL, {}, {"userAgent": "boto3"}),
    ("sel: {sourceIPAddress|cidr: 198.51.100.0/24}" + SEL, {}, {"sourceIPAddress": "203.0.113.1"}),
    ("sel: {errorCode: null}" + SEL, {}, {"errorCode": "AccessDenied"}),
    ("sel: {errorCode|exists: true}" + SEL, {"errorCode": "AccessDenied"}, {}),
    ("sel: {errorCode|exists: false}" + SEL, {}, {"errorCode": "AccessDenied"}),
    (
        "sel: {requestParameters.count: 3}" + SEL,
        {"requestParameters": {"count": 3}},
        {"requestParameters": {"count": 4}},
    ),
    (
        "sel: {requestParameters.count|gte: 3}" + SEL,
        {"requestParameters": {"count": 5}},
        {"requestParameters": {"count": 2}},
    ),
    ("sel: {readOnly: true}" + SEL, {"readOnly": True}, {"readOnly": False}),
    (
        "sel: {requestParameters|contains: 'Key\":\"env'}" + SEL,
        {"requestParameters": {"tags": [{"Key": "env"}]}},
        {"requestParameters": {"tags": [{"Value": "env"}]}},
    ),
    (
        "a: {eventName: ListUsers}\n  b: {userAgent|contains: cli}\n  condition: all of them",
        {},
        {"userAgent": "x"},
    ),
    (
        "sel_a: {eventName: Nope}\n  sel_b: {userAgent|contains: cli}\n  condition: 1 of sel_*",
        {},
        {"userAgent": "x"},
    ),
    (
        "a: {eventName: ListUsers}\n  b: {errorCode: X}\n  c: {userAgent: boto3}\n"
        "  condition: a and not (b or c)",
        {},
        {"userAgent": "boto3"},
    ),
    ("sel: [{eventName: Nope}, {userAgent|contains: cli}]" + SEL, {}, {"userAgent": "boto3"}),
    (
        "sel: {userIdentity.userName|fieldref: requestParameters.userName}" + SEL,
        {"requestParameters": {"userName": "ALICE"}},
        {"requestParameters": {"userName": "bob"}},
    ),
    ("sel: {userAgent|windash|contains: '-x'}" + SEL, {"userAgent": "tool /x"}, {"userAgent": "x"}),
]


@pytest.mark.parametrize(("detection", "hit", "miss"), SEMANTICS)
def test_sigma_semantics(tmp_path: Path, detection: str, hit: dict[str, Any], miss: dict[str, Any]) -> None:
    detector = load_rule(tmp_path, detection)
    assert detector.predicate(event(hit))
    assert not detector.predicate(event(miss))


# ---------------------------------------------------------------- what we cannot run
@pytest.mark.parametrize(
    ("detection", "construct", "why"),
    [
        ("keywords: [evil]\n  condition: keywords", "detection.keywords: (keywords)", "keyword search"),
        (
            "sel: {CommandLine: x}\n  condition: sel",
            "detection.sel: CommandLine",
            "not a CloudTrail record field",
        ),
        ("sel: {userAgent|re: '(?=a)b'}\n  condition: sel", "detection.sel: userAgent|re", "run on RE2"),
        (
            "sel: {userAgent|expand: '%agents%'}\n  condition: sel",
            "detection.sel: userAgent|expand",
            "placeholder",
        ),
        ("sel: {status: pending}\n  condition: sel", "detection.sel: status", "success or failure"),
    ],
)
def test_what_we_cannot_run_is_one_line_naming_rule_file_and_construct(
    tmp_path: Path, detection: str, construct: str, why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rule(tmp_path, detection)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'rule.yml'}: {construct}")
    assert why in message
    assert "\n" not in message


def test_a_rule_for_another_log_source_is_refused(tmp_path: Path) -> None:
    rule = RULE.format(detection="sel: {Image: x}\n  condition: sel", level="low")
    (tmp_path / "rule.yml").write_text(
        rule.replace("{product: aws, service: cloudtrail}", "{product: windows}")
    )
    with pytest.raises(
        ConfigError, match=r"rule\.yml: logsource \(product: windows, service: None\): only AWS"
    ):
        load_sigma(tmp_path, "sigma:rule.yml")


def test_an_invalid_sigma_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "rule.yml").write_text("title: no detection here\nlogsource: {product: aws}\n")
    with pytest.raises(ConfigError) as caught:
        load_sigma(tmp_path, "sigma:rule.yml")
    assert str(caught.value).startswith(f"{tmp_path / 'rule.yml'}: not a valid Sigma rule")
    assert "\n" not in str(caught.value)


def test_a_missing_sigma_path_and_an_empty_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"packs\[0\]: .*nowhere: no such file"):
        load_sigma(tmp_path, "sigma:nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: no Sigma rules"):
        load_sigma(tmp_path, "sigma:empty")


def test_sigma_and_yaml_packs_load_side_by_side(tmp_path: Path) -> None:
    config = tmp_path / "sentinel.yaml"
    config.write_text(
        yaml.safe_dump({"packs": ["builtin:kvs", f"sigma:{RULES / 'aws_root_account_usage.yml'}"]})
    )
    loaded = load_config(config)
    assert rule_id("aws_root_account_usage.yml") in {d.id for d in loaded.detectors}
    assert len(loaded.detectors) > 1


# ---------------------------------------------------------------- the command line, end to end
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvs_sentinel", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def sigma_config(tmp_path: Path) -> Path:
    """A configuration naming `sigma:tests/data/...`, relative to its folder as every pack path is."""
    (tmp_path / "tests").symlink_to(Path(__file__).parent, target_is_directory=True)
    config = tmp_path / "sentinel.yaml"
    config.write_text("packs: ['sigma:tests/data/sigma/aws_cloudtrail']\n")
    return config


def test_validate_with_a_sigma_pack(sigma_config: Path) -> None:
    result = run_cli("validate", "--config", str(sigma_config))
    assert result.returncode == 0, result.stderr
    assert "valid: 57 detectors" in result.stdout


def test_replay_with_a_sigma_pack_alerts_on_the_events_built_for_the_rules(
    sigma_config: Path, tmp_path: Path
) -> None:
    records = [merged(BASE, {**case["match"], "eventID": f"m-{i}"}) for i, case in enumerate(CASES.values())]
    records += [merged(BASE, {**c["near_miss"], "eventID": f"n-{i}"}) for i, c in enumerate(CASES.values())]
    (tmp_path / "trail.json").write_text(json.dumps({"Records": records}))
    result = run_cli("replay", "--config", str(sigma_config), str(tmp_path / "trail.json"))
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    fired = {(a["event_id"], a["detector"]) for a in alerts}
    for i, file in enumerate(CASES):
        assert (f"m-{i}", rule_id(file)) in fired, file
        assert (f"n-{i}", rule_id(file)) not in fired, file
    assert all(a["details"]["author"] for a in alerts)


def test_test_command_notes_that_sigma_rules_carry_no_examples(sigma_config: Path) -> None:
    result = run_cli("test", "--config", str(sigma_config))
    assert result.returncode == 0, result.stdout
    assert "note: 57 detector(s) from Sigma rules, which carry no examples" in result.stdout


def test_a_construct_we_cannot_run_fails_validate_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "rule.yml").write_text(
        RULE.format(detection="keywords: [evil]\n  condition: keywords", level="low")
    )
    (tmp_path / "sentinel.yaml").write_text("packs: ['sigma:rule.yml']\n")
    result = run_cli("validate", "--config", str(tmp_path / "sentinel.yaml"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "rule.yml: detection.keywords" in result.stderr


def test_time_part_modifiers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"detection\.sel: eventTime\|hour: time-part modifiers"):
        load_rule(tmp_path, "sel: {eventTime|hour: 3}" + SEL)


def test_a_configuration_without_sigma_packs_does_not_import_pysigma() -> None:
    probe = "import sys; from kvs_sentinel.config import load_config as l; l(); print('sigma' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"  # pySigma's imports cost start-up time every command would pay
