"""Secrets out of every log line and error message: Slack webhook URLs above all.

A Slack incoming-webhook URL is a bearer credential: anyone holding it can post into the channel. We keep
the team id (it names the workspace, which helps whoever reads the log) and drop the rest:
`https://hooks.slack.com/services/T0123/B0456/abcd` → `https://hooks.slack.com/services/T0123/…/[redacted]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

# services/ (incoming webhooks), workflows/ and triggers/ (Workflow Builder) on Slack and Slack GovSlack.
_SLACK_HOOK = re.compile(
    r"(?P<head>https?://hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/)"
    r"(?P<team>T[A-Z0-9]+)?(?P<rest>[^\s\"'<>]*)",
    re.IGNORECASE,
)
_HOOK_PATH = re.compile(r"/(services|workflows|triggers)/(T[A-Z0-9]+)/", re.IGNORECASE)
REDACTED = "[redacted]"


def _hook(match: re.Match[str]) -> str:
    team = match.group("team")
    return f"{match.group('head')}{team}/…/{REDACTED}" if team else f"{match.group('head')}{REDACTED}"


def redact_url(url: str) -> str:
    """The form of `url` that may be logged: scheme, host and port kept, the path and query hidden."""
    if _SLACK_HOOK.match(url):
        return _SLACK_HOOK.sub(_hook, url)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return REDACTED
    hook = _HOOK_PATH.match(parts.path)
    if hook:  # a webhook-shaped path on another host (a proxy, a test server): same redacted shape
        path = f"/{hook.group(1)}/{hook.group(2)}/…/{REDACTED}"
    else:
        path = f"/{REDACTED}" if parts.path not in ("", "/") else ""
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every Slack webhook URL and every string in `secrets` replaced by its redacted form."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, redact_url(secret))
    return _SLACK_HOOK.sub(_hook, text)
