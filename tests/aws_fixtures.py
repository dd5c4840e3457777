"""moto in server mode on loopback, and aiobotocore clients that reach it through the standard environment.

Import the fixture into a test module (`from tests.aws_fixtures import moto_server`): conftest.py is shared.
The code under test finds moto through `AWS_ENDPOINT_URL` and credentials through the environment, as it
finds AWS in production.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


def _serialise_dynamodb_requests() -> None:
    """DynamoDB applies each request atomically. moto's server threads can interleave two: its handler
    reads the item that `ReturnValues=ALL_OLD` returns before the backend applies the update, so two
    concurrent updates can both be told a member was absent. One lock over moto's DynamoDB handler makes
    the fake as atomic as the service, so the state store's atomicity tests test our requests, not
    moto's threading."""
    import functools
    import threading

    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler, "_kvs_serialised", False):
        return
    lock = threading.Lock()
    original = DynamoHandler.call_action

    @functools.wraps(original)
    def serialised(self: Any) -> Any:
        with lock:
            return original(self)

    DynamoHandler.call_action = serialised  # type: ignore[method-assign]
    DynamoHandler._kvs_serialised = True  # type: ignore[attr-defined]


def _serialise_sqs_receives() -> None:
    """SQS hides a message it hands out from every other receive. moto's server threads can interleave
    two receives between its visibility check and its mark, so both hand out one message (then four
    deletes for three messages). Each receive now looks and marks under one lock; a long poll waits
    outside it, so other receives are not held up."""
    import functools
    import threading
    import time

    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend, "_kvs_serialised", False):
        return
    lock = threading.Lock()
    original = SQSBackend.receive_message

    @functools.wraps(original)
    def serialised(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with lock:  # one look, no wait: the original's own poll loop ends at once
                found = original(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            if found or time.monotonic() >= deadline:
                return found
            self.get_queue(queue_name).wait_for_messages(min(1.0, deadline - time.monotonic()))

    SQSBackend.receive_message = serialised  # type: ignore[method-assign]
    SQSBackend._kvs_serialised = True  # type: ignore[attr-defined]


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The endpoint of a fresh moto server; AWS_* point every client at it."""
    _serialise_dynamodb_requests()
    _serialise_sqs_receives()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    point_aws_at(endpoint, monkeypatch, tmp_path)
    try:
        yield endpoint
    finally:
        # moto's backends are process-wide: leave nothing behind for the next test
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
        server.stop()


def point_aws_at(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The standard AWS environment, pointed at `endpoint`: fake credentials, no profile, no instance
    metadata, region us-east-1, so every client the code under test makes goes there and nowhere else."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)


def aws_client(service: str) -> AbstractAsyncContextManager[Any]:
    """A test-side aiobotocore client (setup and inspection), configured by the environment only."""
    from aiobotocore.session import get_session

    return get_session().create_client(service)  # type: ignore[no-any-return]
