"""`kvs-sentinel run`: SQS queues → the pipeline → sinks, as a long-running ECS service.

Start-up: the sinks, the S3 client and the health server are entered into one `AsyncExitStack`; each
queue is checked (reachable? a redrive policy?); then the pipeline runs until SIGTERM/SIGINT, which only
set an `asyncio.Event`. A stop during start-up cancels it (a queue check can hang on an endpoint that
does not answer) and the run ends at once with exit 0: nothing was received, there is nothing to drain.
Shutdown (saq style): stop receiving (long polls are cut short), let in-flight messages finish for
`grace_seconds - close_seconds`, then cancel what is left with a hard deadline; a cancelled message is
neither acked nor retried, so SQS delivers it again when its visibility timeout ends. Only then are the
sources closed (pending deletes sent), then the S3 client, the sinks and the health server. One summary
line ends the run ("N done, M failed", arq style).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import BinaryIO

import structlog

from kvs_sentinel.alerts import Alert
from kvs_sentinel.app import configured_dispatcher, run_pipeline
from kvs_sentinel.config import LoadedConfig
from kvs_sentinel.customer_policies import IamFactory, iam_client, start_policy_lookup
from kvs_sentinel.dedupe import AlertDeduper
from kvs_sentinel.emf import EmfConfig, EmfEmitter
from kvs_sentinel.envelopes import Decodable, LogFileRef
from kvs_sentinel.errors import ConfigError, DeliveryError
from kvs_sentinel.health import HealthServer
from kvs_sentinel.log_files import LogFileBudget
from kvs_sentinel.metrics import Metrics
from kvs_sentinel.pipeline import Pipeline, PipelineCounts
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.run_config import ServiceConfig
from kvs_sentinel.sinks.base import Sink
from kvs_sentinel.sources.base import ConsumedSource
from kvs_sentinel.sources.merge import MergedSource
from kvs_sentinel.sources.registry import build_sources
from kvs_sentinel.sources.s3 import (
    S3Getter,
    documents_of_log_file,
    fetch_log_file,
    log_file_location,
    s3_client,
)
from kvs_sentinel.startup_signals import STOP_SIGNALS
from kvs_sentinel.state.base import SharedState, StateStore
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.state.registry import open_store
from kvs_sentinel.stats import RunStats

log = structlog.get_logger("kvs_sentinel.service")

S3Factory = Callable[[str | None], AbstractAsyncContextManager[S3Getter]]


class S3LogFiles:
    """The pipeline's `LogFileReader` for CloudTrail log files in S3, with the configured caps."""

    def __init__(self, client: S3Getter, settings: ServiceConfig) -> None:
        self.client = client
        self.settings = settings
        self.budget = LogFileBudget(settings.s3_max_records, settings.s3_max_seconds)

    async def open(self, ref: LogFileRef) -> BinaryIO:
        return await fetch_log_file(self.client, ref, max_bytes=self.settings.s3_max_object_bytes)

    def documents(self, stream: BinaryIO, ref: LogFileRef) -> Iterator[Decodable]:
        return documents_of_log_file(
            stream, log_file_location(ref), max_unzipped_bytes=self.settings.s3_max_unzipped_bytes
        )


class MeteredSink:
    """A sink whose failures are counted in the metrics (by sink name and whether a retry may help)."""

    def __init__(self, sink: Sink, metrics: Metrics) -> None:
        self.inner = sink
        self.name = sink.name
        self.metrics = metrics

    async def send(self, alert: Alert) -> None:
        try:
            await self.inner.send(alert)
        except DeliveryError as exc:
            self.metrics.sink_failed(self.name, retryable=exc.retryable)
            raise

    async def flush(self) -> None:
        try:
            await self.inner.flush()
        except DeliveryError as exc:
            self.metrics.sink_failed(self.name, retryable=exc.retryable)
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class RunSummary:
    counts: PipelineCounts
    forced: bool = False  # the drain deadline passed and in-flight work was cancelled
    crashed: bool = False  # the pipeline ended on its own with an error
    started: bool = True  # False: stopped during start-up, before anything was received

    @property
    def exit_code(self) -> int:
        return 1 if self.crashed else 0


