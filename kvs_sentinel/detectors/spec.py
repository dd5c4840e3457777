"""The YAML shape of detector packs (pass one of validation: structure; compiler.py does meaning)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kvs_sentinel.severity import SeverityName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class StepSpec(_Strict):
    """One event of a stateful example, and how many alerts the detector must give for it (for all its
    copies, with `repeat`)."""

    event: dict[str, Any]
    alerts: int = Field(ge=0)
    repeat: int = Field(
        default=1, ge=1, le=1000, description="the event this many times, each with its own eventID"
    )


class ExampleSpec(_Strict):
    """An event that must (or must not) make the detector fire: tests kept as data beside the detector.

    A stateful detector's example is a sequence of `steps` instead, run in order on a fresh store."""

    name: str
    expect: Literal["match", "no_match"] | None = None
    event: dict[str, Any] | None = None
    steps: list[StepSpec] | None = Field(default=None, min_length=1)
    file: str | None = Field(default=None, description="a file of events (any form), relative to the pack")
    severity: SeverityName | None = Field(
        default=None, description="the alert's severity, when expect is match"
    )


class EscalationSpec(_Strict):
    """Raise the severity when a further condition holds (first match wins)."""

    when: Any
    severity: SeverityName
    reason: str


Duration = int | float | str  # seconds, or text such as 10m, 1h, 30d
# A field path, or a list of them: the first one the event has (a stream is named by ARN or by name).
FieldChoice = str | list[str]


class ThresholdSpec(_Strict):
    """At least `count` matching events per group within a window: one alert per group per window."""

    count: int = Field(ge=1)
    window: Duration
    group_by: list[FieldChoice] = Field(min_length=1)
    distinct: FieldChoice | None = Field(
        default=None, description="count distinct values of this field instead"
    )
    derive: Literal["network"] | None = Field(
        default=None, description="network: the /24 (IPv4) or /48 (IPv6) of the distinct value"
    )


class FirstSeenSpec(_Strict):
    """A value new for its group, once the group has been learning for `learning`."""

    value: FieldChoice
    derive: Literal["network"] | None = None
    group_by: list[FieldChoice] = Field(min_length=1)
    learning: Duration
    expiry: Duration = Field(description="a value unseen this long is forgotten")
    max_values: int = Field(default=1000, ge=1, le=10_000)


class DetectorSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{1,79}$")
    title: str = Field(min_length=3, max_length=120)
    severity: SeverityName
    description: str = Field(min_length=10)
    remediation: str = Field(min_length=10)
    practice: str | None = None
    tags: list[str] = []
    references: list[str] = Field(
        default=[], description="links that explain the detection (alerts carry them)"
    )
    author: str | None = Field(default=None, description="who wrote it (alerts carry it, as the DRL asks)")
    summary: str | None = Field(default=None, description="one sentence; {placeholders} name alert fields")
    needs_data_events: bool = False
    match: Any
    escalate: list[EscalationSpec] = []
    threshold: ThresholdSpec | None = None
    first_seen: FirstSeenSpec | None = None
    examples: list[ExampleSpec] = []


class PackSpec(_Strict):
    """A detector pack file: named lists with their defaults, and detectors."""

    name: str | None = None
    description: str | None = None
    lists: dict[str, list[str | int | float]] = {}
    detectors: list[DetectorSpec] = []
