"""The events SigmaHQ's rules are tested (and benchmarked) on: tests/data/sigma/aws_cloudtrail_cases.yaml
gives each rule the fields of a triggering event and of a near miss, laid over one IAM user's CLI call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SIGMA_DATA = Path(__file__).resolve().parents[1] / "data" / "sigma"
IAM_USER_CALL: dict[str, Any] = {
    "eventVersion": "1.09",
    "eventTime": "2026-11-30T10:00:00Z",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "198.51.100.7",
    "userAgent": "aws-cli/2.15.0",
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333",
    "userIdentity": {
        "type": "IAMUser",
        "arn": "arn:aws:iam::111122223333:user/alice",
        "accountId": "111122223333",
        "userName": "alice",
    },
}


def rule_cases() -> dict[str, dict[str, Any]]:
    """Rule file name → {"match": fields, "near_miss": fields}."""
    cases: dict[str, dict[str, Any]] = yaml.safe_load((SIGMA_DATA / "aws_cloudtrail_cases.yaml").read_text())
    return cases


def merged(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` laid over `base`, objects merged key by key."""
    out = dict(base)
    for key, value in fields.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out
