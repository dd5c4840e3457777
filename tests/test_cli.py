"""The command line as users meet it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kvs_sentinel.cli import main

PACK = """
lists:
  watched_names: [GetMedia]
detectors:
  - id: test-get-media
    title: GetMedia seen
    severity: high
    description: fires on every GetMedia, for these tests
    remediation: nothing to do, this is a test
    summary: "{principal} read media from {resource}"
    match:
      eventSource: kinesisvideo.amazonaws.com
      eventName: $watched_names
    examples:
      - name: get media
        expect: match
        event: {eventSource: kinesisvideo.amazonaws.com, eventName: GetMedia, eventID: x}
      - name: put media
        expect: no_match
        event: {eventSource: kinesisvideo.amazonaws.com, eventName: PutMedia, eventID: y}
"""


def record(name: str, event_id: str) -> dict[str, object]:
    return {
        "eventVersion": "1.08",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": name,
        "eventID": event_id,
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/viewer/s"},
        "requestParameters": {"streamName": "front-door"},
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "pack.yaml").write_text(PACK)
    path = tmp_path / "sentinel.yaml"
    path.write_text("packs: [pack.yaml]\n")
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.jsonl").write_text(
        json.dumps(record("GetMedia", "a1")) + "\n{broken\n" + json.dumps(record("PutMedia", "a2")) + "\n"
    )
    with gzip.open(folder / "nested" / "b.json.gz", "wt") as handle:
        json.dump({"Records": [record("GetMedia", "b1"), record("GetMedia", "b2")]}, handle)
    (folder / "notes.md").write_text("# not events\n")
    return folder


def test_replay_writes_one_alert_per_match_and_reports_the_broken_line(
    config: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output, summary = tmp_path / "alerts.jsonl", tmp_path / "summary.json"
    code = main(
        ["replay", "--config", str(config), "-o", str(output), "--summary-json", str(summary), str(inputs)]
    )
    assert code == 0
    alerts = [json.loads(line) for line in output.read_text().splitlines()]
    assert [a["event_id"] for a in alerts] == ["a1", "b1", "b2"]
    assert (
        alerts[0]["summary"] == "arn:aws:sts::111122223333:assumed-role/viewer/s read media from front-door"
    )
    counts = json.loads(summary.read_text())
    assert counts["files_read"] == 2  # notes.md is left out of a directory walk, and said so
    assert counts["files_skipped"] == {"not CloudTrail by name": 1}
    assert counts["events"] == 4
    assert counts["events_by_form"] == {"record": 2, "records": 2}
    assert counts["malformed"] == 1
    assert f"{inputs / 'a.jsonl'}:2" in capsys.readouterr().err


def test_invalid_config_exits_2_with_one_line_naming_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_text(PACK.replace("severity: high", "severity: severe"))
    (tmp_path / "sentinel.yaml").write_text("packs: [pack.yaml]\n")
    result = run_cli("validate", "--config", str(tmp_path / "sentinel.yaml"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "pack.yaml" in lines[0]
    assert "detectors[0] (test-get-media).severity" in lines[0]


def test_replay_exits_2_when_no_input_can_be_read(config: Path, tmp_path: Path) -> None:
    result = run_cli("replay", "--config", str(config), str(tmp_path / "missing.json"))
    assert result.returncode == 2
    assert "no input could be read" in result.stderr


def test_replay_completes_when_only_some_inputs_are_unreadable(
    config: Path, inputs: Path, tmp_path: Path
) -> None:
    result = run_cli("replay", "--config", str(config), str(tmp_path / "missing.json"), str(inputs))
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 3


def test_replay_reads_stdin(config: Path) -> None:
    body = json.dumps({"Records": [record("GetMedia", "s1")]})
    result = run_cli("replay", "--config", str(config), "-", stdin=body)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["event_id"] == "s1"


def test_validate_accepts_the_shipped_config() -> None:
    result = run_cli("validate")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_test_command_passes_good_examples_and_fails_wrong_ones(config: Path, tmp_path: Path) -> None:
    assert main(["test", "--config", str(config)]) == 0
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(PACK.replace("expect: no_match", "expect: match"))
    result = run_cli("test", str(wrong))
    assert result.returncode == 1
    assert "FAIL test-get-media :: put media [record]" in result.stdout
    assert "4 passed, 4 failed" in result.stdout


def test_summary_json_into_missing_folder_is_a_one_line_error(config: Path, inputs: Path) -> None:
    result = run_cli("replay", "--config", str(config), "--summary-json", "/nonexistent/s.json", str(inputs))
    assert result.returncode == 2
    assert result.stdout == ""  # checked before the replay: no alerts written, then a failure
    assert result.stderr.strip().splitlines() == [
        "kvs-sentinel: --summary-json /nonexistent/s.json: folder /nonexistent does not exist; "
        "create it or choose another path"
    ]


def test_summary_json_naming_a_folder_is_a_one_line_error(config: Path, inputs: Path, tmp_path: Path) -> None:
    result = run_cli("replay", "--config", str(config), "--summary-json", str(tmp_path), str(inputs))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"--summary-json {tmp_path}: is a folder" in lines[0]


def test_output_into_missing_folder_exits_2_before_reading_input(config: Path, inputs: Path) -> None:
    result = run_cli("replay", "--config", str(config), "-o", "/nonexistent/alerts.jsonl", str(inputs))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "kvs-sentinel: --output /nonexistent/alerts.jsonl: folder /nonexistent does not exist; "
        "create it or choose another path"
    ]


def test_log_options_work_after_the_subcommand(config: Path, inputs: Path) -> None:
    quiet = run_cli("replay", "--config", str(config), "--log-level", "error", str(inputs))
    assert quiet.returncode == 0, quiet.stderr
    assert "input_malformed" not in quiet.stderr
    console = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvs_sentinel",
            "replay",
            *("--config", str(config), str(inputs)),
            "--log-format",
            "console",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    malformed = [line for line in console.stderr.splitlines() if "input_malformed" in line]
    assert malformed, console.stderr
    assert not malformed[0].startswith("{")  # console, not the JSON a pipe would get by default


def test_plain_replay_summary_has_no_json_log_lines(config: Path, inputs: Path) -> None:
    result = run_cli("replay", "--config", str(config), str(inputs))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    summary = lines[next(i for i, line in enumerate(lines) if line.startswith("files read:")) :]
    assert len(summary) >= 4
    assert not [line for line in summary if line.startswith("{")]
    assert "delivery_finished" not in result.stderr


@pytest.mark.parametrize("port", ["0", "99999", "http"])
def test_health_port_outside_1_to_65535_is_a_usage_error(port: str) -> None:
    result = run_cli("health", "--port", port, "--timeout", "0.1")
    assert result.returncode == 2
    assert f"argument --port: {port!r} is not a port: give a number from 1 to 65535" in result.stderr


def test_impossible_date_in_a_suppression_is_a_one_line_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(
        "packs: [pack.yaml]\nsuppressions:\n  - match: {detector: test-get-media}\n"
        "    reason: a test\n    expires: 2027-13-45\n"
    )
    assert main(["validate", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"kvs-sentinel: invalid configuration: {config}:5:14: invalid YAML: '2027-13-45' is not a date "
        "(month must be in 1..12); write dates as YYYY-MM-DD"
    ]


def test_config_that_is_not_utf8_is_a_one_line_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_bytes("packs: [pack.yaml]\n# caf\u00e9\n".encode("latin-1"))
    assert main(["validate", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"kvs-sentinel: invalid configuration: {config}:2:6: not UTF-8 (byte 0xe9); save the file as UTF-8"
    ]


def test_shipped_example_config_works_when_copied_anywhere(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "my.yaml"
    copy.parent.mkdir()
    copy.write_text((Path(__file__).parent.parent / "config" / "sentinel.yaml").read_text())
    result = run_cli("validate", "--config", str(copy))
    assert result.returncode == 0, result.stderr
    assert "22 detectors from 1 pack(s)" in result.stdout
    assert "note:" not in result.stdout


def test_unknown_builtin_pack_lists_the_builtin_packs(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text("packs: [builtin:nope]\n")
    assert main(["validate", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"kvs-sentinel: invalid configuration: {config}: packs[0]: no built-in pack 'builtin:nope'; "
        "built-in packs: builtin:kvs"
    ]


def test_missing_relative_pack_names_the_config_key_and_where_it_looked(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text("packs: [pack.yaml, packs/kvs.yaml]\n")
    assert main(["validate", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert f"{config}: packs[1]: {config.parent / 'packs/kvs.yaml'}: no such file" in error
    assert "the shipped packs are builtin:kvs" in error


def test_every_bad_cidr_in_a_users_list_is_reported_against_the_users_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "my.yaml"
    config.write_text(
        "packs: [builtin:kvs]\nlists:\n  trusted_networks: [10.0.0.0/8, 300.1.1.1/8, 192.168.0.0/16, bogus]\n"
    )
    assert main(["validate", "--config", str(config)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"kvs-sentinel: invalid configuration: {config}: "
        "lists.trusted_networks[1]: cidr: '300.1.1.1/8' is not an IPv4 or IPv6 network; "
        "lists.trusted_networks[3]: cidr: 'bogus' is not an IPv4 or IPv6 network (used by kvs.yaml: "
    )


def test_bad_regex_is_one_line_without_re2_log_noise(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK.replace("eventName: $watched_names", "eventName: {regex: 'Get(Media'}"))
    result = run_cli("test", str(pack))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"kvs-sentinel: invalid configuration: {pack}: detectors[0] (test-get-media).match.eventName.regex: "
        "invalid regular expression 'Get(Media': missing ): Get(Media"
    ]


PRODUCTION = """
packs: [pack.yaml]
sinks:
  team: {type: slack, webhook_url: "${KVS_SENTINEL_TEST_UNSET_WEBHOOK}"}
