"""The container image, built and run: a non-root user, exactly the locked dependencies, bytecode compiled
at build time, a replay with no network, and `kvs-sentinel run` against moto and a fake Slack on loopback,
with a writable root filesystem and with ECS's read-only one.

Deselected from the default run (marker `container`); `.ci/run` runs them after the unit tests with
`pytest -m container tests/container`. They skip, loudly, only when no Docker engine can start at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from kvs_sentinel.testing import FakeSlackWebhook
from tests.aws_fixtures import aws_client, moto_server
from tests.support.containers import REPO, Container, Image, containers, docker, image
from tests.support.events import event_id, media_read
from tests.support.queues import drained, make_queue
from tests.support.slack_posts import slack_alerts
from tests.support.waiting import wait_until

__all__ = ["containers", "image", "moto_server"]

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]  # the first test waits for the build

UID = "10001"
HEALTH_PORT = 8080  # the port the image's HEALTHCHECK asks
GRACE_SECONDS = 8
EXAMPLE_ALERTS = 22
MAX_GROWTH_BYTES = 150_000_000  # 91 MB measured (README, Container image)
DETECTORS_PER_EVENT = 2  # a producer reading video from an untrusted address: media read + source ip
SENTINEL_YAML = f"""\
packs: [builtin:kvs]
sinks:
  slack: {{type: slack, webhook_url: "${{SLACK_WEBHOOK_URL}}"}}
grouping: {{window_seconds: 0}}
sources:
  - type: sqs
    queue_url: ${{KVS_SENTINEL_QUEUE_URL}}
    wait_time_seconds: 1
    visibility_timeout: 5
service:
  health_host: 127.0.0.1
  health_port: {HEALTH_PORT}
  grace_seconds: {GRACE_SECONDS}
  close_seconds: 2
