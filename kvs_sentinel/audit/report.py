"""The audit's output: a table for people, JSON Lines (the alerts' own encoding) for tools, and the exit
code a CI job gates on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from kvs_sentinel.alerts import ALERT_ENCODER, Alert
from kvs_sentinel.severity import SEVERITY_NAMES, Severity

SEVERITY_WIDTH, CHECK_WIDTH = 8, 36


def ordered(findings: Sequence[Alert]) -> list[Alert]:
    """Worst first, then by detector and resource: the same account gives the same report."""
    return sorted(findings, key=lambda a: (-SEVERITY_NAMES[a.severity], a.detector, a.resource or ""))


def write_table(findings: Sequence[Alert], out: TextIO) -> None:
    if not findings:
        out.write("no findings\n")
        return
    out.write(f"{'SEVERITY':<{SEVERITY_WIDTH}} {'CHECK':<{CHECK_WIDTH}} SUMMARY\n")
    for alert in ordered(findings):
        out.write(f"{alert.severity:<{SEVERITY_WIDTH}} {alert.detector:<{CHECK_WIDTH}} {alert.summary}\n")
        if alert.resource:
            out.write(f"{'':<{SEVERITY_WIDTH}} {'':<{CHECK_WIDTH}}   resource: {alert.resource}\n")
    counts = {name: sum(1 for a in findings if a.severity == name) for name in reversed(SEVERITY_NAMES)}
    out.write("findings: " + ", ".join(f"{n} {name}" for name, n in counts.items() if n) + "\n")


def write_jsonl(findings: Sequence[Alert], out: TextIO) -> None:
    for alert in ordered(findings):
        out.write(ALERT_ENCODER.encode(alert).decode() + "\n")


def failed(findings: Sequence[Alert], fail_on: str) -> bool:
    """Whether a finding is at or above `fail_on` ("none": never)."""
    if fail_on == "none":
        return False
    threshold = Severity[fail_on]
    return any(SEVERITY_NAMES[alert.severity] >= threshold for alert in findings)
