"""What the AWS sinks share: one client factory, one error classifier, one retry loop.

Clients are aiobotocore's with botocore's own retries off: the caller retries, with its injected clock,
so backoff is testable and counted. The classifier says whether a failed call may succeed if repeated
(throttling, 5xx, network errors) or never will (validation, access denied, a missing resource).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from kvs_sentinel.retry import RetryPolicy

log = structlog.get_logger("kvs_sentinel.aws")

# Error codes that say "later": throttling, and the service's own transient failures.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
        "KMSThrottling",
        "InternalError",
        "InternalFailure",
        "InternalException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
    }
)


class Sleeper(Protocol):
    """What the retry loop needs of a clock (the sinks' injected Clock is one)."""

    async def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class AwsFailure:
    """A failed call, classified. `text` names the error code and message, never a credential."""

    text: str
    retryable: bool
    throttled: bool = False


class AwsCallFailed(Exception):
    """A call failed for good: permanently, or retryably after the last attempt."""

    def __init__(self, failure: AwsFailure, attempts: int) -> None:
        super().__init__(failure.text)
        self.failure = failure
        self.attempts = attempts


def is_transient(code: str) -> bool:
    return code in TRANSIENT_CODES or "Throttl" in code


def classify(exc: BaseException) -> AwsFailure | None:
    """The failure an AWS call raised, or None when `exc` is not an AWS or network error."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        ParamValidationError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{code}: {error.get('Message', '')}".rstrip(": ")
        transient = is_transient(code) or status >= 500 or status == 429
        return AwsFailure(text, retryable=transient, throttled="Throttl" in code or status == 429)
    if isinstance(exc, NoCredentialsError | ParamValidationError):
        return AwsFailure(f"{type(exc).__name__}: {exc}", retryable=False)
    if isinstance(exc, BotoCoreError | OSError | TimeoutError):
        return AwsFailure(f"{type(exc).__name__}: {exc}", retryable=True)
    return None


@dataclass
class RetryCounts:
    retries: int = 0
    rate_limited: int = 0


_T = TypeVar("_T")


async def call_with_retries(
    call: Callable[[], Awaitable[_T]],
    policy: RetryPolicy,
    *,
    clock: Sleeper,
    rng: random.Random,
    counts: RetryCounts,
    sink: str,
    what: str,
) -> tuple[_T, int]:
    """`call()` until it succeeds, fails permanently or runs out of attempts (AwsCallFailed).
    Returns the result and the number of attempts it took."""
    last = AwsFailure("no attempt made", retryable=True)
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return await call(), attempt
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if not failure.retryable:
                raise AwsCallFailed(failure, attempt) from None
            last = failure
            if failure.throttled:
                counts.rate_limited += 1
        if attempt < policy.max_attempts:
            delay = policy.backoff(attempt, rng)
            counts.retries += 1
            log.warning(
                "delivery_retried",
                sink=sink,
                call=what,
                attempt=attempt,
                error=last.text,
                delay=round(delay, 3),
            )
            await clock.sleep(delay)
    raise AwsCallFailed(
        AwsFailure(f"gave up after {policy.max_attempts} attempts, last: {last.text}", retryable=True),
        policy.max_attempts,
    )


def aws_client(
    service: str,
    *,
    region: str | None,
    endpoint_url: str | None,
    timeout_seconds: float,
    attempts: int = 1,
    credentials: Mapping[str, str] | None = None,
    read_timeout_seconds: float | None = None,
    max_pool_connections: int | None = None,
) -> AbstractAsyncContextManager[Any]:
    """An aiobotocore client; by default with botocore's own retries off (the callers retry with their
    own policy). The region and endpoint default to the standard environment (`AWS_REGION`,
    `AWS_ENDPOINT_URL`, the profile); `credentials` (keys of an assumed role) replace the chain's.
    `attempts` counts the first call; `read_timeout_seconds` defaults to `timeout_seconds`."""
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
    from aiobotocore.session import get_session  # type: ignore[import-untyped]

    pool = {} if max_pool_connections is None else {"max_pool_connections": max_pool_connections}
    client_config = AioConfig(
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds if read_timeout_seconds is None else read_timeout_seconds,
        **pool,
    )
    client: AbstractAsyncContextManager[Any] = get_session().create_client(
        service, region_name=region, endpoint_url=endpoint_url, config=client_config, **(credentials or {})
    )
    return client
