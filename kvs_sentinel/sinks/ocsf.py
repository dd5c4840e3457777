"""An alert as an OCSF 1.1.0 Detection Finding (class 2004), for Security Lake custom sources and SIEMs.

OCSF 1.1.0 is the schema version Security Lake reads. Mapping:

    finding_info    uid (the stable finding id, as in Security Hub), title, desc, types,
                    analytic {name, uid: the detector, type_id 1 Rule}, first/last_seen_time (the event)
    severity_id     info 1, low 2, medium 3, high 4, critical 5
    activity_id     1 Create; 2 Update when this sink already wrote the finding (a redelivered event)
    time            when the finding was written (ms since the epoch)
    cloud           provider AWS, the event's account and region
    evidences       the call: actor.user (principal, access key), api (operation, service, error),
                    src_endpoint (address, or the AWS service that called)
    resources       what the call acted on; observables: the address, the principal, the resource
    unmapped        what OCSF has no attribute for (detector, tags, user agent, details, where it was read)
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Literal

from kvs_sentinel.alerts import Alert
from kvs_sentinel.findings import (
    PRODUCT_NAME,
    VENDOR_NAME,
    event_moment,
    finding_types,
    finding_uid,
    resource_type,
)

OCSF_VERSION = "1.1.0"
CLASS_UID = 2004
CATEGORY_UID = 2
SEVERITY_IDS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_CAPTIONS = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
ACTIVITIES = {1: "Create", 2: "Update"}
OBSERVABLE_IP, OBSERVABLE_RESOURCE_UID = 2, 10
ANALYTIC_RULE = 1
Activity = Literal[1, 2]


def product_version() -> str:
    # imported here: importlib.metadata pulls in email, zipfile, csv... for every command otherwise
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kvs-sentinel")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0+unknown"


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _endpoint(source: str) -> dict[str, str]:
    try:
        ipaddress.ip_address(source)
    except ValueError:
        return {"name": source}  # an AWS service calling on the principal's behalf
    return {"ip": source}


def _evidence(alert: Alert) -> dict[str, Any]:
    evidence: dict[str, Any] = {}
    user: dict[str, Any] = {
        key: value
        for key, value in {
            "uid": alert.principal,
            "type": alert.principal_type,
            "credential_uid": alert.access_key_id,
        }.items()
        if value
    }
    if alert.account:
        user["account"] = {"uid": alert.account, "type": "AWS Account", "type_id": 10}
    if alert.principal or alert.account:
        evidence["actor"] = {"user": user}
    if alert.event_name:
        api: dict[str, Any] = {"operation": alert.event_name}
        if alert.event_source:
            api["service"] = {"name": alert.event_source}
        if alert.error_code:
            api["response"] = {"error": alert.error_code, "error_message": alert.error_message or ""}
        evidence["api"] = api
    if alert.source_ip:
        evidence["src_endpoint"] = _endpoint(alert.source_ip)
    return evidence


def _observables(alert: Alert) -> list[dict[str, Any]]:
    found = []
    if alert.source_ip and "ip" in _endpoint(alert.source_ip):
        found.append(
            {
                "name": "evidences.src_endpoint.ip",
                "type_id": OBSERVABLE_IP,
                "type": "IP Address",
                "value": alert.source_ip,
            }
        )
    for name, value in (("evidences.actor.user.uid", alert.principal), ("resources.uid", alert.resource)):
        if value:
            found.append(
                {"name": name, "type_id": OBSERVABLE_RESOURCE_UID, "type": "Resource UID", "value": value}
            )
    return found


def ocsf_finding(
    alert: Alert, *, now: datetime, activity: Activity = 1, version_of_product: str | None = None
) -> dict[str, Any]:
    """The Detection Finding for `alert`, written at `now`."""
    severity_id = SEVERITY_IDS.get(alert.severity, 0)
    seen = event_moment(alert)
    info: dict[str, Any] = {
        "uid": finding_uid(alert),
        "title": alert.title,
        "desc": alert.summary,
        "types": finding_types(alert),
        "analytic": {"name": alert.detector, "uid": alert.detector, "type_id": ANALYTIC_RULE, "type": "Rule"},
        "created_time": millis(now),
    }
    if seen is not None:
        info["first_seen_time"] = info["last_seen_time"] = millis(seen)
    if alert.event_id:
        info["related_events"] = [{"uid": alert.event_id, "product_uid": "aws-cloudtrail"}]
    finding: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity,
        "activity_name": ACTIVITIES[activity],
        "type_uid": CLASS_UID * 100 + activity,
        "type_name": f"Detection Finding: {ACTIVITIES[activity]}",
        "time": millis(now),
        "severity_id": severity_id,
        "severity": SEVERITY_CAPTIONS[severity_id],
        "status_id": 1,
        "status": "New",
        "message": alert.summary,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": PRODUCT_NAME,
                "vendor_name": VENDOR_NAME,
                "version": version_of_product or product_version(),
            },
            "profiles": ["cloud"],
        },
        "cloud": {"provider": "AWS", "region": alert.region or "", "account": {"uid": alert.account or ""}},
        "finding_info": info,
        "evidences": [_evidence(alert)],
        "remediation": {"desc": alert.remediation},
        "unmapped": _unmapped(alert),
    }
    if alert.resource:
        finding["resources"] = [
            {"uid": alert.resource, "type": resource_type(alert.resource), "region": alert.region or ""}
        ]
    observables = _observables(alert)
    if observables:
        finding["observables"] = observables
    return finding


def _unmapped(alert: Alert) -> dict[str, Any]:
    fields = {
        "detector": alert.detector,
        "practice": alert.practice,
        "tags": list(alert.tags),
        "event_time": alert.event_time,
        "user_agent": alert.user_agent,
        "escalated_because": alert.escalated_because,
        "details": alert.details,
        "location": alert.location,
        "form": alert.form,
    }
    return {key: value for key, value in fields.items() if value not in (None, "", [], {})}
