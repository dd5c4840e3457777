"""JSON Lines to standard output or a file: the default sink of `replay`.

JSON carries no formatting, links or mentions, so the one risk is a hidden or bidi character reordering
the line in a terminal or viewer: those are written as `\\uXXXX` escapes (see reveal), which a parser
reads back as the exact value.

`format: ocsf` writes each alert as an OCSF Detection Finding instead (see ocsf.py): a finding this sink
already wrote (a redelivered event) is written again as an Update.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar, Literal

import msgspec
from pydantic import BaseModel, ConfigDict

from kvs_sentinel.alerts import ALERT_ENCODER, Alert
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.findings import finding_uid
from kvs_sentinel.reveal import reveal_in_json
from kvs_sentinel.sinks.base import SinkContext, register_sink
from kvs_sentinel.sinks.ocsf import ocsf_finding, product_version

REMEMBERED_FINDINGS = 10_000  # finding ids kept to tell an Update from a Create


class JsonLinesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    path: str | None = None
    """A file to write (truncated at start); absent or `-` means standard output."""
    format: Literal["alert", "ocsf"] = "alert"
    """`alert`: the alert as kvs-sentinel shapes it; `ocsf`: an OCSF 1.1.0 Detection Finding."""


@register_sink("stdout")
class JsonLinesSink:
    Config: ClassVar[type[BaseModel]] = JsonLinesConfig
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, path: str | None = None, name: str = "stdout", format: Literal["alert", "ocsf"] = "alert"
    ) -> None:
        self.name = name
        self.format = format
        self._written: OrderedDict[str, None] = OrderedDict()
        self._version = product_version() if format == "ocsf" else ""
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
        return cls(config.path, name=name, format=config.format)

    async def send(self, alert: Alert) -> None:
        encoded = self._ocsf(alert) if self.format == "ocsf" else ALERT_ENCODER.encode(alert)
        self._buffer += reveal_in_json(encoded)
        self._buffer += b"\n"
        if len(self._buffer) >= 1 << 16:
            self._flush()

    def _ocsf(self, alert: Alert) -> bytes:
        uid = finding_uid(alert)
        seen = uid in self._written
        self._written[uid] = None
        self._written.move_to_end(uid)
        if len(self._written) > REMEMBERED_FINDINGS:
            self._written.popitem(last=False)
        finding = ocsf_finding(
            alert, now=datetime.now(UTC), activity=2 if seen else 1, version_of_product=self._version
        )
        return msgspec.json.encode(finding)

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
