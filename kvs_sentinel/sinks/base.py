"""The sink interface and the registry that `type:` in YAML will pick from."""

from __future__ import annotations

from typing import Protocol

from kvs_sentinel.alerts import Alert


class Sink(Protocol):
    """Delivers alerts. `send` raises DeliveryError(retryable=...) when an alert could not be delivered."""

    name: str

    async def send(self, alert: Alert) -> None: ...

    async def flush(self) -> None:
        """Finish delivering what `send` accepted; called before a message is acknowledged."""

    async def aclose(self) -> None: ...
