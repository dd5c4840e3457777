"""An in-memory SQS behind the source's client calls, and a `run` Service consuming it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kvs_sentinel.config import SentinelConfig, compile_config
from kvs_sentinel.service import Service
from kvs_sentinel.sources.sqs import SqsSource, SqsSourceConfig
from kvs_sentinel.testing import RecordingSink

PACK = Path(__file__).resolve().parents[2] / "config" / "packs" / "kvs.yaml"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/kvs-sentinel-test"


class FakeSqs:
    """An in-memory queue behind the SqsClient calls the source makes."""

    def __init__(self, bodies: list[dict[str, Any]]) -> None:
        self.waiting = deque((f"m{i}", json.dumps(body)) for i, body in enumerate(bodies))
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []
        self.fail_receives = False

    async def receive_message(self, **request: Any) -> Mapping[str, Any]:
        if self.fail_receives:
            raise OSError("network down")
        if not self.waiting:
            await asyncio.sleep(request["WaitTimeSeconds"])  # a long poll with nothing to get
            return {}
        taken = [
            self.waiting.popleft() for _ in range(min(request["MaxNumberOfMessages"], len(self.waiting)))
        ]
        return {
            "Messages": [
                {"MessageId": i, "ReceiptHandle": f"rh-{i}", "Body": body, "Attributes": {}}
                for i, body in taken
            ]
        }

    async def delete_message_batch(self, **request: Any) -> Mapping[str, Any]:
        self.deleted.extend(entry["ReceiptHandle"] for entry in request["Entries"])
        return {}

    async def change_message_visibility(self, **request: Any) -> Mapping[str, Any]:
        self.visibility.append((request["ReceiptHandle"], request["VisibilityTimeout"]))
        return {}

    async def change_message_visibility_batch(self, **request: Any) -> Mapping[str, Any]:
        for entry in request["Entries"]:
            self.visibility.append((entry["ReceiptHandle"], entry["VisibilityTimeout"]))
        return {}

    async def get_queue_attributes(self, **request: Any) -> Mapping[str, Any]:
        return {"Attributes": {"RedrivePolicy": '{"maxReceiveCount": "5"}'}}


def service_for(fake: FakeSqs, sink: RecordingSink, **service: Any) -> Service:
    settings = {"health_port": 0, "health_host": "127.0.0.1", "grace_seconds": 5, "close_seconds": 1}
    config = SentinelConfig.model_validate(
        {"packs": [str(PACK)], "service": settings | service, "grouping": {"window_seconds": 0}}
    )
    loaded = compile_config(config, PACK.parent / "sentinel.yaml")
    source = SqsSource(
        SqsSourceConfig(queue_url=QUEUE, wait_time_seconds=1),
        client_factory=lambda _: contextlib.nullcontext(fake),  # type: ignore[arg-type,return-value]
    )
    return Service(
        loaded,
        sources=[source],
        sinks={sink.name: sink},
        s3_factory=lambda _: contextlib.nullcontext(None),  # type: ignore[arg-type,return-value]
    )
