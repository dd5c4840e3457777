"""The `sources:` and `service:` sections of sentinel.yaml: what `kvs-sentinel run` consumes, and how.

Sources are a list; each names its `type:` and that type's options (pass two checks them against the
type's Config, as sinks are checked):

    sources:
      - type: sqs
        queue_url: ${KVS_SENTINEL_QUEUE_URL}
    service:
      health_port: 8080
      grace_seconds: 25
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kvs_sentinel.dedupe import DEFAULT_MAX_ENTRIES, DEFAULT_WINDOW_SECONDS
from kvs_sentinel.emf import EmfConfig
from kvs_sentinel.env_refs import validate_options
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.log_files import MAX_RECORDS, MAX_SECONDS
from kvs_sentinel.sources.base import SourceConfig
from kvs_sentinel.sources.registry import source_type
from kvs_sentinel.sources.s3 import MAX_OBJECT_BYTES, MAX_UNZIPPED_BYTES
from kvs_sentinel.state.registry import check_state_url

DEFAULT_PORT = 8080  # as health.DEFAULT_PORT, without importing aiohttp into every command


class SourceSpec(BaseModel):
    """Pass one of `sources[i]`: a `type`; the type's own Config checks the rest (pass two)."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    type: str


class ServiceConfig(BaseModel):
    """How `run` behaves as a service: probes, shutdown, workers, dedupe and S3 limits."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    health_host: str = Field("0.0.0.0", description="where /healthz, /readyz and /metrics listen")
    health_port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="0: any free port")
    grace_seconds: float = Field(
        25, gt=0, le=3600, description="SIGTERM to exit, all included: below ECS's stopTimeout (30 s)"
    )
    close_seconds: float = Field(
        4, gt=0, le=600, description="of the grace period, kept for cancelling, deleting and closing"
    )
    workers: int = Field(8, ge=1, le=256, description="messages processed at once")
    state: str = Field(
        "memory",
        description="what run remembers (the redelivery dedupe): memory (this task), sqlite:PATH "
        "(survives a restart), dynamodb:TABLE (shared by every task)",
    )
    dedupe_window_seconds: float = Field(DEFAULT_WINDOW_SECONDS, gt=0)
    dedupe_max_entries: int = Field(DEFAULT_MAX_ENTRIES, ge=1, description="with state: memory")
    s3_region: str | None = Field(None, description="default: AWS_REGION; other regions are followed")
    s3_max_object_bytes: int = Field(MAX_OBJECT_BYTES, ge=1)
    s3_max_unzipped_bytes: int = Field(MAX_UNZIPPED_BYTES, ge=1)
    s3_max_records: int = Field(
        MAX_RECORDS, ge=1, description="records read from one log file; the rest is counted malformed"
    )
    s3_max_seconds: float = Field(
        MAX_SECONDS,
        gt=0,
        description="seconds spent reading and judging one log file; the rest is counted malformed",
    )

    @field_validator("state")
    @classmethod
    def _known_state(cls, url: str) -> str:
        check_state_url(url)
        return url

    cloudwatch_emf: EmfConfig | None = Field(
        None, description="true, or options: write the metrics as CloudWatch EMF log lines (emf.py)"
    )

    @field_validator("cloudwatch_emf", mode="before")
    @classmethod
    def _emf_switch(cls, value: Any) -> Any:
        if value is True:
            return EmfConfig.model_validate({})
        return None if value is False else value

    iam_policy_lookup: bool = Field(
        False,
        description="read customer managed policies from IAM to judge attaching them (needs "
        "iam:ListPolicies, iam:GetPolicy, iam:GetPolicyVersion)",
    )
    iam_policy_refresh_seconds: float = Field(900, ge=60, description="how often they are read again")
    audit_interval_seconds: float = Field(
        0, ge=0, description="run `audit` this often and deliver new or changed findings (0: never)"
    )
    audit_reminder_seconds: float = Field(
        86400, gt=0, description="an unchanged audit finding is sent again after this long"
    )
    audit_region: str | None = Field(
        None, description="the region of the trail and rule (default: AWS_REGION)"
    )

    @model_validator(mode="after")
    def _close_within_grace(self) -> ServiceConfig:
        if self.close_seconds >= self.grace_seconds:
            raise ValueError("close_seconds must be shorter than grace_seconds")
        return self

    @property
    def drain_seconds(self) -> float:
        """How long in-flight work may take after SIGTERM before it is cancelled."""
        return self.grace_seconds - self.close_seconds


def check_sources(specs: Sequence[SourceSpec], path: Path, problems: Any) -> tuple[SourceConfig, ...]:
    """Pass two of `sources`: each entry's options against its registered type's Config."""
    checked: list[SourceConfig] = []
    for i, spec in enumerate(specs):
        try:
            model = source_type(spec.type).Config
        except ValueError as exc:
            raise ConfigError(f"{path}: sources[{i}].type: {exc}") from None
        options = dict(spec.model_extra or {})
        try:
            config = validate_options(model, options)
        except ValidationError as exc:
            raise ConfigError(f"{path}: sources[{i}].{problems(exc, options)}") from None
        checked.append(config)
    keys = [(type(config), config.identity()) for config in checked]
    repeated = sorted({key for _, key in keys if keys.count((_, key)) > 1})
    if repeated:
        raise ConfigError(f"{path}: sources: listed twice: {', '.join(repeated)}")
    return tuple(checked)
