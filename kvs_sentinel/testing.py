"""Fakes for your own tests: a clock, a Slack webhook server, a Security Hub server, a recording sink,
in-memory messages.

`FakeSlackWebhook` is a real HTTP server on 127.0.0.1 that behaves like Slack's incoming-webhook endpoint:
it records every payload and answers what you script (`200 ok` unless told otherwise): 429 with
`Retry-After`, 5xx, 404 `no_service`, 410 `channel_is_archived`, a 200 whose body is not `ok` (a captive
proxy's HTML page: `SlackReply(200, "<html>…", content_type="text/html")`), or no answer until the client
gives up. `payloads` holds only what was delivered: the posts answered `200 ok`.

    async with FakeSlackWebhook() as slack:
        slack.script(SlackReply(429, "rate_limited", retry_after="3"), SlackReply(200, "ok"))
        ...  # point a SlackSink at slack.url
        assert slack.payloads[0]["blocks"][0]["type"] == "header"
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from kvs_sentinel.alerts import Alert
from kvs_sentinel.clock import Clock
from kvs_sentinel.envelopes import Document
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.sources.base import Unleased

FAKE_WEBHOOK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


class FakeClock:
    """A monotonic clock that moves only when told.

    With `autoadvance=True`, `sleep(s)` moves time forward by `s` at once (pacing and backoff cost no real
    time; `sleeps` records what was asked). Otherwise `sleep` waits until `advance()` passes its deadline.
    """

    def __init__(self, start: float = 1_000.0, *, autoadvance: bool = True) -> None:
        self.now = start
        self.autoadvance = autoadvance
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        if self.autoadvance:
            self.now += seconds
            await asyncio.sleep(0)  # a real sleep would yield to the loop: so does this one
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.now + seconds, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake the sleepers whose time has come."""
        self.now += seconds
        due = [(at, f) for at, f in self._waiters if at <= self.now]
        self._waiters = [(at, f) for at, f in self._waiters if at > self.now]
        for _, future in due:
            if not future.done():
                future.set_result(None)


@dataclass(frozen=True)
class SlackReply:
    status: int = 200
    body: str = "ok"
    retry_after: str | None = None
    hang: bool = False
    """Send nothing until the server closes: the client's timeout fires."""
    content_type: str = "text/plain"

    @property
    def delivers(self) -> bool:
        """What Slack answers when the message was posted: 200 and the body `ok`."""
        return self.status == 200 and self.body == "ok" and not self.hang


@dataclass(frozen=True)
class ReceivedPost:
    payload: dict[str, Any]
    path: str
    at: float
    """The time on the server's clock (a FakeClock's when one was given)."""
    answered: int
    delivered: bool = False
    """Answered `200 ok`: Slack would have posted it."""


class FakeSlackWebhook:
    def __init__(self, clock: Clock | None = None, path: str = FAKE_WEBHOOK_PATH) -> None:
        self.clock = clock
        self.path = path
        self.posts: list[ReceivedPost] = []
        self._replies: deque[SlackReply] = deque()
        self._default = SlackReply()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [post.payload for post in self.posts if post.delivered]

    def script(self, *replies: SlackReply) -> None:
        """Answer the next requests with these replies, in order; then `always`'s reply (200 ok)."""
        self._replies.extend(replies)

    def always(self, reply: SlackReply) -> None:
        self._default = reply

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = self.clock.monotonic() if self.clock else time.monotonic()
        if request.path != self.path:
            self.posts.append(ReceivedPost({}, request.path, now, 404))
            return web.Response(status=404, text="no_service")
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        reply = self._replies.popleft() if self._replies else self._default
        answered = 0 if reply.hang else reply.status
        self.posts.append(ReceivedPost(payload, request.path, now, answered, reply.delivers))
        if reply.hang:
            await self._release.wait()
            return web.Response(status=500, text="too_late")
        headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else None
        return web.Response(
            status=reply.status, text=reply.body, headers=headers, content_type=reply.content_type
        )

    async def start(self) -> FakeSlackWebhook:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlackWebhook:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class FakeSecurityHub:
    """A real HTTP server on 127.0.0.1 that speaks Security Hub's BatchImportFindings (JSON over HTTP), for
    what moto does not do: it answers 429 `throttle` times, then reports the finding ids in `fail` as
    FailedFindings (one error code per call, in order; `reject_containing` rejects every id containing
    that text with InvalidInput) and accepts the rest into `findings` (by Id: a re-import updates).
    While `hold` is set, replies wait until it is released. Point a sink's `endpoint_url` at `url`.

        async with FakeSecurityHub() as hub:
            hub.fail["kvs-sentinel/kvs-x/e-1"] = ["InternalException"]
            sink = SecurityHubSink("hub", SecurityHubConfig(endpoint_url=hub.url, region="eu-west-1",
                                                            account_id="111122223333"))
    """

    def __init__(self) -> None:
        self.throttle = 0
        self.fail: dict[str, list[str]] = {}
        self.reject_containing: str | None = None
        self.hold: asyncio.Event | None = None
        self.requests: list[list[str]] = []
        self.findings: dict[str, dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> list[str]:
        return list(self.findings)

    async def _handle(self, request: web.Request) -> web.Response:
        findings = (await request.json())["Findings"]
        self.requests.append([finding["Id"] for finding in findings])
        if self.hold is not None:
            await self.hold.wait()
        if self.throttle:
            self.throttle -= 1
            headers = {"x-amzn-ErrorType": "TooManyRequestsException"}
            return web.json_response({"message": "Rate exceeded"}, status=429, headers=headers)
        failed = []
        for finding in findings:
            codes = self.fail.get(finding["Id"])
            if self.reject_containing and self.reject_containing in finding["Id"]:
                codes = ["InvalidInput"]
            if codes:
                failed.append({"Id": finding["Id"], "ErrorCode": codes.pop(0), "ErrorMessage": "scripted"})
            else:
                self.findings[finding["Id"]] = finding
        answer = {"FailedCount": len(failed), "SuccessCount": len(findings) - len(failed)}
        return web.json_response(answer | {"FailedFindings": failed})

    async def start(self) -> FakeSecurityHub:
        app = web.Application()
        app.router.add_post("/findings/import", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSecurityHub:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class RecordingSink:
    """Keeps what it is sent; fails the next `fail_next` sends with `failure`."""

    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.alerts: list[Alert] = []
        self.fail_next = 0
        self.failure = DeliveryError("recording sink told to fail", retryable=True)
        self.flushes = 0
        self.closed = False

    async def send(self, alert: Alert) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise self.failure
        self.alerts.append(alert)

    async def flush(self) -> None:
        self.flushes += 1

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakeMessage(Unleased):
    """A source message whose ack/retry are recorded."""

    id: str
    documents: Sequence[Document]
    acked: bool = False
    retries: list[str] = field(default_factory=list)
    received_at: float = field(default_factory=time.monotonic)

    async def ack(self) -> None:
        self.acked = True

    async def retry(self, reason: str) -> None:
        self.retries.append(reason)


class ListSource:
    """A source that yields the given messages once."""

    def __init__(self, messages: Sequence[FakeMessage]) -> None:
        self.sent = list(messages)

    async def messages(self) -> AsyncGenerator[FakeMessage, None]:
        for message in self.sent:
            yield message

    async def aclose(self) -> None:
        return None
