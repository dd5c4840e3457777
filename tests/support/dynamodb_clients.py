"""DynamoDB clients that wrap the real one (talking to moto in server mode) to count its requests or to
make one fail as DynamoDB can: throttled, or applied with its answer lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CountedRequests:
    """The DynamoDB client, with the requests made through it written down by operation."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: list[str] = []

    def __getattr__(self, operation: str) -> Any:
        self.requests.append(operation)
        return getattr(self.inner, operation)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.inner.__aexit__(*exc_info)


Pick = Callable[[str, dict[str, Any]], bool]  # (operation, request): whether this request fails


class Failing(CountedRequests):
    """The DynamoDB client, failing the first `times` requests `pick` picks as DynamoDB can: refused
    (throttled: nothing applied), or, with `applied`, applied and then timed out, as a request does whose
    answer never came back. `failed` counts them."""

    def __init__(self, inner: Any, pick: Pick, *, times: int = 1, applied: bool) -> None:
        super().__init__(inner)
        self.pick = pick
        self.times = times
        self.applied = applied
        self.failed = 0

    def __getattr__(self, operation: str) -> Any:
        method = super().__getattr__(operation)

        async def failing(**request: Any) -> Any:
            from botocore.exceptions import ClientError, ReadTimeoutError  # type: ignore[import-untyped]

            fails = self.failed < self.times and self.pick(operation, request)
            if fails and not self.applied:
                self.failed += 1
                error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
                raise ClientError(error, operation)
            answer = await method(**request)
            if fails:
                self.failed += 1
                raise ReadTimeoutError(endpoint_url="http://dynamodb")
            return answer

        return failing


def nth(operation: str, n: int) -> Pick:
    """The `n`th request of `operation` (counting from 1)."""
    seen = 0

    def picks(asked: str, request: dict[str, Any]) -> bool:
        nonlocal seen
        seen += asked == operation
        return asked == operation and seen == n

    return picks
