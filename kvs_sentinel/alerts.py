"""The Alert value: what every sink receives, built from a detector and the event it matched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from kvs_sentinel.detectors.compiler import PLACEHOLDER, Detector, SummaryTemplate
from kvs_sentinel.events import Event
from kvs_sentinel.severity import Severity

_MAX_PLACEHOLDER = 200
# requestParameters keys that name the thing acted on, most specific first.
_RESOURCE_KEYS = (
    "streamARN",
    "streamName",
    "channelARN",
    "ChannelARN",
    "channelName",
    "resourceARN",
    "ResourceARN",
    "policyArn",
    "roleName",
    "userName",
    "groupName",
    "policyName",
    "trailName",
    "rule",
    "name",
    "Name",
    "eventDataStore",
    "queueUrl",
    "QueueUrl",
    "topicArn",
    "TopicArn",
    "subscriptionArn",
    "SubscriptionArn",
)


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    detector: str
    severity: str
    title: str
    summary: str
    practice: str | None
    tags: tuple[str, ...]
    event_id: str | None
    event_time: str | None
    event_source: str | None
    event_name: str | None
    principal: str | None
    principal_type: str | None
    source_ip: str | None
    user_agent: str | None
    access_key_id: str | None
    account: str | None
    region: str | None
    resource: str | None
    error_code: str | None
    error_message: str | None
    remediation: str
    escalated_because: str | None = None
    details: dict[str, Any] = {}
    location: str | None = None
    form: str | None = None

    @property
    def detector_failed(self) -> bool:
        return DETECTOR_FAILED_TAG in self.tags


# Tags the alert that says a detector raised on an event instead of judging it.
DETECTOR_FAILED_TAG = "detector-failed"


def is_denial(error_code: str) -> bool:
    """AccessDenied(Exception), Client.UnauthorizedOperation, SNS AuthorizationError…: IAM said no,
    as opposed to other failures (TrailNotFoundException, ThrottlingException…)."""
    lowered = error_code.lower()
    return any(word in lowered for word in ("accessdenied", "unauthorized", "authorization", "forbidden"))


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _identity(event: Event) -> Mapping[str, Any]:
    identity = event.lazy("userIdentity")
    return identity if isinstance(identity, dict) else {}


def principal_of(identity: Mapping[str, Any]) -> str | None:
    return (
        _text(identity.get("arn"))
        or _text(identity.get("invokedBy"))
        or _text(identity.get("principalId"))
        or _text(identity.get("userName"))
    )


def resource_of(event: Event) -> str | None:
    parameters = event.lazy("requestParameters")
    if isinstance(parameters, dict):
        for key in _RESOURCE_KEYS:
            value = _text(parameters.get(key))
            if value:
                return value
    resources = event.lazy("resources")
    if isinstance(resources, list):
        for resource in resources:
            if isinstance(resource, dict) and _text(resource.get("ARN")):
                return _text(resource.get("ARN"))
    return None


def action_of(event_source: str | None, event_name: str | None) -> str:
    service = (event_source or "?").removesuffix(".amazonaws.com")
    return f"{service}:{event_name or '?'}"


def build_alert(detector: Detector, event: Event, severity: Severity, escalated_because: str | None) -> Alert:
    fields = event_fields(event)
    details: dict[str, Any] = {}
    if detector.author:
        details["author"] = detector.author
    if detector.references:
        details["references"] = list(detector.references)
    for check in detector.checks:
        result = check.result(event)
        if result:
            details.update(result)
    summary = render_summary(detector.summary, fields, event)
    if fields["error_code"]:
        outcome = "was denied" if is_denial(fields["error_code"]) else "failed"
        summary += f" The call {outcome} ({fields['error_code']})."
    return Alert(
        detector=detector.id,
        severity=str(severity),
        title=detector.title,
        summary=summary,
        practice=detector.practice,
        tags=detector.tags,
        remediation=detector.remediation,
        escalated_because=escalated_because,
        details=details,
        location=event.where(),
        form=event.form,
        **fields,
    )


def build_failure_alert(detector: Detector, event: Event, error: BaseException) -> Alert:
    """The alert for a detector that raised on an event: the event may be a violation nobody judged, so
    it is said, at the detector's own severity and under its id (its routes apply), instead of only logged.
    """
    fields = event_fields(event)
    action = action_of(fields["event_source"], fields["event_name"])
    return Alert(
        detector=detector.id,
        severity=str(detector.severity),
        title=f"Detector failed: {detector.title}",
        summary=(
            f"kvs-sentinel could not judge {action} by {fields['principal'] or '(unknown principal)'} "
            f"against this detector ({type(error).__name__}); the event may be a violation. "
            "Review it by hand and report the error."
        ),
        practice=detector.practice,
        tags=(*detector.tags, DETECTOR_FAILED_TAG),
        remediation=detector.remediation,
        details={"detector_error": f"{type(error).__name__}: {error}"[:_MAX_ERROR_TEXT]},
        location=event.where(),
        form=event.form,
        **fields,
    )


_MAX_ERROR_TEXT = 500


def event_fields(event: Event) -> dict[str, Any]:
    """The alert fields taken from the event: one per name in alert_fields.EVENT_FIELDS."""
    doc = event.doc
    identity = _identity(event)
    envelope = event.envelope
    return {
        "event_id": _text(doc.eventID),
        "event_time": _text(doc.eventTime),
        "event_source": _text(doc.eventSource),
        "event_name": _text(doc.eventName),
        "principal": principal_of(identity),
        "principal_type": _text(identity.get("type")),
        "source_ip": _text(doc.sourceIPAddress),
        "user_agent": _text(doc.userAgent),
        "access_key_id": _text(identity.get("accessKeyId")),
        "account": _text(doc.recipientAccountId)
        or _text(identity.get("accountId"))
        or (_text(envelope.account) if envelope else None),
        "region": _text(doc.awsRegion) or (_text(envelope.region) if envelope else None),
        "resource": resource_of(event),
        "error_code": _text(doc.errorCode),
        "error_message": _text(doc.errorMessage),
    }


def render_summary(template: SummaryTemplate, fields: Mapping[str, Any], event: Event) -> str:
    def value(name: str) -> str:
        if name == "action":
            found: Any = action_of(fields["event_source"], fields["event_name"])
        elif name in fields:
            found = fields[name]
        else:
            found = template.event_fields[name](event)
        if found is None or found == "":
            return "(none)"
        if isinstance(found, list):
            found = ", ".join(str(item) for item in found)
        text = str(found)
        return text if len(text) <= _MAX_PLACEHOLDER else text[: _MAX_PLACEHOLDER - 1] + "…"

    parts = []
    last = 0
    for match in PLACEHOLDER.finditer(template.text):
        parts.append(template.text[last : match.start()])
        parts.append(value(match.group(1)))
        last = match.end()
    parts.append(template.text[last:])
    return "".join(parts)


ALERT_ENCODER = msgspec.json.Encoder()
