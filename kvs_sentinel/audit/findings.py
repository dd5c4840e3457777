"""An audit finding is an Alert: the same fields, detector ids `kvs-audit-*`, `resource` set, and an
`event_id` stable for the same finding, so sinks that update by id (Security Hub) update it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from kvs_sentinel.alerts import Alert

AUDIT_SOURCE = "kvs-sentinel.audit"


def finding(
    detector: str,
    severity: str,
    title: str,
    summary: str,
    *,
    practice: str,
    resource: str,
    remediation: str,
    account: str | None = None,
    region: str | None = None,
    principal: str | None = None,
    principal_type: str | None = None,
    access_key_id: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Alert:
    identity = f"{detector}|{account or ''}|{resource}|{access_key_id or ''}"
    return Alert(
        detector=detector,
        severity=severity,
        title=title,
        summary=summary,
        practice=practice,
        tags=("audit",),
        event_id="audit-" + hashlib.sha256(identity.encode()).hexdigest()[:24],
        event_time=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        event_source=AUDIT_SOURCE,
        event_name=detector.removeprefix("kvs-audit-"),
        principal=principal,
        principal_type=principal_type,
        source_ip=None,
        user_agent=None,
        access_key_id=access_key_id,
        account=account,
        region=region,
        resource=resource,
        error_code=None,
        error_message=None,
        remediation=remediation,
        details=details or {},
    )
