"""The AWS partition (``aws``, ``aws-cn``, ``aws-us-gov``, ...) an event belongs to."""

from __future__ import annotations

import re

__all__ = ["partition_of"]

_ARN_PARTITION = re.compile(r"arn:(aws(?:-[a-z]+){0,3}):")
# Region prefixes of the partitions other than `aws` (longest first: us-isob before us-iso).
_REGION_PARTITIONS = (
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
    ("us-isof-", "aws-iso-f"),
)


def partition_of(arns: list[object], region: object) -> str:
    """The partition of the first ARN that names one, else the one the region belongs to, else ``aws``."""
    for arn in arns:
        if isinstance(arn, str):
            match = _ARN_PARTITION.match(arn)
            if match:
                return match.group(1)
    if isinstance(region, str):
        for prefix, partition in _REGION_PARTITIONS:
            if region.startswith(prefix):
                return partition
    return "aws"
