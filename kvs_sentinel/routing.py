"""Which sinks get an alert, and delivering it there: suppress → route → group → send → flush.

Routes are tried in order; the first that matches decides, unless it says `continue: true` (then later
routes may add sinks, as in Alertmanager). An alert no route takes goes to `default_route`.

`Dispatcher.deliver` raises DeliveryError unless every alert reached every sink it was routed to, so the
caller acknowledges a message only then. Suppressed alerts and grouped repeats count as handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from pydantic import BaseModel, ConfigDict, Field

from kvs_sentinel.alerts import Alert
from kvs_sentinel.clock import SYSTEM_CLOCK, Clock
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.flood import Grouper, GroupingSpec, Suppressions
from kvs_sentinel.severity import SEVERITY_NAMES, SeverityName
from kvs_sentinel.shared_windows import SharedWindows
from kvs_sentinel.sinks.base import Sink

log = structlog.get_logger("kvs_sentinel.delivery")
_MAX_SUMMARY_ATTEMPTS = 3
# the longest the timer sleeps: a window opened while it sleeps may end first (a window shared with
# other tasks ends when theirs does, not in the order windows opened here)
IDLE_TICK_SECONDS = 1.0


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    name: str | None = None
    min_severity: SeverityName | None = None
    tags: list[str] = Field(default=[], description="the alert has any of these tags")
    detectors: list[str] = Field(default=[], description="detector id globs, any of")
    accounts: list[str] = Field(default=[], description="account ids, any of")
    sinks: list[str] = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")


@dataclass(frozen=True)
class Route:
    spec: RouteSpec

    def matches(self, alert: Alert) -> bool:
        spec = self.spec
        if (
            spec.min_severity is not None
            and SEVERITY_NAMES.get(alert.severity, 0) < SEVERITY_NAMES[spec.min_severity]
        ):
            return False
        if spec.tags and not set(spec.tags).intersection(alert.tags):
            return False
        if spec.detectors and not any(fnmatch.fnmatchcase(alert.detector, p) for p in spec.detectors):
            return False
        return not spec.accounts or alert.account in spec.accounts


class Router:
    def __init__(self, routes: Sequence[RouteSpec], default: Sequence[str]) -> None:
        self.routes = tuple(Route(spec) for spec in routes)
        self.default = tuple(default)

    def route(self, alert: Alert) -> tuple[str, ...]:
        chosen: list[str] = []
        for route in self.routes:
            if route.matches(alert):
                chosen.extend(name for name in route.spec.sinks if name not in chosen)
                if not route.spec.continue_:
                    break
        return tuple(chosen) if chosen else self.default


@dataclass
class DeliveryCounts:
    delivered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    unrouted: int = 0
    summaries_sent: int = 0
    summaries_lost: int = 0


class Dispatcher:
    """Owns the sinks of a run, the router and the flood controls; shared by every worker."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        router: Router | None = None,
        *,
        suppressions: Suppressions | None = None,
        grouping: GroupingSpec | None = None,
        clock: Clock = SYSTEM_CLOCK,
        shared_windows: SharedWindows | None = None,
    ) -> None:
        """`shared_windows`: grouping windows open once across the tasks sharing its store."""
        self.sinks = dict(sinks)
        self.router = router or Router((), tuple(self.sinks))
        self.suppressions = suppressions or Suppressions(())
        grouping = grouping or GroupingSpec.model_validate({"window_seconds": 0})
        self.grouper = Grouper(grouping, clock, shared_windows)
        self.clock = clock
        self.counts = DeliveryCounts()
        self._retry_summaries: list[tuple[str, Alert, int]] = []
        # `delivery_finished` is the closing line of run and replay --deliver; plain replay prints its
        # own summary, and an INFO JSON line would land among it
        self._totals_level = "info"

    @classmethod
    def broadcast(cls, sinks: Sequence[Sink]) -> Dispatcher:
        """Every alert to every sink, nothing grouped or suppressed (`replay` writing JSON Lines)."""
        dispatcher = cls({sink.name: sink for sink in sinks})
        dispatcher._totals_level = "debug"
        return dispatcher

    async def deliver(self, alerts: Sequence[Alert]) -> None:
        """Deliver alerts; raises DeliveryError naming each sink that failed (after trying the others)."""
        deadline = self.grouper.next_deadline()
        if deadline is not None and deadline <= self.clock.monotonic():
            await self.emit_due()  # a window that just ended is summarised before the next one opens
        failures: dict[str, DeliveryError] = {}
        accepted: list[tuple[str, Alert]] = []
        for alert in alerts:
            if (suppression := self.suppressions.match(alert)) is not None:
                log.debug("alert_suppressed", detector=alert.detector, suppression=suppression.label)
                continue
            names = self.router.route(alert)
            if not names:
                self.counts.unrouted += 1
                log.warning("alert_unrouted", detector=alert.detector, event_id=alert.event_id)
            for name in names:
                if name in failures or not await self.grouper.observe(name, alert):
                    continue
                delivered = False
                try:
                    await self.sinks[name].send(alert)
                    delivered = True
                except DeliveryError as exc:
                    failures[name] = exc
                finally:
                    if delivered:
                        accepted.append((name, alert))
                    else:
                        await self.grouper.settle(name, alert, False)
        flush_failed: set[str] = set()
        for name in dict.fromkeys(name for name, _ in accepted):
            try:
                await self.sinks[name].flush()
            except DeliveryError as exc:
                failures[name] = exc
                flush_failed.add(name)
        for name, alert in accepted:
            ok = name not in flush_failed  # a failed flush loses what send() had buffered
            await self.grouper.settle(name, alert, ok)
            if ok:
                self.counts.delivered[name] += 1
        if failures:
            for name in failures:
                self.counts.failed[name] += 1
            raise DeliveryError(
                "; ".join(f"sink {name}: {exc}" for name, exc in failures.items()),
                retryable=all(exc.retryable for exc in failures.values()),
            )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """While the block runs, summaries go out as grouping windows end (the dispatcher's own timer);
        when it ends normally, every open window is closed and summarised (`drain`)."""
        finished = asyncio.Event()
        timer = asyncio.create_task(self._summarise_until(finished))
        try:
            yield
        finally:
            finished.set()
            await timer
        await self.drain()

    async def _summarise_until(self, finished: asyncio.Event) -> None:
        while not finished.is_set():
            delay = self.seconds_to_next_deadline()
            sleeper = asyncio.ensure_future(
                self.clock.sleep(IDLE_TICK_SECONDS if delay is None else min(delay, IDLE_TICK_SECONDS))
            )
            waiter = asyncio.ensure_future(finished.wait())
            try:
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waiter):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if not finished.is_set():
                await self.emit_due()

    def seconds_to_next_deadline(self) -> float | None:
        if self._retry_summaries:
            return 1.0
        deadline = self.grouper.next_deadline()
        return None if deadline is None else max(0.0, deadline - self.clock.monotonic())

    async def emit_due(self) -> None:
        """Send the summaries of windows that have ended (and retry summaries that failed before)."""
        await self._send_summaries(await self.grouper.due(), final=False)

    async def drain(self) -> None:
        """Shutdown: close every window now and send its summary; a summary that fails is logged."""
        await self._send_summaries(await self.grouper.close_all(), final=True)
        self._log_totals()

    async def _send_summaries(self, summaries: list[tuple[str, Alert]], *, final: bool) -> None:
        pending = [(name, alert, 0) for name, alert in summaries] + self._retry_summaries
        self._retry_summaries = []
        for name, alert, attempts in pending:
            sink = self.sinks[name]
            try:
                await sink.send(alert)
                await sink.flush()
            except DeliveryError as exc:
                if final or attempts + 1 >= _MAX_SUMMARY_ATTEMPTS:
                    self.counts.summaries_lost += 1
                    log.error("group_summary_lost", sink=name, detector=alert.detector, error=str(exc))
                else:
                    self._retry_summaries.append((name, alert, attempts + 1))
                    log.warning("group_summary_failed", sink=name, detector=alert.detector, error=str(exc))
                continue
            self.counts.summaries_sent += 1
            log.info("group_summary_delivered", sink=name, detector=alert.detector)

    def _log_totals(self) -> None:
        getattr(log, self._totals_level)(
            "delivery_finished",
            delivered=dict(self.counts.delivered),
            failed=dict(self.counts.failed),
            grouped=self.grouper.repeats,
            duplicates=self.grouper.duplicates,
            summaries_sent=self.counts.summaries_sent,
            summaries_lost=self.counts.summaries_lost,
            suppressed=sum(self.suppressions.counts.values()),
            unrouted=self.counts.unrouted,
        )

    def render_totals(self) -> str:
        delivered = ", ".join(f"{name} {n}" for name, n in sorted(self.counts.delivered.items())) or "none"
        line = f"delivered: {delivered}"
        if self.grouper.repeats:
            line += f"; grouped repeats {self.grouper.repeats} ({self.counts.summaries_sent} summaries)"
        if self.suppressions.counts:
            line += f"; suppressed {sum(self.suppressions.counts.values())}"
        if self.counts.unrouted:
            line += f"; unrouted {self.counts.unrouted}"
        if self.counts.summaries_lost:
            line += f"; summaries lost {self.counts.summaries_lost}"
        return line

    async def aclose(self) -> None:
        for sink in self.sinks.values():
            await sink.aclose()
