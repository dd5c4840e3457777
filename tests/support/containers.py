"""The kvs-sentinel image, built from this checkout once per session, and containers run from it.

`../shared/tools/docker-base` starts a Docker engine on a machine that cannot pull from a registry and
builds a local Python 3.11 base image; the image is then built exactly as the README says. Containers use
`--network host` (to reach moto and the fake Slack on loopback) or `--network none`: there is no bridge.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER_BASE = REPO.parent / "shared" / "tools" / "docker-base"
IMAGE = "kvs-sentinel:test"
BUILD_SECONDS = 1800  # a fresh build on the vfs storage driver takes minutes


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args[:2])} … exited {result.returncode}: {result.stderr[-3000:]}")
    return result


def _engine_runs() -> bool:
    try:
        return docker("info", timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _skip_loudly(reason: str) -> None:
    banner = "!" * 100
    pytest.skip(
        f"\n{banner}\nTHE CONTAINER TESTS DID NOT RUN: DOCKER COULD NOT START.\n{reason}\n"
        f"The image was neither built nor tested.\n{banner}"
    )


@dataclass(frozen=True)
class Image:
    name: str
    base: str
    build_seconds: float

    def size(self, name: str | None = None) -> int:
        return int(json.loads(docker("image", "inspect", name or self.name).stdout)[0]["Size"])

    def config(self) -> dict[str, Any]:
        return dict(json.loads(docker("image", "inspect", self.name).stdout)[0]["Config"])

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`docker run --rm` to completion; the caller checks the exit code."""
        return docker("run", "--rm", *args, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def image() -> Image:
    if not DOCKER_BASE.is_file():
        _skip_loudly(f"{DOCKER_BASE} is missing: it installs and starts Docker on these machines.")
    started = subprocess.run([str(DOCKER_BASE)], capture_output=True, text=True, timeout=900, check=False)
    if started.returncode != 0:
        if not _engine_runs():
            _skip_loudly(started.stderr.strip()[-2000:])
        pytest.fail(f"docker-base: the engine runs, but: {started.stderr.strip()[-2000:]}")
    base = started.stdout.strip()
    began = time.monotonic()
    build = ["build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}", "-t", IMAGE, str(REPO)]
    docker(*build, timeout=BUILD_SECONDS)
    return Image(IMAGE, base, time.monotonic() - began)


class Container:
    """A detached `docker run`; removed (forcibly if it still runs) when the test ends."""

    def __init__(self, image: Image, *args: str, command: tuple[str, ...] = ()) -> None:
        self.name = f"kvs-sentinel-test-{uuid.uuid4().hex[:12]}"
        docker("run", "--detach", "--name", self.name, *args, image.name, *command)

    def state(self) -> dict[str, Any]:
        return dict(json.loads(docker("inspect", self.name).stdout)[0]["State"])

    def health(self) -> str:
        return str(self.state().get("Health", {}).get("Status", "none"))

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.logs().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": "not_json", "line": line})
        return events

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.log_events() if entry.get("event") == event]

    def stop(self, grace: int) -> float:
        """`docker stop -t grace` (SIGTERM, then SIGKILL after `grace` s); returns how long it took."""
        began = time.monotonic()
        docker("stop", "--time", str(grace), self.name, timeout=grace + 60)
        return time.monotonic() - began

    def remove(self) -> None:
        docker("rm", "--force", self.name, check=False)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()
