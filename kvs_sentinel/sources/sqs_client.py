"""The SQS client of the source: its configuration, the standard AWS environment, and error texts.

The client follows the standard credential chain and environment: `AWS_ENDPOINT_URL_SQS` and
`AWS_ENDPOINT_URL` are honoured by botocore itself; the region is the queue URL's, else `AWS_REGION`,
else botocore's default (`AWS_DEFAULT_REGION`, the profile).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field

from kvs_sentinel.aws import aws_client
from kvs_sentinel.sources.base import SourceConfig

MAX_VISIBILITY_SECONDS = 43_200  # 12 h, the SQS maximum
RECEIVE_ERROR_BACKOFF_CAP = 30.0
_REGION_IN_URL = re.compile(r"^(?:sqs[.-]([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")


class SqsSourceConfig(SourceConfig):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    queue_url: str = Field(pattern=r"^https?://[^/\s]+/\d+/[A-Za-z0-9_-]{1,80}(\.fifo)?$")
    region: str | None = Field(None, description="default: the queue URL's region, else AWS_REGION")
    wait_time_seconds: int = Field(20, ge=1, le=20)
    max_messages: int = Field(10, ge=1, le=10)
    pollers: int = Field(2, ge=1, le=32)
    visibility_timeout: int = Field(60, ge=1, le=MAX_VISIBILITY_SECONDS)
    max_in_flight: int = Field(100, ge=1, le=10_000)
    retry_backoff_base_seconds: int = Field(10, ge=0, le=MAX_VISIBILITY_SECONDS)
    retry_backoff_max_seconds: int = Field(900, ge=0, le=MAX_VISIBILITY_SECONDS)
    ack_flush_seconds: float = Field(0.5, gt=0, le=10)

    def identity(self) -> str:
        return self.queue_url

    def describe(self) -> str:
        return f"queue {queue_name(self.queue_url)}"


def retry_visibility(receive_count: int, base: int, cap: int) -> int:
    """Seconds until a failed message is visible again: base · 2^(receives - 1), capped (and ≤ 12 h)."""
    exponent = min(max(receive_count, 1) - 1, 32)
    return int(min(cap, MAX_VISIBILITY_SECONDS, base * 2**exponent))


def queue_name(queue_url: str) -> str:
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def queue_region(queue_url: str) -> str | None:
    """The region in an AWS queue URL (`sqs.eu-west-1.amazonaws.com`, `eu-west-1.queue.amazonaws.com`)."""
    match = _REGION_IN_URL.match(urlsplit(queue_url).hostname or "")
    return (match.group(1) or match.group(2)) if match else None


class SqsClient(Protocol):
    """The calls we make on an SQS client (aiobotocore's, or a fake)."""

    async def receive_message(self, **request: Any) -> Mapping[str, Any]: ...

    async def delete_message_batch(self, **request: Any) -> Mapping[str, Any]: ...

    async def change_message_visibility(self, **request: Any) -> Mapping[str, Any]: ...

    async def change_message_visibility_batch(self, **request: Any) -> Mapping[str, Any]: ...

    async def get_queue_attributes(self, **request: Any) -> Mapping[str, Any]: ...


ClientFactory = Callable[[SqsSourceConfig], AbstractAsyncContextManager[SqsClient]]


def aiobotocore_client(config: SqsSourceConfig) -> AbstractAsyncContextManager[SqsClient]:
    """An aiobotocore SQS client: standard retries, a read timeout above the long-poll wait."""
    region = config.region or queue_region(config.queue_url) or os.environ.get("AWS_REGION") or None
    client: AbstractAsyncContextManager[SqsClient] = aws_client(
        "sqs",
        region=region,
        endpoint_url=None,
        timeout_seconds=10,
        read_timeout_seconds=config.wait_time_seconds + 15,
        attempts=4,
        max_pool_connections=config.pollers + 10,
    )
    return client


def error_text(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error", {})
        return f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def aws_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    return (ClientError, BotoCoreError, OSError, TimeoutError)
