"""`kvs-sentinel run` throughput and added latency against a local SQS endpoint (moto in server mode).

    .venv/bin/python -m bench.run_bench [--messages 2000] [--pollers 4]

1. bare: an aiobotocore loop (same pollers, 10 per long-poll receive, DeleteMessageBatch) drains the queue;
2. sentinel: the same messages through the run service (in process: SqsSource → pipeline → detectors →
   dedupe → a null sink; acks batched), stopped once every message was deleted;
3. per-message added latency: receive (the SQS answer, `SqsMessage.received_at`) → the sink's `send`,
   for every message (a bench detector matches every event, so every message reaches the sink).

moto is single-threaded and slow, and it bounds both loops: read the throughput as a ratio, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import structlog

from bench.corpus import _envelopes

HERE = Path(__file__).resolve().parent
BENCH_DETECTOR = """
detectors:
  - id: bench-every-event
    title: Every event (benchmark)
    severity: info
    practice: monitoring
    description: matches everything, so every message reaches the sink and is timed
    remediation: nothing to remediate, this is a benchmark
    summary: "{eventName}"
    match: {eventSource: {glob: "*"}}
    examples:
      - {name: any, expect: match, event: {eventSource: x.amazonaws.com, eventName: X}}
grouping: {window_seconds: 0}
service: {health_port: 0, health_host: 127.0.0.1, workers: 8}
"""


class NullSink:
    """Accepts everything; records receive → send for the message being processed."""

    name = "null"

    def __init__(self, received: dict[str, float]) -> None:
        self.received = received
        self.latencies: dict[str, float] = {}

    async def send(self, alert: Any) -> None:
        message_id = structlog.contextvars.get_contextvars().get("message_id")
        if message_id in self.received and message_id not in self.latencies:
            self.latencies[message_id] = time.monotonic() - self.received[message_id]

    async def flush(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def create_queue(sqs: Any) -> str:
    deadline = time.monotonic() + 30
    while True:  # the server process is starting
        try:
            return str((await sqs.create_queue(QueueName="kvs-sentinel-bench"))["QueueUrl"])
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def fill(url: str, bodies: list[bytes]) -> None:
    from aiobotocore.session import get_session

    async with get_session().create_client("sqs") as sqs:
        batches = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]
        for start in range(0, len(batches), 20):
            await asyncio.gather(
                *(
                    sqs.send_message_batch(
                        QueueUrl=url,
                        Entries=[{"Id": str(i), "MessageBody": b.decode()} for i, b in enumerate(batch)],
                    )
                    for batch in batches[start : start + 20]
                )
            )


async def bare_loop(url: str, total: int, pollers: int) -> float:
    from aiobotocore.session import get_session

    done = 0
    async with get_session().create_client("sqs") as sqs:

        async def poll() -> None:
            nonlocal done
            while done < total:
                response = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                messages = response.get("Messages", [])
                if messages:
                    entries = [
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ]
                    await sqs.delete_message_batch(QueueUrl=url, Entries=entries)
                    done += len(messages)

        started = time.perf_counter()
        await asyncio.gather(*(poll() for _ in range(pollers)))
        return time.perf_counter() - started


async def sentinel_run(url: str, total: int, pollers: int, config: Path) -> tuple[float, list[float]]:
    from kvs_sentinel.config import load_config
    from kvs_sentinel.service import Service
    from kvs_sentinel.sources.sqs import SqsMessage, SqsSource, SqsSourceConfig

    received: dict[str, float] = {}

    class TimedSource(SqsSource):
        def _message(self, raw: Any) -> SqsMessage:
            message = super()._message(raw)
            received[message.id] = message.received_at
            return message

    source = TimedSource(SqsSourceConfig(queue_url=url, wait_time_seconds=1, pollers=pollers))
    sink = NullSink(received)
    service = Service(load_config(config), sources=[source], sinks={"null": sink})
    started = time.perf_counter()
    running = asyncio.create_task(service.run())
    while source.counts.deleted < total and not running.done():  # noqa: ASYNC110 (a counter, no event)
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    service.request_stop()
    await running
    return elapsed, list(sink.latencies.values())


async def main_async(messages: int, pollers: int, port: int) -> None:
    from aiobotocore.session import get_session

    from kvs_sentinel.config import load_config

    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    config = HERE / "out" / "run-bench.yaml"
    config.parent.mkdir(exist_ok=True)
    pack = HERE.parent / "config" / "packs" / "kvs.yaml"
    shipped = (HERE / "sentinel.yaml").read_text().replace("../config/packs/kvs.yaml", str(pack))
    config.write_text(shipped + BENCH_DETECTOR)
    load_config(config)  # fail before the slow part
    bodies = [orjson.dumps(envelope) for envelope in _envelopes(messages, 7)]
    async with get_session().create_client("sqs") as sqs:
        url = await create_queue(sqs)
    await fill(url, bodies)
    bare = await bare_loop(url, messages, pollers)
    await fill(url, bodies)
    run, latencies = await sentinel_run(url, messages, pollers, config)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    print(f"messages: {messages} EventBridge envelopes, {pollers} pollers, local moto server")
    print(f"bare aiobotocore receive+delete: {messages / bare:8.0f} msg/s ({bare:.2f} s)")
    print(f"kvs-sentinel run:                {messages / run:8.0f} msg/s ({run:.2f} s)")
    print(f"ratio: {bare / run:.2f}x of the bare loop")
    if latencies:
        print(
            f"added latency receive -> sink call ({len(latencies)} messages): "
            f"p50 {statistics.median(latencies) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
            f"max {latencies[-1] * 1000:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--pollers", type=int, default=4)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    # moto in its own process: in ours, its CPU work would hold the GIL and stall the loop being measured
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(main_async(args.messages, args.pollers, port))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
