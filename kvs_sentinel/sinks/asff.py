"""An alert as an AWS Security Finding Format (ASFF) finding, for Security Hub's BatchImportFindings.

With the default product ARN (`arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`) findings
must be imported by the account they name in `AwsAccountId`: that is the sentinel's own account. The
account the event happened in (an organisation trail reports many) is in `ProductFields` and in each
resource's ARN.

Severity and Types go both at the top level and in `FindingProviderFields` (what Security Hub keeps
for the provider when an analyst changes the top-level values). `CreatedAt` and `FirstObservedAt` are
the event's time, so a redelivery sends an identical finding but for `UpdatedAt`.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from kvs_sentinel.alerts import Alert, action_of
from kvs_sentinel.findings import (
    PRODUCT_NAME,
    clip,
    event_moment,
    finding_types,
    finding_uid,
    resource_type,
)

SCHEMA_VERSION = "2018-10-08"
SEVERITY_LABELS = {
    "critical": "CRITICAL",
    "high": "HIGH",
    "medium": "MEDIUM",
    "low": "LOW",
    "info": "INFORMATIONAL",
}
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 1024
RECOMMENDATION_LIMIT = 512
PRODUCT_FIELD_LIMIT = 2048
MAX_RESOURCES = 32


def product_arn(partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def resources(alert: Alert, partition: str, region: str) -> list[dict[str, Any]]:
    """What the call acted on, who made it and with which key; the account when none is known."""
    found: list[dict[str, Any]] = []

    def add(identifier: str | None, kind: str | None = None, **details: str) -> None:
        if not identifier or any(r["Id"] == identifier for r in found):
            return
        resource: dict[str, Any] = {
            "Type": kind or resource_type(identifier),
            "Id": clip(identifier, 512),
            "Partition": partition,
            "Region": alert.region or region,
        }
        if details:
            resource["Details"] = {"Other": {k: clip(v, 1024) for k, v in details.items() if v}}
        found.append(resource)

    add(alert.resource, None, role="target")
    add(alert.principal, None, role="principal", principal_type=alert.principal_type or "")
    add(alert.access_key_id, "AwsIamAccessKey", role="access key")
    if not found:
        add(f"AWS::::Account:{alert.account or 'unknown'}", "Other", role="account")
    return found[:MAX_RESOURCES]


def product_fields(alert: Alert) -> dict[str, str]:
    fields = {
        "detector": alert.detector,
        "event_id": alert.event_id,
        "event_time": alert.event_time,
        "action": action_of(alert.event_source, alert.event_name),
        "event_account": alert.account,
        "event_region": alert.region,
        "principal": alert.principal,
        "principal_type": alert.principal_type,
        "source_ip": alert.source_ip,
        "user_agent": alert.user_agent,
        "error_code": alert.error_code,
        "practice": alert.practice,
        "escalated_because": alert.escalated_because,
        "tags": ",".join(alert.tags),
    }
    return {
        f"{PRODUCT_NAME}/{key}": clip(value, PRODUCT_FIELD_LIMIT) for key, value in fields.items() if value
    }


def api_call_action(alert: Alert) -> dict[str, Any] | None:
    if not alert.event_name:
        return None
    call: dict[str, Any] = {"Api": alert.event_name}
    if alert.event_source:
        call["ServiceName"] = alert.event_source
    if alert.source_ip:
        try:
            address = ipaddress.ip_address(alert.source_ip)
        except ValueError:  # an AWS service calling on the principal's behalf: a domain
            call["CallerType"] = "domain"
            call["DomainDetails"] = {"Domain": clip(alert.source_ip, 128)}
        else:
            call["CallerType"] = "remoteip"
            if address.version == 4:
                call["RemoteIpDetails"] = {"IpAddressV4": alert.source_ip}
    return {"ActionType": "AWS_API_CALL", "AwsApiCallAction": call}


def asff_finding(alert: Alert, *, account: str, region: str, now: datetime) -> dict[str, Any]:
    """The finding for `alert`, imported by `account` in `region`, stamped `now` as UpdatedAt."""
    partition = partition_of(region)
    observed = rfc3339(event_moment(alert) or now)
    severity = {"Label": SEVERITY_LABELS.get(alert.severity, "INFORMATIONAL"), "Original": alert.severity}
    types = finding_types(alert)
    finding: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding_uid(alert),
        "ProductArn": product_arn(partition, region, account),
        "ProductName": PRODUCT_NAME,
        "CompanyName": PRODUCT_NAME,
        "GeneratorId": clip(f"{PRODUCT_NAME}/{alert.detector}", 512),
        "AwsAccountId": account,
        "Types": types,
        "CreatedAt": observed,
        "FirstObservedAt": observed,
        "LastObservedAt": observed,
        "UpdatedAt": rfc3339(now),
        "Severity": severity,
        "Title": clip(alert.title, TITLE_LIMIT),
        "Description": clip(alert.summary, DESCRIPTION_LIMIT),
        "Remediation": {"Recommendation": {"Text": clip(alert.remediation, RECOMMENDATION_LIMIT)}},
        "ProductFields": product_fields(alert),
        "Resources": resources(alert, partition, region),
        "FindingProviderFields": {"Severity": severity, "Types": types},
        "RecordState": "ACTIVE",
    }
    action = api_call_action(alert)
    if action is not None:
        finding["Action"] = action
    return finding
