"""The YAML shape of detector packs (pass one of validation: structure; compiler.py does meaning)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kvs_sentinel.severity import SeverityName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExampleSpec(_Strict):
    """An event that must (or must not) make the detector fire: tests kept as data beside the detector."""

    name: str
    expect: Literal["match", "no_match"]
    event: dict[str, Any] | None = None
    file: str | None = Field(default=None, description="a file of events (any form), relative to the pack")
    severity: SeverityName | None = Field(
        default=None, description="the alert's severity, when expect is match"
    )


class EscalationSpec(_Strict):
    """Raise the severity when a further condition holds (first match wins)."""

    when: Any
    severity: SeverityName
    reason: str


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
    examples: list[ExampleSpec] = []


class PackSpec(_Strict):
    """A detector pack file: named lists with their defaults, and detectors."""

    name: str | None = None
    description: str | None = None
    lists: dict[str, list[str | int | float]] = {}
    detectors: list[DetectorSpec] = []
