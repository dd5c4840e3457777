"""Slack incoming webhooks: a Block Kit message people want to read, paced, retried, never injectable.

Every value taken from an event is attacker-controlled. In the fields it is shown only inside inline code
(no formatting) of `verbatim` mrkdwn (no auto-linking), in the header and summary as `plain_text` without
emoji, and in the top-level `text` neutralised for mrkdwn (see slack_text): `&`, `<`, `>` escaped (no
`<!channel>`, no `<https://evil|disguised link>`), hidden and bidi characters shown as escapes (see
reveal), clipped to Slack's limits. The only live markup is ours: the link to the event in the
CloudTrail console, built from a validated region and event id.

Delivery: one message per second per webhook (Slack's limit), shared by every sink and worker posting to
the same URL; 429 `Retry-After` pauses that webhook; 5xx and timeouts retry with exponential backoff and
jitter up to `max_attempts`; 4xx (revoked webhook, archived channel…) fail at once and are counted. Only
Slack's `ok` is a delivery: a 2xx with any other body (a captive proxy's page) is retried like a 5xx.
"""

from __future__ import annotations

import json
import random
import re
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, NoReturn, Protocol
from urllib.parse import quote, urlsplit

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from kvs_sentinel import __version__
from kvs_sentinel.alerts import Alert, action_of
from kvs_sentinel.clock import SYSTEM_CLOCK, Clock
from kvs_sentinel.redact import redact, redact_url
from kvs_sentinel.retry import RetryPolicy
from kvs_sentinel.reveal import reveal
from kvs_sentinel.sinks.base import SinkContext, SinkCounts, register_sink
from kvs_sentinel.sinks.shared_pacing import Pacing, SharedPacer
from kvs_sentinel.sinks.slack_text import code, fit, mrkdwn_prose, notification, plain

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger("kvs_sentinel.sinks.slack")

HEADER_LIMIT = 150  # Block Kit limits
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
CONTEXT_LIMIT = 2000
FALLBACK_LIMIT = 3000
SEVERITY_ICON = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":large_blue_circle:",
    "info": ":white_circle:",
}
_REGION = re.compile(r"(?:[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d)")
_EVENT_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
_PERMANENT_HINTS = {
    "no_service": "the webhook was revoked or its app removed: create a new webhook",
    "no_team": "the webhook's workspace no longer exists",
    "channel_not_found": "the webhook's channel was deleted: create a new webhook",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a new webhook",
    "invalid_token": "the webhook URL is invalid: check ${SLACK_WEBHOOK_URL}",
    "action_prohibited": "a workspace admin restricts posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "invalid_payload": "Slack rejected the message format (a kvs-sentinel bug: please report it)",
}


# ---------------------------------------------------------------- rendering


def console_url(alert: Alert) -> str | None:
    """The event in the CloudTrail console, when region and event id look like what AWS issues."""
    region, event_id = alert.region or "", alert.event_id or ""
    if not _REGION.fullmatch(region) or not _EVENT_ID.fullmatch(event_id):
        return None
    if region.startswith("us-gov-"):
        host = "console.amazonaws-us-gov.com"
    elif region.startswith("cn-"):
        host = "console.amazonaws.cn"
    else:
        host = f"{region}.console.aws.amazon.com"
    return f"https://{host}/cloudtrailv2/home?region={region}#/events/{quote(event_id, safe='-')}"


