"""Customer managed policies as IAM returns them, so that `run` can judge attaching one (optional).

CloudTrail's Attach*Policy events name a customer managed policy by ARN only. With
``service.iam_policy_lookup`` on, `run` reads the account's attached customer managed policies from
IAM at start-up and every ``iam_policy_refresh_seconds`` (ListPolicies, GetPolicyVersion), and any
policy a detector asked about and did not find (GetPolicy, GetPolicyVersion) within seconds. The
checks read the catalog synchronously: what it does not know yet is not judged (and is fetched for
next time). `replay` and `test` never call IAM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from kvs_sentinel.aws import aws_client
from kvs_sentinel.iam_policy import decode_policy_document, document_statements

__all__ = [
    "CustomerPolicy",
    "CustomerPolicyCatalog",
    "IamPolicyClient",
    "PolicyRefresher",
    "active_catalog",
    "iam_client",
    "read_policy",
    "refresh_attached",
    "start_policy_lookup",
    "use_catalog",
]

log = structlog.get_logger(__name__)

DEFAULT_MAX_POLICIES = 10_000  # an account holds at most 5,000 customer managed policies by default
MAX_WANTED = 1_000


class IamPolicyClient(Protocol):
    """The IAM calls we need (aiobotocore's client, or a fake)."""

    async def get_policy(self, **request: Any) -> Mapping[str, Any]: ...

    async def get_policy_version(self, **request: Any) -> Mapping[str, Any]: ...

    def get_paginator(self, operation: str) -> Any: ...


@dataclass(frozen=True)
class CustomerPolicy:
    arn: str
    version: str
    statements: tuple[Mapping[object, object], ...]
    read_at: float


class CustomerPolicyCatalog:
    """What the sentinel knows of customer managed policies, bounded; read synchronously by checks."""

    def __init__(
        self, max_policies: int = DEFAULT_MAX_POLICIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_policies = max_policies
        self.clock = clock
        self._policies: OrderedDict[str, CustomerPolicy] = OrderedDict()
        self.wanted: OrderedDict[str, None] = OrderedDict()  # asked for, not known: fetched next
        self.wanted_signal = asyncio.Event()

    def get(self, arn: str) -> CustomerPolicy | None:
        policy = self._policies.get(arn)
        if policy is None:
            if arn not in self.wanted and len(self.wanted) < MAX_WANTED:
                self.wanted[arn] = None
                self.wanted_signal.set()
            return None
        self._policies.move_to_end(arn)
        return policy

    def put(self, policy: CustomerPolicy) -> None:
        self._policies[policy.arn] = policy
        self._policies.move_to_end(policy.arn)
        self.wanted.pop(policy.arn, None)
        while len(self._policies) > self.max_policies:
            self._policies.popitem(last=False)

    def forget(self, arn: str) -> None:
        self._policies.pop(arn, None)
        self.wanted.pop(arn, None)

    def __len__(self) -> int:
        return len(self._policies)


_active: CustomerPolicyCatalog | None = None


def use_catalog(catalog: CustomerPolicyCatalog | None) -> None:
    """Make the checks consult this catalog (run, with iam_policy_lookup on); None turns it off."""
    global _active
    _active = catalog


def active_catalog() -> CustomerPolicyCatalog | None:
    return _active


def iam_client(region: str | None = None, attempts: int = 5) -> AbstractAsyncContextManager[IamPolicyClient]:
    """An aiobotocore IAM client: standard credential chain and environment (`AWS_ENDPOINT_URL_IAM`…).

    IAM is global; `region` only picks the partition's endpoint (cn-north-1 for aws-cn...)."""
    client: AbstractAsyncContextManager[IamPolicyClient] = aws_client(
        "iam",
        region=region or os.environ.get("AWS_REGION") or None,
        endpoint_url=None,
        timeout_seconds=10,
        read_timeout_seconds=30,
        attempts=attempts + 1,
    )
    return client


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping) and isinstance(error.get("Code"), str):
            return str(error["Code"])
    return None


def _policy(arn: str, version: str, document: object, now: float) -> CustomerPolicy:
    decoded = decode_policy_document(document) or {}
    return CustomerPolicy(arn, version, tuple(document_statements(decoded)), now)


async def read_policy(client: IamPolicyClient, arn: str, now: float) -> CustomerPolicy | None:
    """The policy's default version (GetPolicy, GetPolicyVersion); None when it does not exist."""
    try:
        found = await client.get_policy(PolicyArn=arn)
        version = found["Policy"]["DefaultVersionId"]
        body = await client.get_policy_version(PolicyArn=arn, VersionId=version)
    except Exception as exc:
        if _error_code(exc) == "NoSuchEntity":
            return None
        raise
    return _policy(arn, version, body["PolicyVersion"]["Document"], now)


async def refresh_attached(client: IamPolicyClient, catalog: CustomerPolicyCatalog) -> int:
    """Every attached customer managed policy's default version into the catalog; how many."""
    paginator = client.get_paginator("list_policies")
    count = 0
    async for page in paginator.paginate(Scope="Local", OnlyAttached=True):
        for entry in page.get("Policies", []):
            arn, version = entry["Arn"], entry["DefaultVersionId"]
            known = catalog.get(arn)
            if known is not None and known.version == version:
                continue  # unchanged since the last read (a new default version changes the id)
            body = await client.get_policy_version(PolicyArn=arn, VersionId=version)
            catalog.put(_policy(arn, version, body["PolicyVersion"]["Document"], catalog.clock()))
            count += 1
    return count


class PolicyRefresher:
    """Keeps the catalog filled: a full read every `refresh_seconds`, wanted policies within seconds."""

    def __init__(
        self, client: IamPolicyClient, catalog: CustomerPolicyCatalog, refresh_seconds: float
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.refresh_seconds = refresh_seconds

    async def start(self) -> None:
        """The first full read; raises if IAM refuses it, so a missing permission shows at start-up."""
        count = await refresh_attached(self.client, self.catalog)
        log.info("customer_policies_read", policies=count)

    async def run(self) -> None:
        last_full = self.catalog.clock()
        while True:
            wait = max(0.0, last_full + self.refresh_seconds - self.catalog.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.catalog.wanted_signal.wait(), timeout=wait)
            self.catalog.wanted_signal.clear()
            try:
                await self._fetch_wanted()
                if self.catalog.clock() >= last_full + self.refresh_seconds:
                    await refresh_attached(self.client, self.catalog)
                    last_full = self.catalog.clock()
            except Exception as exc:  # IAM throttling or an outage: keep what is known, try again later
                log.warning("customer_policies_refresh_failed", error=repr(exc)[:300])
                await asyncio.sleep(min(30.0, self.refresh_seconds))

    async def _fetch_wanted(self) -> None:
        while self.catalog.wanted:
            arn = next(iter(self.catalog.wanted))
            policy = await read_policy(self.client, arn, self.catalog.clock())
            if policy is None:
                self.catalog.wanted.pop(arn, None)  # no such policy: not asked again until asked again
            else:
                self.catalog.put(policy)


IamFactory = Callable[[], AbstractAsyncContextManager[IamPolicyClient]]


async def start_policy_lookup(
    stack: contextlib.AsyncExitStack, refresh_seconds: float, factory: IamFactory = iam_client
) -> CustomerPolicyCatalog:
    """For `run`: read the attached customer managed policies, keep them fresh until `stack` closes,
    and make the checks consult them. Raises when IAM refuses the first read (a missing permission)."""
    client = await stack.enter_async_context(factory())
    catalog = CustomerPolicyCatalog()
    refresher = PolicyRefresher(client, catalog, refresh_seconds)
    await refresher.start()
    task = asyncio.create_task(refresher.run(), name="customer-policy-refresher")

    async def stop() -> None:
        use_catalog(None)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    use_catalog(catalog)
    return catalog
