"""Amazon SNS: the alert as JSON, with message attributes subscribers can filter on.

Attributes: `severity`, `severity_rank` (Number: info 0 … critical 4, for `{"numeric": [">=", 3]}`),
`detector`, `account`, `region`, `practice`, `tags` (String.Array). The subject (read by email
subscribers) is ASCII, has no control characters and stays under 100 characters. Rendering: the message
is JSON (no markup to inject), so hidden and bidi characters are written as `\\uXXXX` escapes and a
subscriber parses the exact value back; subject and attribute values show them as visible escapes
(see reveal). Email clients may still linkify a URL inside the JSON: only the JSON escapes are ours.
A message stays under SNS's 256 KiB: `details` go first, then long text fields are clipped, and
`truncated` says what was cut.
Throttling, 5xx and network errors retry with exponential backoff and jitter; other errors fail at once.
FIFO topics get the detector as message group and a deduplication id derived from detector and event id.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, ClassVar, NoReturn, Protocol

import msgspec
import structlog
from pydantic import BaseModel, ConfigDict, Field

from kvs_sentinel.alerts import Alert
from kvs_sentinel.aws import AwsCallFailed, RetryCounts, aws_client, call_with_retries
from kvs_sentinel.clock import SYSTEM_CLOCK, Clock
from kvs_sentinel.retry import RetryPolicy
from kvs_sentinel.reveal import reveal, reveal_in_json
from kvs_sentinel.severity import SEVERITY_NAMES
from kvs_sentinel.sinks.base import SinkContext, SinkCounts, register_sink

log = structlog.get_logger("kvs_sentinel.sinks.sns")

MAX_MESSAGE_BYTES = 256 * 1024
_MARGIN = 2048  # attributes, subject and the request's own overhead
SUBJECT_LIMIT = 99
_CLIPPED_FIELDS = ("error_message", "user_agent", "summary", "resource", "principal", "remediation")
_CLIP_TO = 2048
_SUBJECT_UNSAFE = re.compile(r"[^\x20-\x7e]+")


class SnsPublisher(Protocol):
    """The one call we need from an SNS client (aiobotocore's, or a fake)."""

    async def publish(self, **request: Any) -> Mapping[str, Any]: ...


class SnsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
    region: str | None = Field(None, description="default: the topic's region")
    endpoint_url: str | None = None
    timeout_seconds: float = Field(10, gt=0, le=60)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_seconds: float = Field(0.5, ge=0)
    backoff_max_seconds: float = Field(20, ge=0)


def sns_subject(alert: Alert) -> str:
    """`[HIGH] Title`: printable ASCII only, one line, under 100 characters (SNS's rules)."""
    subject = reveal(f"[{alert.severity.upper()}] {alert.title}")
    subject = " ".join(_SUBJECT_UNSAFE.sub(" ", subject).split())
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 3].rstrip() + "..."
    return subject or "kvs-sentinel alert"


def message_attributes(alert: Alert) -> dict[str, dict[str, str]]:
    def string(value: str | None) -> dict[str, str] | None:
        return {"DataType": "String", "StringValue": reveal(value)} if value else None

    attributes = {
        "severity": string(alert.severity),
        "severity_rank": {"DataType": "Number", "StringValue": str(int(SEVERITY_NAMES[alert.severity]))}
        if alert.severity in SEVERITY_NAMES
        else None,
        "detector": string(alert.detector),
        "account": string(alert.account),
        "region": string(alert.region),
        "practice": string(alert.practice),
        "tags": {"DataType": "String.Array", "StringValue": _json(list(alert.tags)).decode()}
        if alert.tags
        else None,
    }
    return {name: value for name, value in attributes.items() if value is not None}


def _json(value: Any) -> bytes:
    return reveal_in_json(msgspec.json.encode(value))