"""


def locked_runtime_set() -> dict[str, str]:
    """name → version of every runtime dependency uv.lock pins for this platform."""
    uv = Path(sys.executable).parent / "uv"
    export = [str(uv), "export", "--frozen", "--no-emit-project", "--no-dev", "--no-hashes"]
    lines = subprocess.run(
        [*export, "--format", "requirements-txt", "--project", str(REPO)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    pins = {}
    for line in lines:
        if not line or line.startswith(("#", " ")):
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = requirement.strip().partition("==")
        pins[canonicalize_name(name)] = version
    return pins


def test_the_image_runs_as_a_non_root_user_with_exactly_the_locked_dependencies(image: Image) -> None:
    config = image.config()
    assert config["User"] == f"{UID}:{UID}"
    assert config["Healthcheck"]["Test"] == ["CMD", "kvs-sentinel", "health"]
    assert config["Cmd"] == ["kvs-sentinel", "run"]
    script = "id -u; id -g; python -m pip freeze --disable-pip-version-check 2>/dev/null"
    ran = image.run("--network", "none", image.name, "sh", "-c", script)
    assert ran.returncode == 0, ran.stderr
    uid, gid, *frozen = ran.stdout.splitlines()
    assert (uid, gid) == (UID, UID)
    installed = {}
    for line in frozen:
        name, _, version = line.partition("==")
        if canonicalize_name(name.split("@")[0].strip()) != "kvs-sentinel":
            installed[canonicalize_name(name)] = version
    assert installed == locked_runtime_set()
    assert any(line.startswith("kvs-sentinel @ file:") for line in frozen), "the wheel, with --no-deps"
    # the README states the size over the base: a dependency or a stray layer that doubles it fails here
    grown = image.size() - image.size(image.base)
    assert 0 < grown < MAX_GROWTH_BYTES, f"the image adds {grown / 1e6:.1f} MB to its base"


def test_replay_without_a_network_on_a_read_only_root_gives_the_example_alerts_from_prebuilt_bytecode(
    image: Image,
) -> None:
    examples = REPO / "examples"
    ran = image.run(
        *("--network", "none", "--read-only", "--env", "PYTHONVERBOSE=1"),
        *("--volume", f"{examples}:/examples:ro", image.name),
        *("kvs-sentinel", "replay", "--no-progress", "/examples"),
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    alerts = [json.loads(line) for line in ran.stdout.splitlines()]
    assert len(alerts) == EXAMPLE_ALERTS
    assert len({(a["detector"], a["event_id"]) for a in alerts}) == EXAMPLE_ALERTS
    # python -v names each module's code: "code object from '<pyc>'" when it came from bytecode, and
    # "code object from <source>.py" when it had to be compiled at run time (and, read-only, every time)
    compiled_now = re.findall(r"^# code object from (/opt/kvs-sentinel/\S+\.py)$", ran.stderr, re.MULTILINE)
    assert compiled_now == []
    from_bytecode = re.findall(r"^# (\S+\.pyc) matches (/opt/kvs-sentinel/\S+)$", ran.stderr, re.MULTILINE)
    loaded = {Path(source).name for _, source in from_bytecode}
    assert {"app.py", "engine.py", "pipeline.py"} <= loaded, sorted(loaded)[:20]


def task_definition_command() -> list[str]:
    """The Command of deploy/sentinel.yaml's container: it renders the configuration into /tmp."""
    decoded, problems = decode(str(REPO / "deploy" / "sentinel.yaml"))
    assert not problems, problems
    assert decoded is not None
    (container,) = decoded["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return [str(part) for part in container["Command"]]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def put_through_eventbridge(queue_arn: str, numbers: range) -> None:
    async with aws_client("events") as events:
        pattern = {"detail-type": ["AWS API Call via CloudTrail"], "source": ["aws.kinesisvideo"]}
        await events.put_rule(Name="kvs-sentinel-cloudtrail", EventPattern=json.dumps(pattern))
        await events.put_targets(Rule="kvs-sentinel-cloudtrail", Targets=[{"Id": "queue", "Arn": queue_arn}])
        entries = [
            {
                "Source": "aws.kinesisvideo",
                "DetailType": "AWS API Call via CloudTrail",
                "Detail": json.dumps(media_read(n)),
            }
            for n in numbers
        ]
        assert (await events.put_events(Entries=entries))["FailedEntryCount"] == 0


def aws_environment() -> list[str]:
    """The test's AWS environment (moto_server set it), as `docker run --env` options."""
    names = ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID"]
    names += ["AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"]
    return [option for name in names for option in ("--env", f"{name}={os.environ[name]}")]


@pytest.mark.parametrize("root", ["writable", "read-only"])
async def test_run_alerts_eventbridge_events_to_slack_turns_healthy_and_stops_with_exit_0(
    root: str, image: Image, moto_server: str, tmp_path: Path, containers: list[Container]
) -> None:
    assert port_is_free(HEALTH_PORT), f"127.0.0.1:{HEALTH_PORT} is taken: the HEALTHCHECK would ask it"
    url, arn, _ = await make_queue("kvs-sentinel-events")
    async with FakeSlackWebhook() as slack:
        common = ["--network", "host", "--health-interval", "1s", *aws_environment()]
        common += ["--env", f"SLACK_WEBHOOK_URL={slack.url}", "--env", f"KVS_SENTINEL_QUEUE_URL={url}"]
        if root == "writable":
            # the image's own CMD, with the configuration mounted where the README says
            config = tmp_path / "sentinel.yaml"
            config.write_text(SENTINEL_YAML)
            config.chmod(0o644)  # readable by the image's user whatever the umask
            mount = ["--volume", f"{config}:/etc/kvs-sentinel/sentinel.yaml:ro"]
            container = Container(image, *common, *mount)
        else:
            # as ECS runs it: readonlyRootFilesystem, a /tmp volume, the task definition's command
            options = ["--read-only", "--tmpfs", "/tmp", "--env", "KVS_SENTINEL_CONFIG=/tmp/sentinel.yaml"]
            options += ["--env", f"KVS_SENTINEL_CONFIG_YAML={SENTINEL_YAML}"]
            container = Container(image, *common, *options, command=tuple(task_definition_command()))
        containers.append(container)

        # each look is a `docker` subprocess: in a thread, so the fake Slack on this loop keeps answering
        async def started() -> list[dict[str, Any]]:
            return await asyncio.to_thread(container.logged, "run_started")

        async def healthy() -> bool:
            return await asyncio.to_thread(container.health) == "healthy"

        await wait_until(started, 60, lambda: f"start-up: {container.logs()}")

        numbers = range(1, 4)
        await put_through_eventbridge(arn, numbers)
        expected = len(numbers) * DETECTORS_PER_EVENT
        await wait_until(
            lambda: len(slack.payloads) >= expected, 30, lambda: f"Slack posts: {container.logs()}"
        )
        await wait_until(lambda: drained(url), 15, "the queue to drain")
        await wait_until(healthy, 30, lambda: f"healthy: {container.state()}")

        found = slack_alerts(slack)
        assert len(found) == len(set(found)) == expected
        assert {event for _, event in found} == {event_id(n) for n in numbers}
        if root == "writable":
            diff = docker("diff", container.name).stdout.split()
            assert diff == [], f"the sentinel wrote to its root filesystem: {diff}"

        took = await asyncio.to_thread(container.stop, GRACE_SECONDS + 12)
        state: dict[str, Any] = container.state()
        assert state["ExitCode"] == 0, container.logs()[-3000:]
        assert took < GRACE_SECONDS, f"docker stop took {took:.1f} s"
        (finished,) = container.logged("run_finished")
        assert finished["summary"] == f"{len(numbers)} done, 0 failed"
        assert not container.logged("drain_deadline_passed")
