"""What the finding formats (ASFF for Security Hub, OCSF for Security Lake) share about an alert.

A finding's id is stable: the same detector on the same CloudTrail event gives the same id, so a
redelivered message updates the finding instead of adding a duplicate. Without an eventID the id is a
hash of what the alert says about the event. A grouped summary gets its own id.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import msgspec

from kvs_sentinel.alerts import Alert

PRODUCT_NAME = "kvs-sentinel"
VENDOR_NAME = "kvs-sentinel"
_TECHNIQUE = re.compile(r"^mitre-attack:(T\d{4}(?:\.\d{3})?)$", re.IGNORECASE)
BEST_PRACTICES = "Software and Configuration Checks/AWS Security Best Practices"
# MITRE ATT&CK techniques (without sub-technique) → the ASFF "TTPs" or "Effects" type they stand for.
TECHNIQUE_TYPES = {
    "T1078": "TTPs/Initial Access/Valid Accounts",
    "T1098": "TTPs/Persistence/Account Manipulation",
    "T1485": "Effects/Data Destruction",
    "T1530": "TTPs/Collection/Data from Cloud Storage",
    "T1562": "TTPs/Defense Evasion/Impair Defenses",
    "T1580": "TTPs/Discovery/Cloud Infrastructure Discovery",
}
# ARN service:resource-type prefixes → ASFF resource types; anything else is "Other".
_RESOURCE_TYPES = (
    (":iam::", ":role/", "AwsIamRole"),
    (":iam::", ":user/", "AwsIamUser"),
    (":iam::", ":policy/", "AwsIamPolicy"),
    (":sqs:", "", "AwsSqsQueue"),
    (":sns:", "", "AwsSnsTopic"),
    (":cloudtrail:", ":trail/", "AwsCloudTrailTrail"),
)
# Fields that differ between two deliveries of one event (the file or message it came in, its form).
_DELIVERY_FIELDS = ("location", "form")


def finding_uid(alert: Alert) -> str:
    """`kvs-sentinel/<detector>/<eventID>` (`…/grouped` for a grouped summary); without an eventID, the
    event part is a SHA-256 of the alert's event fields."""
    event = alert.event_id or _event_hash(alert)
    suffix = "/grouped" if "grouped" in alert.details else ""
    return f"{PRODUCT_NAME}/{alert.detector}/{event}{suffix}"[:512]


def _event_hash(alert: Alert) -> str:
    fields = msgspec.to_builtins(alert)
    for name in _DELIVERY_FIELDS:
        fields.pop(name, None)
    return "sha256-" + hashlib.sha256(msgspec.json.encode(fields, order="sorted")).hexdigest()


def techniques(alert: Alert) -> tuple[str, ...]:
    """The MITRE ATT&CK technique ids in the alert's tags (`mitre-attack:T1562.008`)."""
    found = (_TECHNIQUE.match(tag) for tag in alert.tags)
    return tuple(match.group(1).upper() for match in found if match)


def finding_types(alert: Alert) -> list[str]:
    """ASFF's finding types (OCSF reuses them): best practices, plus what the ATT&CK tags stand for."""
    found = [BEST_PRACTICES]
    for technique in techniques(alert):
        kind = TECHNIQUE_TYPES.get(technique.split(".")[0])
        if kind and kind not in found:
            found.append(kind)
    return found


def resource_type(identifier: str) -> str:
    if identifier.startswith("arn:"):
        for service, kind, name in _RESOURCE_TYPES:
            if service in identifier and kind in identifier:
                return name
    return "Other"


def event_moment(alert: Alert) -> datetime | None:
    """The event's time as an aware datetime, or None when absent or unreadable."""
    if not alert.event_time:
        return None
    try:
        moment = datetime.fromisoformat(alert.event_time)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
