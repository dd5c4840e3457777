"""The sink interface, the clock sinks pace and retry with, and the registry `type:` in YAML picks from.

A sink type registers with `@register_sink("slack")` and carries a pydantic `Config` (pass two of config
validation: `sinks.<name>` is checked against it) and a `from_config` constructor. Fields named in
`secret_fields` must come from the environment (`${VAR}`), never be written in the YAML itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict

from kvs_sentinel.alerts import Alert
from kvs_sentinel.clock import SYSTEM_CLOCK, Clock
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.state.base import SharedState


class Sink(Protocol):
    """Delivers alerts. `send` raises DeliveryError(retryable=...) when an alert could not be delivered."""

    name: str

    async def send(self, alert: Alert) -> None: ...

    async def flush(self) -> None:
        """Finish delivering what `send` accepted; called before a message is acknowledged."""

    async def aclose(self) -> None: ...


log = structlog.get_logger("kvs_sentinel.sinks")


@dataclass
class SinkCounts:
    """What a sink did, for the closing summary and for tests."""

    delivered: int = 0
    retries: int = 0
    rate_limited: int = 0
    failed_retryable: int = 0
    failed_permanent: int = 0

    def success(self, sink: str, alert: Alert, **context: Any) -> None:
        """Count a delivery and log it once."""
        self.delivered += 1
        log.info("alert_delivered", sink=sink, detector=alert.detector, event_id=alert.event_id, **context)

    def failure(self, sink: str, alert: Alert, message: str, *, retryable: bool) -> DeliveryError:
        """Count a final failure, log it once, and give the error for the caller to raise.

        `message` must already be free of secrets: it is logged and becomes the error's text.
        """
        if retryable:
            self.failed_retryable += 1
        else:
            self.failed_permanent += 1
        log.error(
            "delivery_failed",
            sink=sink,
            detector=alert.detector,
            event_id=alert.event_id,
            error=message,
            retryable=retryable,
        )
        return DeliveryError(message, retryable=retryable)


@dataclass
class SinkContext:
    """What a run shares between the sinks it builds: the clock, and resources keyed by the sink type
    (one pacer per Slack webhook URL, so two sink names posting to one webhook share its rate limit)."""

    clock: Clock = SYSTEM_CLOCK
    shared: dict[tuple[str, str], Any] = field(default_factory=dict)
    # a store every task shares: sinks may pace themselves across tasks
    shared_state: SharedState | None = None


class SinkSpec(BaseModel):
    """Pass one of `sinks.<name>`: a `type`; the type's own `Config` checks the rest (pass two)."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    type: str


class SinkType(Protocol):
    """A registered sink class, seen as a factory."""

    Config: type[BaseModel]
    secret_fields: tuple[str, ...]

    def from_config(self, name: str, config: Any, context: SinkContext) -> Sink: ...


SINK_TYPES: dict[str, SinkType] = {}
_T = TypeVar("_T", bound=SinkType)


def register_sink(type_name: str) -> Callable[[_T], _T]:
    """Register a sink class under the `type:` name used in sentinel.yaml."""

    def register(cls: _T) -> _T:
        SINK_TYPES[type_name] = cls
        return cls

    return register
