"""`replay --state URL [--learn]`: a baseline learnt from history, kept for the next replay (or `run`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kvs_sentinel.cli import main
from kvs_sentinel.state.base import StateStore
from kvs_sentinel.state.registry import StoreUse, open_store
from tests.support.logging_reset import fresh_logging

PACK = Path(__file__).resolve().parents[1] / "config" / "packs" / "kvs.yaml"

__all__ = ["fresh_logging"]

PRODUCER = {
    "type": "AssumedRole",
    "arn": "arn:aws:sts::111122223333:assumed-role/kvs-producer-frontdoor/cam-0042",
    "accessKeyId": "ASIAEXAMPLEPRODUCER1",
}


def put_media(n: int, day: int, ip: str) -> dict[str, Any]:
    return {
        "eventVersion": "1.09",
        "eventTime": f"2026-02-{day:02d}T08:00:00Z",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "PutMedia",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": ip,
        "userIdentity": PRODUCER,
        "requestParameters": {"streamName": "frontdoor"},
        "eventID": f"7d1a3c8e-0000-4c6b-9a57-{n:012d}",
        "recipientAccountId": "111122223333",
    }


def write(path: Path, *events: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def replay(tmp_path: Path, *args: str) -> list[str]:
    output = tmp_path / "alerts.jsonl"
    assert main(["replay", "--no-progress", "-o", str(output), *args]) == 0
    return [json.loads(line)["detector"] for line in output.read_text().splitlines()]


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Two weeks of one camera on its two networks, and a moment on a third while it was learning."""
    events = [put_media(day, day, "198.51.100.7") for day in range(1, 15)]
    events.insert(2, put_media(100, 2, "203.0.113.40"))
    return write(tmp_path / "history.jsonl", *events)


@pytest.fixture
def today(tmp_path: Path) -> Path:
    known = [put_media(200, 16, "198.51.100.9"), put_media(201, 16, "203.0.113.41")]
    return write(tmp_path / "today.jsonl", *known, put_media(202, 16, "192.0.2.10"))


def test_a_learnt_baseline_makes_the_next_replay_alert_on_a_new_network_only(
    tmp_path: Path, history: Path, today: Path
) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    learnt = replay(tmp_path, "--state", state, "--learn", str(history))
    assert set(learnt) == {"kvs-untrusted-source-ip"}  # stateless detectors alert as ever
    alerts = replay(tmp_path, "--state", state, str(today))
    assert alerts.count("kvs-producer-new-network") == 1
    later = write(tmp_path / "later.jsonl", put_media(300, 17, "192.0.2.99"))
    assert "kvs-producer-new-network" not in replay(tmp_path, "--state", state, str(later))  # known now


def test_without_a_baseline_the_same_day_is_spent_learning(tmp_path: Path, today: Path) -> None:
    assert "kvs-producer-new-network" not in replay(tmp_path, str(today))


def test_learning_gives_no_stateful_alert_but_stateless_detectors_still_alert(
    tmp_path: Path, history: Path
) -> None:
    denied = [
        {**put_media(300 + i, 15, "198.51.100.7"), "errorCode": "AccessDeniedException"} for i in range(12)
    ]
    write(history, *denied)
    state = f"sqlite:{tmp_path / 'state.db'}"
    assert replay(tmp_path, str(history)).count("kvs-denied-burst") == 1  # without --learn
    assert "kvs-denied-burst" not in replay(tmp_path, "--state", state, "--learn", str(history))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--state", "redis:x"], "--state: state 'redis:x': unknown backend 'redis'"),
        (["--state", "sqlite"], "--state: state 'sqlite': write sqlite:PATH"),
        (["--learn"], "--learn needs --state sqlite:PATH or dynamodb:TABLE"),
    ],
)
def test_a_bad_state_option_is_a_one_line_usage_error(
    tmp_path: Path, today: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(["replay", *args, str(today)]) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert error.count("\n") == 1


def test_baseline_shows_what_a_producer_has_learnt(
    tmp_path: Path, history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    replay(tmp_path, "--state", state, "--learn", str(history))
    capsys.readouterr()
    assert main(["baseline", "--state", state, "--at", "2026-02-15T00:00:00Z", PRODUCER["arn"]]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "kvs-producer-new-network (userIdentity.arn): 2 value(s), learnt: a new value alerts",
        "  198.51.100.0/24",
        "  203.0.113.0/24",
    ]
    assert main(["baseline", "--state", state, "--at", "2026-02-03T00:00:00Z", PRODUCER["arn"]]) == 0
    assert "still learning" in capsys.readouterr().out
    assert main(["baseline", "--state", state, "arn:aws:iam::111122223333:user/nobody"]) == 0
    assert (
        capsys.readouterr().out == "arn:aws:iam::111122223333:user/nobody: nothing learnt in " + state + "\n"
    )


def test_validate_says_where_stateful_detectors_remember(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sentinel.yaml"
    config.write_text(f"service: {{state: 'sqlite:{tmp_path / 'state.db'}'}}\n")
    assert main(["validate", "--config", str(config)]) == 0
    assert f"stateful: 4 detectors remember in service.state sqlite:{tmp_path / 'state.db'} (kept)" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize("deliver", [False, True])
def test_a_replay_of_files_lets_sqlite_commit_in_groups_unless_it_delivers(
    tmp_path: Path, history: Path, monkeypatch: pytest.MonkeyPatch, deliver: bool
) -> None:
    import kvs_sentinel.cli

    asked: list[StoreUse] = []

    async def recording(url: str, use: StoreUse) -> StateStore:
        asked.append(use)
        return await open_store(url, use)

    monkeypatch.setattr(kvs_sentinel.cli, "open_store", recording)
    alerts = tmp_path / "alerts.jsonl"
    config = tmp_path / "sentinel.yaml"
    config.write_text(f"packs: [{PACK}]\nsinks:\n  archive: {{type: stdout, path: {alerts}}}\n")
    output = ["--deliver"] if deliver else ["-o", str(alerts)]
    state = ["--state", f"sqlite:{tmp_path / 'state.db'}"]
    assert main(["replay", "--no-progress", "--config", str(config), *output, *state, str(history)]) == 0
    # sinks pace their deliveries: a commit per message, so no write lock is held meanwhile
    assert asked == [StoreUse(group_commits=not deliver)]
    assert alerts.read_text()  # the replay ran and its alerts went where it was told


def test_a_replay_whose_last_commit_fails_says_so_and_exits_1(
    tmp_path: Path, history: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kvs_sentinel.state.base import StateError
    from kvs_sentinel.state.sqlite import SqliteStore

    def disk_full(store: SqliteStore) -> None:
        raise StateError(f"sqlite:{store.path}: database or disk is full", retryable=False)

    monkeypatch.setattr(SqliteStore, "_commit_group", disk_full)  # the group still open at the end
    state = f"sqlite:{tmp_path / 'state.db'}"
    code = main(
        ["replay", "--no-progress", "-o", str(tmp_path / "out.jsonl"), "--state", state, str(history)]
    )
    error = capsys.readouterr().err
    assert code == 1
    assert "kvs-sentinel: --state: what the replay learnt last was not saved: sqlite:" in error
    assert "database or disk is full" in error
    assert "Traceback" not in error
    assert "events: 15" in error  # the summary is still printed
