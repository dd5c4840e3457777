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


class Refused(CountedRequests):
    """The DynamoDB client, throttling the requests `refuse` picks (each applied nothing), `times` times."""

    def __init__(self, inner: Any, refuse: Callable[[str, dict[str, Any]], bool], times: int) -> None:
        super().__init__(inner)
        self.refuse = refuse
        self.times = times
        self.refused = 0

    def __getattr__(self, operation: str) -> Any:
        method = super().__getattr__(operation)

        async def refused(**request: Any) -> Any:
            if self.refused < self.times and self.refuse(operation, request):
                from botocore.exceptions import ClientError  # type: ignore[import-untyped]

                self.refused += 1
                error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
                raise ClientError(error, operation)
            return await method(**request)

        return refused
