"""AWS Security Hub: each alert as an ASFF finding (see asff.py), imported with BatchImportFindings.

Batching: `send` only queues the alert; `flush` (called before a message is acknowledged) waits
`batch_window_seconds` so that alerts from the other workers' messages join the batch, then imports
what is queued in calls of at most 100 findings. `flush` returns only once every alert its own task
sent was accepted, and raises DeliveryError naming the ones that were not: a message is never
acknowledged before Security Hub accepted its findings, and one finding that fails does not fail the
others in its batch (their messages are acknowledged).

Failures: a whole call that is throttled or fails with 5xx or a network error is retried with
exponential backoff (aws.py); findings Security Hub reports in `FailedFindings` with a transient code
are imported again, the rest fail at once (`InvalidInput`: retrying cannot help). After the last
attempt the alert's message fails retryably: SQS delivers it again later, then to the DLQ.

Finding ids are stable (detector + eventID), so a redelivered event updates its finding.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field

from kvs_sentinel.alerts import Alert
from kvs_sentinel.aws import (
    AwsCallFailed,
    AwsFailure,
    RetryCounts,
    aws_client,
    call_with_retries,
)
from kvs_sentinel.clock import SYSTEM_CLOCK, Clock
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.retry import RetryPolicy
from kvs_sentinel.sinks.asff import asff_finding
from kvs_sentinel.sinks.base import SinkContext, SinkCounts, register_sink

log = structlog.get_logger("kvs_sentinel.sinks.securityhub")

MAX_BATCH = 100  # BatchImportFindings: at most 100 findings (and 6 MB) per call
# FailedFindings codes that no retry can fix; any other code is retried.
PERMANENT_CODES = frozenset({"InvalidInput", "InvalidInputException", "AccessDeniedException"})


class SecurityHubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    region: str | None = Field(None, description="default: AWS_REGION (the hub the findings go to)")
    account_id: str | None = Field(
        None, pattern=r"^\d{12}$", description="the importing account; default: the caller's (STS)"
    )
    endpoint_url: str | None = None
    batch_window_seconds: float = Field(
        0.25, ge=0, le=10, description="how long a flush waits for other messages' alerts to batch with"
    )
    timeout_seconds: float = Field(10, gt=0, le=60)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_seconds: float = Field(0.5, ge=0)
    backoff_max_seconds: float = Field(20, ge=0)


class SecurityHubClient(Protocol):
    """The call we make on a Security Hub client (aiobotocore's)."""

    async def batch_import_findings(self, **request: Any) -> Mapping[str, Any]: ...


ClientFactory = Callable[[str, SecurityHubConfig], AbstractAsyncContextManager[Any]]


def aiobotocore_client(service: str, config: SecurityHubConfig) -> AbstractAsyncContextManager[Any]:
    """The shared AWS client, for `securityhub` (and `sts` to learn the account)."""
    return aws_client(
        service,
        region=config.region,
        endpoint_url=config.endpoint_url,
        timeout_seconds=config.timeout_seconds,
    )


@dataclass(eq=False)
class _Queued:
    alert: Alert
    outcome: asyncio.Future[DeliveryError | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, error: DeliveryError | None) -> None:
        if not self.outcome.done():
            self.outcome.set_result(error)


@register_sink("securityhub")
class SecurityHubSink:
    Config: ClassVar[type[BaseModel]] = SecurityHubConfig
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        name: str,
        config: SecurityHubConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        client_factory: ClientFactory = aiobotocore_client,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.client_factory = client_factory
        self.rng = rng or random.Random()
        self.now = now
        self.counts = SinkCounts()
        self.calls = 0
        self.policy = RetryPolicy(
            config.max_attempts, config.backoff_base_seconds, config.backoff_max_seconds
        )
        self._queue: list[_Queued] = []
        self._sent_by: weakref.WeakKeyDictionary[asyncio.Task[Any], list[_Queued]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = asyncio.Lock()
        self._stack = AsyncExitStack()
        self._client: SecurityHubClient | None = None
        self._region: str | None = config.region
        self._account: str | None = config.account_id

    @classmethod
    def from_config(cls, name: str, config: Any, context: SinkContext) -> SecurityHubSink:
        assert isinstance(config, SecurityHubConfig)
        return cls(name, config, clock=context.clock)

    async def send(self, alert: Alert) -> None:
        """Queue the alert; `flush` imports it."""
        queued = _Queued(alert)
        self._queue.append(queued)
        task = asyncio.current_task()
        assert task is not None
        self._sent_by.setdefault(task, []).append(queued)

    async def flush(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        mine = self._sent_by.pop(task, [])
        if not mine:
            return
        if self.config.batch_window_seconds:
            await self.clock.sleep(self.config.batch_window_seconds)
        async with self._lock:
            while self._queue and not all(queued.outcome.done() for queued in mine):
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._import(batch)
        self._settle_failed(mine, AwsFailure("not imported (no flush took it)", retryable=True))
        failed = [error for queued in mine if (error := queued.outcome.result()) is not None]
        if failed:
            retryable = any(error.retryable for error in failed)
            raise DeliveryError(
                f"security hub: {len(failed)} of {len(mine)} findings not imported, first: {failed[0]}",
                retryable=retryable,
            )

    async def _import(self, batch: list[_Queued]) -> None:
        """Import `batch`, settling each entry: None when accepted, else its DeliveryError."""
        try:
            client = await self._open()
            account, region = self._account, self._region
            assert account is not None
            assert region is not None
            now = self.now()
            findings: dict[str, dict[str, Any]] = {}
            by_id: dict[str, list[_Queued]] = {}
            for queued in batch:
                finding = asff_finding(queued.alert, account=account, region=region, now=now)
                findings.setdefault(finding["Id"], finding)
                by_id.setdefault(finding["Id"], []).append(queued)
            await self._import_findings(client, findings, by_id)
        except AwsCallFailed as exc:
            self._settle_failed(batch, exc.failure)
        finally:  # cancelled, or an unexpected error: whatever is unsettled was not accepted
            self._settle_failed(batch, AwsFailure("import interrupted", retryable=True))

    async def _import_findings(
        self, client: SecurityHubClient, findings: dict[str, dict[str, Any]], by_id: dict[str, list[_Queued]]
    ) -> None:
        remaining = list(findings)
        last: dict[str, AwsFailure] = {}
        for attempt in range(1, self.policy.max_attempts + 1):
            request = [findings[finding_id] for finding_id in remaining]
            response = await self._call(client, request)
            failed = {str(f.get("Id")): f for f in response.get("FailedFindings", [])}
            retry: list[str] = []
            for finding_id in remaining:
                problem = failed.get(finding_id)
                if problem is None:
                    for queued in by_id[finding_id]:
                        self.counts.success(self.name, queued.alert, finding_id=finding_id, attempts=attempt)
                        queued.settle(None)
                    continue
                code = str(problem.get("ErrorCode", "Unknown"))
                failure = AwsFailure(
                    f"{code}: {problem.get('ErrorMessage', '')}".rstrip(": "),
                    retryable=code not in PERMANENT_CODES,
                    throttled="Throttl" in code,
                )
                if failure.retryable:
                    self.counts.rate_limited += failure.throttled
                    retry.append(finding_id)
                    last[finding_id] = failure
                else:
                    self._settle_failed(by_id[finding_id], failure)
            remaining = retry
            if not remaining:
                return
            if attempt < self.policy.max_attempts:
                delay = self.policy.backoff(attempt, self.rng)
                self.counts.retries += 1
                log.warning(
                    "findings_retried", sink=self.name, findings=len(remaining), attempt=attempt, delay=delay
                )
                await self.clock.sleep(delay)
        for finding_id in remaining:
            failure = last[finding_id]
            text = f"gave up after {self.policy.max_attempts} attempts, last: {failure.text}"
            self._settle_failed(by_id[finding_id], AwsFailure(text, retryable=True))

    async def _call(self, client: SecurityHubClient, findings: list[dict[str, Any]]) -> Mapping[str, Any]:
        retries = RetryCounts()

        async def call() -> Mapping[str, Any]:
            self.calls += 1
            return await client.batch_import_findings(Findings=findings)

        try:
            response, _ = await call_with_retries(
                call,
                self.policy,
                clock=self.clock,
                rng=self.rng,
                counts=retries,
                sink=self.name,
                what="securityhub:BatchImportFindings",
            )
        finally:
            self.counts.retries += retries.retries
            self.counts.rate_limited += retries.rate_limited
        return response

    async def _open(self) -> SecurityHubClient:
        """The client, the hub's region and the importing account (looked up once)."""
        if self._client is None:
            client = await self._stack.enter_async_context(self.client_factory("securityhub", self.config))
            self._region = self._region or client.meta.region_name
            self._client = client
        if not self._region:
            failure = AwsFailure("no region: set the sink's region or AWS_REGION", retryable=False)
            raise AwsCallFailed(failure, 0)
        if self._account is None:
            async with self.client_factory("sts", self.config) as sts:
                identity, _ = await call_with_retries(
                    sts.get_caller_identity,
                    self.policy,
                    clock=self.clock,
                    rng=self.rng,
                    counts=RetryCounts(),
                    sink=self.name,
                    what="sts:GetCallerIdentity",
                )
            self._account = str(identity["Account"])
        return self._client

    def _settle_failed(self, entries: list[_Queued], failure: AwsFailure) -> None:
        for queued in entries:
            if not queued.outcome.done():
                message = f"security hub ({self._region or 'default region'}): {failure.text}"
                queued.settle(
                    self.counts.failure(self.name, queued.alert, message, retryable=failure.retryable)
                )

    async def aclose(self) -> None:
        """Queued alerts that no flush imported fail (their messages were not acknowledged)."""
        self._settle_failed(self._queue, AwsFailure("sink closed before the import", retryable=True))
        self._queue.clear()
        await self._stack.aclose()
        self._client = None


__all__ = ["MAX_BATCH", "SecurityHubConfig", "SecurityHubSink"]
