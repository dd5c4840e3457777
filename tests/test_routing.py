"""Routes from alerts to named sinks, and the delivery sections of sentinel.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvs_sentinel.cli import main
from kvs_sentinel.config import load_config
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.routing import Router, RouteSpec
from kvs_sentinel.sinks.slack import SlackConfig
from tests.support.alert_samples import sample_alert
from tests.support.logging_reset import fresh_logging

__all__ = ["fresh_logging"]  # autouse here too

ROUTES = [
    RouteSpec.model_validate(
        {"name": "page", "min_severity": "critical", "sinks": ["pager"], "continue": True}
    ),
    RouteSpec.model_validate({"tags": ["monitoring"], "sinks": ["ops-slack"]}),
    RouteSpec.model_validate(
        {"detectors": ["kvs-producer-*"], "min_severity": "high", "sinks": ["sec-slack"]}
    ),
    RouteSpec.model_validate({"accounts": ["999999999999"], "sinks": ["sandbox"]}),
]


def test_first_matching_route_decides_unless_it_continues() -> None:
    router = Router(ROUTES, ["archive"])
    assert router.route(sample_alert(severity="critical")) == ("pager", "sec-slack")
    assert router.route(sample_alert(severity="high")) == ("sec-slack",)
    assert router.route(sample_alert(severity="high", tags=("monitoring",))) == ("ops-slack",)


def test_alerts_no_route_takes_go_to_the_default_route() -> None:
    router = Router(ROUTES, ["archive"])
    assert router.route(sample_alert(severity="medium")) == ("archive",)
    assert router.route(sample_alert(severity="low", detector="kvs-long-term-credentials")) == ("archive",)


def test_routes_match_on_account() -> None:
    router = Router(ROUTES, ["archive"])
    assert router.route(sample_alert(severity="low", account="999999999999")) == ("sandbox",)


def test_without_routes_every_sink_gets_every_alert() -> None:
    assert Router((), ["a", "b"]).route(sample_alert()) == ("a", "b")


CONFIG = """
packs: [{pack}]
sinks:
  security-slack:
    type: slack
    webhook_url: ${{KVS_TEST_WEBHOOK}}
  pager:
    type: sns
    topic_arn: arn:aws:sns:eu-west-1:111122223333:kvs-sentinel-pager
  archive:
    type: stdout
routes:
  - name: critical
    min_severity: critical
    sinks: [pager, security-slack]
default_route: [security-slack, archive]
{extra}
"""
PACK = Path(__file__).resolve().parents[1] / "config" / "packs" / "kvs.yaml"
WEBHOOK = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"


def write(tmp_path: Path, extra: str = "", **replace: str) -> Path:
    text = CONFIG.format(pack=PACK, extra=extra)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "sentinel.yaml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVS_TEST_WEBHOOK", WEBHOOK)


def test_sinks_and_routes_load_from_yaml(tmp_path: Path) -> None:
    delivery = load_config(write(tmp_path)).delivery
    assert {name: s.type for name, s in delivery.sinks.items()} == {
        "security-slack": "slack",
        "pager": "sns",
        "archive": "stdout",
    }
    slack = delivery.sinks["security-slack"].config
    assert isinstance(slack, SlackConfig)
    assert slack.webhook_url.get_secret_value() == WEBHOOK
    assert delivery.default_route == ("security-slack", "archive")


def test_a_webhook_url_written_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path, **{"${KVS_TEST_WEBHOOK}": WEBHOOK})
    with pytest.raises(ConfigError, match=r"sinks\.security-slack\.webhook_url: this is a secret") as caught:
        load_config(path)
    assert "abcdefghijklmnopqrstuvwx" not in str(caught.value)


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            {"sinks: [pager, security-slack]": "sinks: [pagr]"},
            r"routes\[0\] \(critical\)\.sinks: unknown sink pagr",
        ),
        ({"default_route: [security-slack, archive]": ""}, "default_route: required with routes"),
        ({"type: stdout": "type: teams"}, r"sinks\.archive\.type: unknown sink type 'teams'"),
        ({"topic_arn: arn:aws:sns": "topic_arn: arn:aws:sqs"}, r"sinks\.pager\.topic_arn"),
        ({"type: stdout": "type: stdout\n    colour: red"}, r"sinks\.archive\.colour: Extra inputs"),
    ],
)
def test_sink_and_route_problems_are_config_errors_naming_the_path(
    tmp_path: Path, replace: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, **replace))


def test_a_route_naming_an_unknown_detector_is_refused(tmp_path: Path) -> None:
    extra = "grouping: {detectors: {kvs-no-such-detector: [principal]}}"
    with pytest.raises(ConfigError, match="no detector has the id 'kvs-no-such-detector'"):
        load_config(write(tmp_path, extra))


def test_validate_reports_sinks_and_exits_2_on_sink_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--config", str(write(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "sinks: security-slack (slack), pager (sns), archive (stdout)" in out
    assert WEBHOOK not in out
    assert main(["validate", "--config", str(write(tmp_path, **{"type: stdout": "type: teams"}))]) == 2


def test_the_shipped_example_config_still_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