sources:
  - {type: sqs, queue_url: "${KVS_SENTINEL_TEST_UNSET_QUEUE}"}
"""


def test_replay_test_and_validate_run_without_the_sinks_secrets(config: Path, inputs: Path) -> None:
    config.write_text(PRODUCTION)
    replay = run_cli("replay", "--config", str(config), str(inputs))
    assert replay.returncode == 0, replay.stderr
    assert len(replay.stdout.splitlines()) == 3
    assert run_cli("test", "--config", str(config)).returncode == 0
    validate = run_cli("validate", "--config", str(config))
    assert validate.returncode == 0, validate.stderr
    assert (
        "note: sinks.team.webhook_url: KVS_SENTINEL_TEST_UNSET_WEBHOOK is not set; "
        "run and replay --deliver need it" in validate.stdout
    )
    assert "note: sources[0].queue_url: KVS_SENTINEL_TEST_UNSET_QUEUE is not set; run needs it" in (
        validate.stdout
    )


def test_replay_deliver_and_run_still_need_the_sinks_secrets(config: Path, inputs: Path) -> None:
    config.write_text(PRODUCTION)
    for command in (["replay", "--deliver", str(inputs)], ["run"]):
        result = run_cli(*command, "--config", str(config))
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"kvs-sentinel: invalid configuration: {config}: sinks.team.webhook_url: "
            "environment variable KVS_SENTINEL_TEST_UNSET_WEBHOOK is not set"
        ]


def test_deferred_secret_does_not_hide_the_sinks_other_errors(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(PRODUCTION.replace('"}', '", max_attempts: 0}', 1))
    assert main(["validate", "--config", str(config)]) == 2
    assert "sinks.team.max_attempts: Input should be greater than or equal to 1" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["99999", "0"])
def test_webhook_url_port_outside_1_to_65535_is_a_config_error(
    config: Path, port: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(PRODUCTION)
    monkeypatch.setenv("KVS_SENTINEL_TEST_UNSET_WEBHOOK", f"https://hooks.slack.com:{port}/services/T/B/x")
    assert main(["validate", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "sinks.team.webhook_url: Value error," in error
    assert "port is not 1-65535" in error
    assert "hooks.slack.com" not in error  # the URL is a secret: never echoed


def test_directory_replay_names_the_files_it_skips_in_the_summary(config: Path, inputs: Path) -> None:
    for name in ["pack.yml", "notes.txt", "a.md", "b.md", "c.md", "d.md"]:
        (inputs / "docs" / name).parent.mkdir(exist_ok=True)
        (inputs / "docs" / name).write_text("x")
    (inputs / ".cache").mkdir()
    (inputs / ".cache" / "x.json").write_text("{}")
    result = run_cli("replay", "--config", str(config), str(inputs))
    assert result.returncode == 0, result.stderr
    docs = inputs / "docs"
    assert (
        f"files skipped: 8 (hidden: {inputs / '.cache'}/; not CloudTrail by name: {docs / 'a.md'}, "
        f"{docs / 'b.md'}, {docs / 'c.md'}, {docs / 'd.md'}, {docs / 'notes.txt'} and 2 more)"
    ) in result.stderr.splitlines()


def test_test_with_a_missing_pack_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(tmp_path / "nothere.yaml")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"kvs-sentinel: invalid configuration: {tmp_path / 'nothere.yaml'}: no such pack file"
    ]


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/healthz", "http://127.0.0.1:0/healthz", "nonsense"])
def test_health_url_with_a_port_outside_1_to_65535_is_a_usage_error(url: str) -> None:
    result = run_cli("health", "--url", url, "--timeout", "0.1")
    assert result.returncode == 2
    assert f"argument --url: {url!r} is not an http(s)://host[:port]/path URL" in result.stderr


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvs_sentinel", "--log-format", "json", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
