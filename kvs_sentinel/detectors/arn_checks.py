"""Checks on the ARNs an event names: whether they lie in the account that recorded the event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from kvs_sentinel.detectors.checks import CheckFunction, check
from kvs_sentinel.events import Event, field_getter


class FieldArgument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    field: str  # a CloudTrail field path; a list on the way fans out (requestParameters.targets.arn)

    @field_validator("field")
    @classmethod
    def _is_a_field_path(cls, value: str) -> str:
        field_getter(value)  # ValueError names the problem
        return value


def _account(arn: str) -> str | None:
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return None
    return parts[4] or None  # S3 bucket ARNs and the like name no account


@check("foreign_account_arns", FieldArgument)
def foreign_account_arns_check(arguments: FieldArgument) -> CheckFunction:
    """ARNs at `field` that name an account other than the event's recipientAccountId."""
    get = field_getter(arguments.field)

    def run(event: Event) -> Mapping[str, Any] | None:
        home = event.doc.recipientAccountId
        if not isinstance(home, str) or not home:
            return None
        value = get(event)
        values = value if isinstance(value, list) else [value]
        foreign = [
            v for v in values if isinstance(v, str) and _account(v) not in (None, home) and len(v) < 2048
        ]
        return {"foreign_arns": foreign[:20]} if foreign else None

    return run
