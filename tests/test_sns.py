"""The SNS sink against moto in server mode, with an SQS queue subscribed to the topic."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.reveal import HIDDEN
from kvs_sentinel.sinks.sns import (
    MAX_MESSAGE_BYTES,
    SnsConfig,
    SnsPublisher,
    SnsSink,
    sns_message,
    sns_subject,
)
from kvs_sentinel.testing import FakeClock
from tests.support.alert_samples import sample_alert
from tests.support.logging_reset import fresh_logging

__all__ = ["fresh_logging"]  # autouse here too

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"  # type: ignore[union-attr]
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
async def subscribed(moto_endpoint: str, aws_env: None) -> AsyncIterator[tuple[str, Any, str]]:
    """(topic ARN, SQS client, queue URL): a topic with a queue subscribed, envelope delivery."""
    session = get_session()
    async with (
        session.create_client("sns", region_name=REGION, endpoint_url=moto_endpoint) as sns,
        session.create_client("sqs", region_name=REGION, endpoint_url=moto_endpoint) as sqs,
    ):
        topic = (await sns.create_topic(Name=f"kvs-sentinel-alerts-{random.randrange(10**9)}"))["TopicArn"]
        queue_url = (await sqs.create_queue(QueueName=f"alerts-{random.randrange(10**9)}"))["QueueUrl"]
        queue_arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        await sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "false"},
        )
        yield topic, sqs, queue_url


async def receive(sqs: Any, queue_url: str, count: int) -> list[dict[str, Any]]:
    envelopes: list[dict[str, Any]] = []
    for _ in range(10):
        reply = await sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        envelopes += [json.loads(m["Body"]) for m in reply.get("Messages", [])]
        if len(envelopes) >= count:
            break
    return envelopes


async def test_publishes_the_alert_as_json_with_filterable_attributes(
    subscribed: tuple[str, Any, str], moto_endpoint: str
) -> None:
    topic, sqs, queue_url = subscribed
    sink = SnsSink("pager", SnsConfig(topic_arn=topic, endpoint_url=moto_endpoint))
    alert = sample_alert()
    try:
        await sink.send(alert)
        await sink.flush()
    finally:
        await sink.aclose()
    [envelope] = await receive(sqs, queue_url, 1)
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == topic
    assert envelope["Subject"] == "[CRITICAL] Producer asked for a video-reading endpoint"
    body = json.loads(envelope["Message"])
    assert body["detector"] == "kvs-producer-consumer-endpoint"
    assert body["event_id"] == alert.event_id
    assert body["principal"] == alert.principal
    attributes = {name: (a["Type"], a["Value"]) for name, a in envelope["MessageAttributes"].items()}
    assert attributes == {
        "severity": ("String", "critical"),
        "severity_rank": ("Number", "4"),
        "detector": ("String", "kvs-producer-consumer-endpoint"),
        "account": ("String", "111122223333"),
        "region": ("String", "eu-west-1"),
        "practice": ("String", "least-privilege"),
        "tags": ("String.Array", '["kvs","producer"]'),
    }
    assert sink.counts.delivered == 1


async def test_hidden_characters_reach_subscribers_escaped_with_the_exact_value(
    subscribed: tuple[str, Any, str], moto_endpoint: str
) -> None:
    topic, sqs, queue_url = subscribed
    sink = SnsSink("pager", SnsConfig(topic_arn=topic, endpoint_url=moto_endpoint))
    hostile = "admin\u202egnp.exe\u2066x\u2069 tag\U000e0041 <!channel> :fire:"
    alert = sample_alert(principal=hostile, account="1111\u200b22223333", user_agent=hostile)
    try:
        await sink.send(alert)
    finally:
        await sink.aclose()
    [envelope] = await receive(sqs, queue_url, 1)
    assert HIDDEN.search(envelope["Message"]) is None
    assert "\\u202e" in envelope["Message"], "shown as a JSON escape"
    body = json.loads(envelope["Message"])
    assert body["principal"] == hostile, "the subscriber parses back the exact value"
    assert body["user_agent"] == hostile
    assert envelope["MessageAttributes"]["account"]["Value"] == "1111\\u200b22223333"


async def test_a_missing_topic_is_a_permanent_failure(moto_endpoint: str, aws_env: None) -> None:
    missing = "arn:aws:sns:eu-west-1:123456789012:kvs-sentinel-gone"
    sink = SnsSink("pager", SnsConfig(topic_arn=missing, endpoint_url=moto_endpoint), clock=FakeClock())
    try:
        with pytest.raises(DeliveryError) as caught:
            await sink.send(sample_alert())
    finally:
        await sink.aclose()
    assert not caught.value.retryable
    assert "NotFound" in str(caught.value)
    assert sink.counts.failed_permanent == 1


# ------------------------------------------------------------------ unit level, with a fake client


class FlakySns:
    """Answers Throttling `throttle` times, then accepts; keeps every request."""

    def __init__(self, throttle: int, code: str = "Throttling") -> None:
        self.throttle = throttle
        self.code = code
        self.requests: list[dict[str, Any]] = []

    async def publish(self, **request: Any) -> Mapping[str, Any]:
        self.requests.append(request)
        if self.throttle:
            self.throttle -= 1
            raise ClientError(
                {
                    "Error": {"Code": self.code, "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "Publish",
            )
        return {"MessageId": "m-1"}


def fake_factory(client: FlakySns) -> Any:
    @asynccontextmanager
    async def factory(config: SnsConfig) -> AsyncIterator[SnsPublisher]:
        yield client

    return factory


TOPIC = "arn:aws:sns:eu-west-1:111122223333:kvs-sentinel-alerts"


async def test_throttling_is_retried_with_backoff() -> None:
    client, clock = FlakySns(throttle=3), FakeClock()
    sink = SnsSink("pager", SnsConfig(topic_arn=TOPIC), clock=clock, client_factory=fake_factory(client),
                   rng=random.Random(1))  # fmt: skip
    await sink.send(sample_alert())
    assert len(client.requests) == 4
    assert len(clock.sleeps) == 3
    assert 0.25 <= clock.sleeps[0] <= 0.5
    assert 0.5 <= clock.sleeps[1] <= 1.0
    assert 1.0 <= clock.sleeps[2] <= 2.0
    assert sink.counts.rate_limited == 3
    assert sink.counts.delivered == 1


async def test_endless_throttling_gives_up_retryably() -> None:
    client = FlakySns(throttle=100)
    config = SnsConfig(topic_arn=TOPIC, max_attempts=3)
    sink = SnsSink("pager", config, clock=FakeClock(), client_factory=fake_factory(client))
    with pytest.raises(DeliveryError) as caught:
        await sink.send(sample_alert())
    assert caught.value.retryable
    assert len(client.requests) == 3


async def test_fifo_topics_get_a_group_and_a_stable_deduplication_id() -> None:
    client = FlakySns(throttle=0)
    sink = SnsSink(
        "pager", SnsConfig(topic_arn=TOPIC + ".fifo"), clock=FakeClock(), client_factory=fake_factory(client)
    )
    await sink.send(sample_alert())
    await sink.send(sample_alert())
    first, again = client.requests
    assert first["MessageGroupId"] == "kvs-producer-consumer-endpoint"
    assert first["MessageDeduplicationId"] == again["MessageDeduplicationId"]


def test_subject_is_ascii_one_line_and_under_100_characters() -> None:
    subject = sns_subject(sample_alert(title="Caméra\n\x00stream\tdeleted " + "x" * 300))
    assert len(subject) < 100
    assert subject.isascii()
    assert subject.isprintable()
    assert subject.startswith("[CRITICAL] Cam ra\\n\\u0000stream\\tdeleted x"), "controls shown, not hidden"


def test_oversized_alerts_are_cut_to_fit_sns_and_say_so() -> None:
    alert = sample_alert(details={"blob": "x" * 400_000}, error_message="y" * 300_000)
    message = sns_message(alert)
    assert len(message.encode()) < MAX_MESSAGE_BYTES
    body = json.loads(message)
    assert body["truncated"] == ["details", "error_message"]
    assert body["detector"] == alert.detector
    assert body["event_id"] == alert.event_id


def test_topic_arn_is_checked() -> None:
    with pytest.raises(ValueError, match="topic_arn"):
        SnsConfig(topic_arn="arn:aws:sqs:eu-west-1:111122223333:not-a-topic")
