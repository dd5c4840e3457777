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


class AnswerLost(CountedRequests):
    """The DynamoDB client, losing the answer of the requests `lose` picks: each is applied, then the
    call times out, as a request does whose response never came back."""

    def __init__(self, inner: Any, lose: Callable[[str, dict[str, Any]], bool], times: int) -> None:
        super().__init__(inner)
        self.lose = lose
        self.times = times
        self.lost = 0

    def __getattr__(self, operation: str) -> Any:
        method = super().__getattr__(operation)

        async def answer_lost(**request: Any) -> Any:
            answer = await method(**request)
            if self.lost < self.times and self.lose(operation, request):
                from botocore.exceptions import ReadTimeoutError  # type: ignore[import-untyped]

                self.lost += 1
                raise ReadTimeoutError(endpoint_url="http://dynamodb")
            return answer

        return answer_lost


def adding(operation: str, request: dict[str, Any]) -> bool:
    """A request that adds a member as someone's: a set made, or a member added to one."""
    update = request.get("UpdateExpression", "")
    return operation == "put_item" or (update.startswith("SET") and "#by" in update)