def _mrkdwn(body: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": body, "verbatim": True}


def _field(label: str, value: str) -> dict[str, Any]:
    return _mrkdwn(f"*{label}*\n{value}")


def slack_message(alert: Alert) -> dict[str, Any]:
    """The webhook payload for one alert: Block Kit blocks plus a plain-text fallback (see slack_text)."""
    severity = alert.severity.upper()
    icon = SEVERITY_ICON.get(alert.severity, ":white_circle:")
    action = action_of(alert.event_source, alert.event_name)
    principal = code(alert.principal)
    if alert.principal_type:
        principal += " · " + code(alert.principal_type, 64)
    where = " / ".join(code(v, 64) for v in (alert.account, alert.region) if v) or "—"
    fields = [
        _field("Principal", principal),
        _field("Action", code(action)),
        _field("Resource", code(alert.resource)),
        _field("Source IP", code(alert.source_ip, 128)),
        _field("Account / region", where),
        _field("Time", code(alert.event_time, 64)),
        _field("User agent", code(alert.user_agent)),
    ]
    if alert.access_key_id:
        fields.append(_field("Access key", code(alert.access_key_id, 128)))
    if alert.error_code:
        error = code(alert.error_code, 128)
        if alert.error_message:
            error += " " + code(alert.error_message)
        fields.append(_field("Denied", error))
    if alert.escalated_because:
        fields.append(_field("Escalated", mrkdwn_prose(alert.escalated_because, 300)))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": plain(f"{severity} · {alert.title}", HEADER_LIMIT),
                "emoji": False,
            },
        },
        {
            "type": "section",
            "text": {
                "type": "plain_text",
                "text": plain(alert.summary, SECTION_LIMIT),
                "emoji": False,
            },
        },
        {"type": "section", "fields": [{**f, "text": fit(f["text"], FIELD_LIMIT)} for f in fields]},
        {"type": "section", "text": _mrkdwn("*Remediation*\n" + mrkdwn_prose(alert.remediation, 2980))},
    ]
    context = [f"{icon} {severity}", f"detector {code(alert.detector, 128)}", f"event {code(alert.event_id)}"]
    if alert.practice:
        context.append(f"practice {code(alert.practice, 64)}")
    url = console_url(alert)
    if url:
        context.append(f"<{url}|View in the CloudTrail console>")
    blocks.append(
        {"type": "context", "elements": [_mrkdwn(fit(element, CONTEXT_LIMIT)) for element in context]}
    )
    fallback = f"[{severity}] {alert.title}: {alert.summary}"
    return {
        "text": notification(fallback, FALLBACK_LIMIT),
        "mrkdwn": False,
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def text_only(payload: dict[str, Any]) -> dict[str, Any]:
    """The same message without blocks: the fallback when Slack rejects the blocks (invalid_blocks)."""
    return {key: value for key, value in payload.items() if key != "blocks"}


# ---------------------------------------------------------------- transport and pacing


class WebhookReply(NamedTuple):
    status: int
    body: str
    retry_after: str | None = None


class WebhookTransport(Protocol):
    """One POST. Raises ConnectionError or TimeoutError when no reply came."""

    async def post(self, url: str, body: bytes, timeout_seconds: float) -> WebhookReply: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, timeout_seconds: float) -> WebhookReply:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Content-Type": "application/json", "User-Agent": f"kvs-sentinel/{__version__}"}
            )
        try:
            async with self._session.post(
                url, data=body, timeout=aiohttp.ClientTimeout(total=timeout_seconds), allow_redirects=False
            ) as response:
                reply = (await response.content.read(2048)).decode("utf-8", "replace")
                return WebhookReply(response.status, reply, response.headers.get("Retry-After"))
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Pacer:
    """At most one post per `interval` for one webhook, across every task using it; 429s pause it."""

    def __init__(self, clock: Clock, interval: float) -> None:
        self.clock = clock
        self.interval = interval
        self._next = float("-inf")
        self._paused_until = float("-inf")

    async def wait(self) -> None:
        while True:
            now = self.clock.monotonic()
            slot = max(now, self._next, self._paused_until)
            self._next = slot + self.interval
            if slot > now:
                await self.clock.sleep(slot - now)
            if self.clock.monotonic() >= self._paused_until:
                return

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self.clock.monotonic() + seconds)
        self._next = max(self._next, self._paused_until)


