"""Stateful detectors for the tests: CloudTrail calls at chosen event times, three detectors (a denied
burst, distinct networks, a new network), a pack loader, and events judged one at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kvs_sentinel.alerts import Alert
from kvs_sentinel.config import LoadedConfig, load_config
from kvs_sentinel.engine import Engine, Processor
from kvs_sentinel.envelopes import Document, normalise
from kvs_sentinel.events import Event, Location
from kvs_sentinel.state.base import StateStore
from kvs_sentinel.stateful import StatefulJudge
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import FakeMessage

PRODUCER = "arn:aws:sts::111122223333:assumed-role/kvs-producer-cam1/cam1"
OTHER = "arn:aws:sts::111122223333:assumed-role/kvs-producer-cam2/cam2"
MINUTE, HOUR, DAY = 60, 3600, 86400
START = 1_767_225_600  # 2026-01-01T00:00:00Z: an hour boundary, so windows start here


def call(
    n: int,
    at: float,
    *,
    ip: str = "198.51.100.7",
    principal: str = PRODUCER,
    name: str = "PutMedia",
    error: str | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": name,
        "eventID": f"00000000-0000-4000-8000-{n:012d}",
        "eventTime": _iso(at),
        "awsRegion": "eu-west-1",
        "recipientAccountId": "111122223333",
        "sourceIPAddress": ip,
        "userIdentity": {"type": "AssumedRole", "arn": principal, "accessKeyId": "ASIAEXAMPLE"},
        "requestParameters": {"streamName": "front-door"},
    }
    if error:
        record["errorCode"] = error
    return record


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def detector(**stateful: Any) -> dict[str, Any]:
    return {
        "id": "memory-test",
        "title": "A stateful detector",
        "severity": "medium",
        "description": "a detector used by the tests",
        "remediation": "do the right thing instead",
        "match": {"eventSource": "kinesisvideo.amazonaws.com"},
        **stateful,
    }


DENIED_BURST = detector(
    match={"eventSource": "kinesisvideo.amazonaws.com", "errorCode": {"glob": "AccessDenied*"}},
    threshold={"count": 3, "window": "10m", "group_by": ["userIdentity.arn"]},
)
MANY_NETWORKS = detector(
    id="many-networks",
    threshold={
        "count": 3,
        "window": "1h",
        "group_by": ["userIdentity.accessKeyId"],
        "distinct": "sourceIPAddress",
        "derive": "network",
    },
)
NEW_NETWORK = detector(
    id="memory-test",
    first_seen={
        "value": "sourceIPAddress",
        "derive": "network",
        "group_by": ["userIdentity.arn"],
        "learning": "1d",
        "expiry": "30d",
    },
)


def load(tmp_path: Path, *detectors: dict[str, Any]) -> LoadedConfig:
    (tmp_path / "pack.yaml").write_text(yaml.safe_dump({"detectors": list(detectors)}))
    (tmp_path / "sentinel.yaml").write_text(yaml.safe_dump({"packs": ["pack.yaml"]}))
    return load_config(tmp_path / "sentinel.yaml")


class Judged:
    """Events through the engine and the judge, one at a time, as the pipeline would."""

    def __init__(self, loaded: LoadedConfig, store: StateStore, learn: bool = False) -> None:
        self.stats = RunStats()
        self.processor = Processor(Engine(loaded.detectors), self.stats)
        self.judge = StatefulJudge(store, self.stats, learn=learn)

    async def __call__(self, *records: dict[str, Any]) -> list[Alert]:
        alerts: list[Alert] = []
        for record in records:
            outcome = self.processor.process(Document(json.dumps(record), Location("test")))
            alerts += outcome.alerts + await self.judge.judge(outcome.pending)
        return alerts

    async def message(self, *records: dict[str, Any]) -> list[Alert]:
        """The records as one message (a log file, an SQS batch): their checks are judged together."""
        outcome = self.processor.process(Document(json.dumps({"Records": list(records)}), Location("test")))
        return outcome.alerts + await self.judge.judge(outcome.pending)


def message(name: str, *records: dict[str, Any]) -> FakeMessage:
    return FakeMessage(name, [Document(json.dumps({"Records": list(records)}), Location(name))])


def event_at(event_time: str) -> Event:
    """A decoded event with this eventTime, as the engine sees it."""
    item = next(iter(normalise(json.dumps({**call(1, 0), "eventTime": event_time}), Location("test"))))
    assert isinstance(item, Event)
    return item
