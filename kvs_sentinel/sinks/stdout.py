"""JSON Lines to standard output or a file: the default sink of `replay`.

JSON carries no formatting, links or mentions, so the one risk is a hidden or bidi character reordering
the line in a terminal or viewer: those are written as `\\uXXXX` escapes (see reveal), which a parser
reads back as the exact value.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO, ClassVar

from pydantic import BaseModel, ConfigDict

from kvs_sentinel.alerts import ALERT_ENCODER, Alert
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.reveal import reveal_in_json
from kvs_sentinel.sinks.base import SinkContext, register_sink


class JsonLinesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None
    """A file to write (truncated at start); absent or `-` means standard output."""


@register_sink("stdout")
class JsonLinesSink:
    Config: ClassVar[type[BaseModel]] = JsonLinesConfig
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | None = None, name: str = "stdout") -> None:
        self.name = name
        self._owned = path is not None and path != "-"
        try:
            self._out: BinaryIO = open(path, "wb") if path and self._owned else sys.stdout.buffer  # noqa: SIM115
        except OSError as exc:
            raise DeliveryError(
                f"{path}: cannot open for writing: {exc.strerror or exc}", retryable=False
            ) from None
        self._buffer = bytearray()

    @classmethod
    def from_config(cls, name: str, config: Any, context: SinkContext) -> JsonLinesSink:
        assert isinstance(config, JsonLinesConfig)
        return cls(config.path, name=name)

    async def send(self, alert: Alert) -> None:
        self._buffer += reveal_in_json(ALERT_ENCODER.encode(alert))
        self._buffer += b"\n"
        if len(self._buffer) >= 1 << 16:
            self._flush()

    def _flush(self) -> None:
        try:
            self._out.write(self._buffer)
            self._out.flush()
        except OSError as exc:
            raise DeliveryError(
                f"{self.name}: write failed: {exc.strerror or exc}", retryable=False
            ) from None
        finally:
            self._buffer.clear()

    async def flush(self) -> None:
        if self._buffer:
            self._flush()

    async def aclose(self) -> None:
        await self.flush()
        if self._owned:
            self._out.close()