def sns_message(alert: Alert, limit: int = MAX_MESSAGE_BYTES - _MARGIN) -> str:
    """The alert as JSON, cut to fit `limit` bytes; `truncated` lists what was cut."""
    encoded = _json(alert)
    if len(encoded) <= limit:
        return encoded.decode()
    data: dict[str, Any] = msgspec.to_builtins(alert)
    data["details"] = {}
    data["truncated"] = ["details"]
    for name in _CLIPPED_FIELDS:
        if len(_json(data)) <= limit:
            break
        value = data.get(name)
        if isinstance(value, str) and len(value) > _CLIP_TO:
            data[name] = value[: _CLIP_TO - 1] + "…"
            data["truncated"].append(name)
    encoded = _json(data)
    if len(encoded) > limit:  # only a pathological title or tag list gets here
        data = {k: data[k] for k in ("detector", "severity", "event_id", "account", "region")}
        data["truncated"] = ["everything else"]
        encoded = _json(data)
    return encoded.decode()


ClientFactory = Callable[[SnsConfig], AbstractAsyncContextManager[SnsPublisher]]


def aiobotocore_client(config: SnsConfig) -> AbstractAsyncContextManager[SnsPublisher]:
    """The shared AWS client (botocore's retries off: the sink retries, with its clock)."""
    region = config.region or config.topic_arn.split(":")[3]
    client: AbstractAsyncContextManager[SnsPublisher] = aws_client(
        "sns", region=region, endpoint_url=config.endpoint_url, timeout_seconds=config.timeout_seconds
    )
    return client


@register_sink("sns")
class SnsSink:
    Config: ClassVar[type[BaseModel]] = SnsConfig
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        name: str,
        config: SnsConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        client_factory: ClientFactory = aiobotocore_client,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.client_factory = client_factory
        self.rng = rng or random.Random()
        self.counts = SinkCounts()
        self._stack = AsyncExitStack()
        self._client: SnsPublisher | None = None

    @classmethod
    def from_config(cls, name: str, config: Any, context: SinkContext) -> SnsSink:
        assert isinstance(config, SnsConfig)
        return cls(name, config, clock=context.clock)

    def request(self, alert: Alert) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TopicArn": self.config.topic_arn,
            "Message": sns_message(alert),
            "Subject": sns_subject(alert),
            "MessageAttributes": message_attributes(alert),
        }
        if self.config.topic_arn.endswith(".fifo"):
            identity = f"{alert.detector}\n{alert.event_id or sns_message(alert)}".encode()
            request["MessageGroupId"] = alert.detector[:128]
            request["MessageDeduplicationId"] = hashlib.sha256(identity).hexdigest()
        return request

    @property
    def policy(self) -> RetryPolicy:
        config = self.config
        return RetryPolicy(config.max_attempts, config.backoff_base_seconds, config.backoff_max_seconds)

    async def send(self, alert: Alert) -> None:
        request = self.request(alert)

        async def publish() -> Mapping[str, Any]:
            if self._client is None:
                self._client = await self._stack.enter_async_context(self.client_factory(self.config))
            return await self._client.publish(**request)

        retries = RetryCounts()
        try:
            response, attempts = await call_with_retries(
                publish,
                self.policy,
                clock=self.clock,
                rng=self.rng,
                counts=retries,
                sink=self.name,
                what="sns:Publish",
            )
        except AwsCallFailed as exc:
            self._fail(alert, exc.failure.text, retryable=exc.failure.retryable)
        finally:
            self.counts.retries += retries.retries
            self.counts.rate_limited += retries.rate_limited
        self.counts.success(self.name, alert, message_id=response.get("MessageId"), attempts=attempts)

    def _fail(self, alert: Alert, reason: str, *, retryable: bool) -> NoReturn:
        message = f"sns topic {self.config.topic_arn}: {reason}"
        raise self.counts.failure(self.name, alert, message, retryable=retryable)

    async def flush(self) -> None:
        """Nothing buffered: `send` returns only once SNS accepted the message."""

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None