class Service:
    """One replica of the consumer. `run()` returns once `request_stop()` was called and shutdown ended."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        sources: Sequence[ConsumedSource] | None = None,
        sinks: Mapping[str, Sink] | None = None,
        s3_factory: S3Factory = s3_client,
        iam_factory: IamFactory = iam_client,
        metrics: Metrics | None = None,
    ) -> None:
        self.loaded = loaded
        self.settings = loaded.config.service
        self.stats = RunStats()
        self.metrics = metrics or Metrics()
        self.sources = list(sources) if sources is not None else build_sources(loaded.sources)
        if not self.sources:
            raise ConfigError(f"{loaded.path}: run needs a sources section (see config/sentinel.yaml)")
        self._sinks = sinks
        self.s3_factory = s3_factory
        self.iam_factory = iam_factory
        self.stopping = asyncio.Event()
        self.health: HealthServer | None = None
        self.pipeline: Pipeline | None = None
        self._task: asyncio.Task[PipelineCounts] | None = None

    def request_stop(self) -> None:
        """What SIGTERM and SIGINT do: nothing else, the run loop acts on it."""
        if not self.stopping.is_set():
            log.info("shutdown_requested", grace_seconds=self.settings.grace_seconds)
        self.stopping.set()

    def is_alive(self) -> bool:
        """The loop answers (this runs in it) and the pipeline has not died. Not receiving is fine:
        backpressure from a slow sink legitimately stops the receiving."""
        return self._task is None or not self._task.done() or self.stopping.is_set()

    def is_ready(self) -> bool:
        """Every source can receive, and the state store answered the last message that asked it."""
        state_failing = self.pipeline is not None and self.pipeline.state_failing
        return all(source.ready for source in self.sources) and not state_failing

    def dispatcher(self, state: StateStore) -> Dispatcher:
        """`state`: the store `service.state` names; when every task shares it (not `memory`), grouping
        windows and Slack's pace are kept across tasks through it."""
        shared = None if self.settings.state == "memory" else SharedState(state, self.metrics.decided_alone)
        return configured_dispatcher(
            self.loaded,
            "run",
            self._sinks,
            wrap=lambda sink: MeteredSink(sink, self.metrics),
            shared_state=shared,
        )

    async def run(self) -> RunSummary:
        started = time.monotonic()
        async with AsyncExitStack() as stack:
            start = asyncio.create_task(self._start(stack))
            if await self._started_before_stop(start):
                pipeline, source, dispatcher = start.result()
                log.info(
                    "run_started",
                    sources=[source.name for source in self.sources],
                    detectors=len(self.loaded.detectors),
                    sinks=sorted(dispatcher.sinks),
                    workers=self.settings.workers,
                    health_port=self.health.port if self.health else None,
                )
                summary = await self._run_until_stopped(pipeline, source)
                await source.aclose()  # every worker has acked or retried: the pending deletes go out
            else:
                log.info("startup_interrupted", consequence="stopped before receiving any message")
                summary = RunSummary(PipelineCounts(), started=False)
        self._log_summary(summary, time.monotonic() - started)
        return summary

    async def _start(self, stack: AsyncExitStack) -> tuple[Pipeline, MergedSource, Dispatcher]:
        """Sinks, the S3 client, the health server and the queue checks; what is opened goes on `stack`."""
        settings = self.settings
        store = await self._state(stack)
        dispatcher = self.dispatcher(store)
        stack.push_async_callback(dispatcher.aclose)
        s3 = await stack.enter_async_context(self.s3_factory(settings.s3_region))
        self.health = HealthServer(
            settings.health_port, self.is_alive, self.is_ready, self.metrics, host=settings.health_host
        )
        await stack.enter_async_context(self.health)
        if settings.cloudwatch_emf is not None:
            self._start_emf(stack, settings.cloudwatch_emf)
        self.metrics.watch_stats(self.stats)
        source = MergedSource(self.sources)
        stack.push_async_callback(source.aclose)  # on any way out; a second close does nothing
        for consumed in self.sources:
            self.metrics.watch_source(consumed.name, consumed.counts.as_dict)
            await consumed.startup_check()
        if settings.iam_policy_lookup:
            await start_policy_lookup(stack, settings.iam_policy_refresh_seconds, self.iam_factory)
        if settings.audit_interval_seconds:
            self._start_audit(stack, dispatcher, store)
        self.pipeline = run_pipeline(
            self.loaded,
            source,
            self.stats,
            dispatcher,
            log_files=S3LogFiles(s3, settings),
            dedupe=AlertDeduper(store, settings.dedupe_window_seconds),
            metrics=self.metrics,
            on_event_time=self._observe_event_time,
        )
        return self.pipeline, source, dispatcher

    async def _state(self, stack: AsyncExitStack) -> StateStore:
        """The store `service.state` names (memory: bounded by dedupe_max_entries), closed with the stack."""
        settings = self.settings
        if settings.state == "memory":
            store: StateStore = MemoryStore(settings.dedupe_max_entries)
        else:
            store = await open_store(settings.state)
        stack.push_async_callback(store.aclose)
        log.info("state_opened", state=settings.state.split(":", 1)[0])
        return store

    def _start_emf(self, stack: AsyncExitStack, config: EmfConfig) -> None:
        """EMF lines every interval; the last one after the drain (the stack closes after the sources)."""
        emitter = EmfEmitter(self.metrics, config)
        stop = asyncio.Event()
        task = asyncio.create_task(emitter.run(stop))

        async def finish() -> None:
            stop.set()
            await task

        stack.push_async_callback(finish)

    def _start_audit(self, stack: AsyncExitStack, dispatcher: Dispatcher, store: StateStore) -> None:
        """The periodic audit, beside the consumer; stopped (not waited for past its current call) on exit."""
        from kvs_sentinel.audit.collect import collect_account
        from kvs_sentinel.audit.command import queue_urls
        from kvs_sentinel.audit.periodic import PeriodicAudit

        settings = self.settings
        region = settings.audit_region or os.environ.get("AWS_REGION") or "us-east-1"
        urls = queue_urls(self.loaded)
        audit = PeriodicAudit(
            self.loaded,
            dispatcher,
            store,
            lambda: collect_account(region, urls),
            interval=settings.audit_interval_seconds,
            reminder=settings.audit_reminder_seconds,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(audit.run(stop))

        async def finish() -> None:
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        stack.push_async_callback(finish)

    async def _started_before_stop(self, start: asyncio.Task[object]) -> bool:
        """Wait for start-up unless a stop comes first; then cancel it (a queue check can hang for
        minutes on an endpoint that does not answer) and say so. Start-up errors are raised."""
        stop_waiter = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({start, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_waiter.cancel()
        if start.done():
            start.result()
            return True
        start.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await start
        return False

    async def _run_until_stopped(self, pipeline: Pipeline, source: MergedSource) -> RunSummary:
        task = self._task = asyncio.create_task(pipeline.run(self.stopping))
        stop_waiter = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({task, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_waiter.cancel()
        summary = RunSummary(pipeline.counts)
        if not task.done():
            source.stop()  # no new receives; the long polls under way are cut short
            await asyncio.wait({task}, timeout=self.settings.drain_seconds)
        if not task.done():
            summary.forced = True
            log.warning(
                "drain_deadline_passed",
                cancelled_messages=source_in_flight(self.sources),
                consequence="not deleted: SQS delivers them again when their visibility timeout ends",
            )
            task.cancel()
            await asyncio.wait({task}, timeout=self.settings.close_seconds / 2)
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            summary.crashed = True
            log.error("pipeline_crashed", error=repr(error), exc_info=error)
        elif not self.stopping.is_set() and not summary.crashed:
            log.error("pipeline_ended", reason="every source ended without a stop request")
            summary.crashed = True
        return summary

    def _observe_event_time(self, event_time: object) -> None:
        if type(event_time) is str:
            self.metrics.event_seen(event_time)

    def _log_summary(self, summary: RunSummary, seconds: float) -> None:
        counts = summary.counts
        log.info(
            "run_finished",
            summary=f"{counts.messages_done} done, {counts.messages_failed} failed",
            messages_done=counts.messages_done,
            messages_failed=counts.messages_failed,
            alerts_delivered=counts.alerts_delivered,
            alerts_deduplicated=counts.alerts_deduplicated,
            log_files_read=counts.log_files_read,
            events=self.stats.events,
            forced=summary.forced,
            started=summary.started,
            seconds=round(seconds, 3),
            deleted=sum(source.counts.as_dict().get("deleted", 0) for source in self.sources),
            retried=sum(source.counts.as_dict().get("retried", 0) for source in self.sources),
        )


def source_in_flight(sources: Sequence[ConsumedSource]) -> int:
    return sum(source.in_flight for source in sources)


async def serve(loaded: LoadedConfig) -> int:
    """The `run` command: a Service whose stop is SIGTERM or SIGINT, during start-up too; 0 after a
    clean stop. (Before this runs, `startup_signals` makes a stop signal exit 0 at once.)"""
    service = Service(loaded)
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, service.request_stop)
    log.info("run_starting", sources=[source.name for source in service.sources])
    try:
        summary = await service.run()
    finally:
        for signum in STOP_SIGNALS:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
    return summary.exit_code