# ---------------------------------------------------------------- the sink


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    webhook_url: SecretStr = Field(description="write it as ${SLACK_WEBHOOK_URL}, never in the file")
    timeout_seconds: float = Field(10, gt=0, le=60)
    min_interval_seconds: float = Field(1.0, ge=0, description="Slack allows ~1 message/s per webhook")
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_seconds: float = Field(1.0, ge=0)
    backoff_max_seconds: float = Field(30, ge=0)
    max_retry_after_seconds: float = Field(
        120, ge=0, description="a longer 429 Retry-After leaves the alert to the message's redelivery"
    )

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, url: SecretStr) -> SecretStr:
        try:
            parts = urlsplit(url.get_secret_value())
            host = parts.hostname or ""
            port = parts.port
        except ValueError:
            raise ValueError("not a URL, or its port is not 1-65535") from None
        if port == 0:
            raise ValueError("its port is not 1-65535")
        loopback = host in ("127.0.0.1", "::1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError("must be an https:// URL (http:// only to a loopback address, for tests)")
        if not host or parts.path in ("", "/"):
            raise ValueError("must be a full incoming-webhook URL (https://hooks.slack.com/services/...)")
        return url


@register_sink("slack")
class SlackSink:
    Config: ClassVar[type[BaseModel]] = SlackConfig
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url",)

    def __init__(
        self,
        name: str,
        config: SlackConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        pacer: Pacing | None = None,
        transport: WebhookTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.pacer: Pacing = pacer or Pacer(clock, config.min_interval_seconds)
        self.transport = transport or AiohttpTransport()
        self.rng = rng or random.Random()
        self.counts = SinkCounts()
        self._url = config.webhook_url.get_secret_value()
        self.safe_url = redact_url(self._url)

    @classmethod
    def from_config(cls, name: str, config: Any, context: SinkContext) -> SlackSink:
        assert isinstance(config, SlackConfig)
        url = config.webhook_url.get_secret_value()
        pacer = context.shared.get(("slack", url))
        if pacer is None:
            pacer = Pacer(context.clock, config.min_interval_seconds)
            if context.shared_state is not None:  # every task shares the webhook's pace
                pacer = SharedPacer(
                    pacer, context.shared_state, url, config.min_interval_seconds, context.clock
                )
            context.shared["slack", url] = pacer
        return cls(name, config, clock=context.clock, pacer=pacer)

    def _redact(self, message: str) -> str:
        return redact(message, (self._url,))

    def backoff(self, attempt: int) -> float:
        """Exponential with equal jitter: in [d/2, d] for d = base * 2**(attempt-1), capped."""
        policy = RetryPolicy(
            self.config.max_attempts, self.config.backoff_base_seconds, self.config.backoff_max_seconds
        )
        return policy.backoff(attempt, self.rng)

    async def send(self, alert: Alert) -> None:
        payload = slack_message(alert)
        last = "no attempt made"
        attempt = 0
        while attempt < self.config.max_attempts:
            attempt += 1
            await self.pacer.wait()
            body = json.dumps(payload, ensure_ascii=False).encode()
            try:
                reply = await self.transport.post(self._url, body, self.config.timeout_seconds)
            except (TimeoutError, ConnectionError, OSError) as exc:
                last = self._redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                delay = self.backoff(attempt)
            else:
                if 200 <= reply.status < 300 and accepted(reply.body):
                    self.counts.success(self.name, alert, attempts=attempt)
                    return
                error = " ".join(reveal(reply.body)[:100].split()) or "(no body)"
                last = f"HTTP {reply.status} {error}"
                if 200 <= reply.status < 300:
                    # Not Slack's answer: most likely a captive proxy or a URL that is not a webhook.
                    # Nothing says the message was posted, so it is not a delivery; retrying may help
                    # (a proxy that lets us through later), and giving up leaves the SQS message for
                    # redelivery.
                    last += " (a 2xx without Slack's `ok`: a proxy, or not a Slack webhook URL?)"
                    delay = self.backoff(attempt)
                elif reply.status == 400 and "invalid_blocks" in error and "blocks" in payload:
                    log.warning("slack_blocks_rejected", sink=self.name, error=error)
                    payload = text_only(payload)  # the plain-text fallback still tells the story
                    continue
                if reply.status == 429:
                    self.counts.rate_limited += 1
                    delay = _seconds(reply.retry_after, default=self.backoff(attempt))
                    if delay > self.config.max_retry_after_seconds:
                        self._fail(alert, f"rate limited for {delay:g} s (Retry-After)", True)
                    self.pacer.pause(delay)
                    delay = 0.0
                elif 400 <= reply.status < 500 and reply.status != 408:
                    hint = _PERMANENT_HINTS.get(
                        error.split()[0] if error else "", "Slack refused the message"
                    )
                    self._fail(alert, f"{last}: {hint}", False)
                else:
                    delay = self.backoff(attempt)
            if attempt < self.config.max_attempts:
                self.counts.retries += 1
                log.warning(
                    "delivery_retried",
                    sink=self.name,
                    url=self.safe_url,
                    attempt=attempt,
                    error=last,
                    delay=round(delay, 3),
                )
                await self.clock.sleep(delay)
        self._fail(alert, f"gave up after {attempt} attempts, last: {last}", True)

    def _fail(self, alert: Alert, reason: str, retryable: bool) -> NoReturn:
        message = self._redact(f"slack webhook {self.safe_url}: {reason}")
        raise self.counts.failure(self.name, alert, message, retryable=retryable)

    async def flush(self) -> None:
        """Nothing buffered: `send` returns only once Slack accepted the message."""

    async def aclose(self) -> None:
        await self.transport.aclose()


def accepted(body: str) -> bool:
    """Slack posted the message: incoming webhooks answer `ok`, Workflow Builder webhooks `{"ok": true}`."""
    body = body.strip()
    if body == "ok":
        return True
    try:
        reply = json.loads(body)
    except ValueError:
        return False
    return isinstance(reply, dict) and reply.get("ok") is True


def _seconds(value: str | None, *, default: float) -> float:
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        return default
    return seconds if seconds >= 0 else default
