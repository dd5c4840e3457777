"""Severities, ranked: what detectors declare, routes compare, and sinks map to their own scales."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal


class Severity(IntEnum):
    info = 0
    low = 1
    medium = 2
    high = 3
    critical = 4

    def __str__(self) -> str:
        return self.name


SEVERITY_NAMES = {severity.name: severity for severity in Severity}
SeverityName = Literal["info", "low", "medium", "high", "critical"]
