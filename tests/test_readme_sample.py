"""The README's sample alert is a real one: what replay writes for that event, and how Slack renders it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from kvs_sentinel.alerts import Alert
from kvs_sentinel.cli import main
from kvs_sentinel.sinks.slack import slack_message

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def sample_section() -> str:
    start = README.index("### What an alert looks like")
    return README[start : README.index("\n## ", start)]


def sample_alert(section: str) -> dict[str, object]:
    found = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert found, "no JSON block in the README's sample alert section"
    return dict(json.loads(found.group(1)))


def test_readme_sample_alert_is_what_replay_writes_for_that_event(tmp_path: Path) -> None:
    sample = sample_alert(sample_section())
    output = tmp_path / "alerts.jsonl"
    assert main(["replay", "--no-progress", "-o", str(output), str(ROOT / "examples")]) == 0
    alerts = [json.loads(line) for line in output.read_text().splitlines()]
    (replayed,) = [
        a for a in alerts if (a["event_id"], a["detector"]) == (sample["event_id"], sample["detector"])
    ]
    assert replayed | {"location": sample["location"]} == sample  # the path depends on where it runs


def test_readme_slack_rendering_shows_what_the_sink_sends() -> None:
    section = sample_section()
    sample = sample_alert(section)
    sample.pop("form")
    message = slack_message(msgspec.json.decode(json.dumps(sample), type=Alert))
    rendering = section[section.index("```text") :]
    header = message["blocks"][0]["text"]["text"]
    assert rendering.startswith(f"```text\n{header}\n")
    for block in message["blocks"]:
        for field in block.get("fields", []):
            label, value = field["text"].split("\n", 1)
            assert re.search(rf"^{re.escape(label.strip('*'))} +{re.escape(value)}$", rendering, re.M), label
