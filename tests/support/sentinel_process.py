"""`kvs-sentinel run` as a subprocess with the test's AWS environment, and its configuration."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_until

PACK = Path(__file__).resolve().parents[2] / "config" / "packs" / "kvs.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    tmp_path: Path,
    name: str,
    queue_url: str,
    sinks: str,
    state: str = "memory",
    grouping: str = "{window_seconds: 0}",
    **sqs: Any,
) -> tuple[Path, int]:
    """A run configuration on one queue; `state` is service.state (a shared one dedupes across tasks)."""
    port = free_port()
    options = {"wait_time_seconds": 1, "visibility_timeout": 5, "retry_backoff_base_seconds": 0, **sqs}
    lines = "".join(f"    {key}: {value}\n" for key, value in options.items())
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"packs: [{PACK}]\n"
        f"sinks:\n{sinks}"
        f"grouping: {grouping}\n"
        f"sources:\n  - type: sqs\n    queue_url: {queue_url}\n{lines}"
        f"service:\n  health_host: 127.0.0.1\n  health_port: {port}\n  grace_seconds: 8\n  close_seconds: 2\n"
        f"  state: {state!r}\n"
    )
    return path, port


class Sentinel:
    """`python -m kvs_sentinel run` with the test's AWS environment; its stderr goes to a log file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kvs_sentinel", "--log-format", "json", "run", "--config", str(config)],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append({"event": "not_json", "line": line})
        return entries

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs() if entry.get("event") == event]

    async def stop(self, within: float) -> float:
        """SIGTERM; the exit code must be 0 within `within` seconds. Returns how long it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        await wait_until(
            lambda: self.process.poll() is not None, within, lambda: f"exit after SIGTERM; {self.where()}"
        )
        assert self.process.returncode == 0, self.log_path.read_text()[-3000:]
        return time.monotonic() - started

    def where(self) -> str:
        """What a process that has not exited is doing (for a failure message): its threads' kernel wait
        channels and the end of its log."""
        pid = self.process.pid
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            waits = {task: Path(f"/proc/{pid}/task/{task}/wchan").read_text() for task in tasks}
        except OSError as exc:
            waits = {"?": str(exc)}
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            wanted = ("SigPnd", "ShdPnd", "SigBlk", "SigCgt")
            signals = " ".join(line for line in status if line.startswith(wanted))
        except OSError as exc:
            signals = str(exc)
        return f"threads waiting in {waits}; {signals}; log ends: {self.log_path.read_text()[-2000:]!r}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def sentinels() -> Iterator[list[Sentinel]]:
    started: list[Sentinel] = []
    yield started
    for sentinel in started:
        sentinel.close()


def alerts_in(path: Path, *, live: bool = False) -> list[tuple[str, str]]:
    """(detector, eventID) of each alert a JSON Lines sink wrote. `live`: the sentinel may still be
    writing, so a last line not yet ended is not read yet; otherwise every line must be whole."""
    if not path.exists():
        return []
    *lines, tail = path.read_text().split("\n")
    if tail and not live:
        raise AssertionError(f"{path}: the last line is cut short: {tail[:80]!r}")
    return [(a["detector"], a["event_id"]) for a in map(json.loads, lines)]


def jsonl_sink(path: Path) -> str:
    return f"  archive:\n    type: stdout\n    path: {path}\n"
