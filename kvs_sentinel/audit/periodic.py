"""The audit inside `run` (`service.audit_interval_seconds`): findings go through the run's routes and
sinks; an unchanged finding is not sent again until `audit_reminder_seconds` pass. With a shared state
store (`service.state: dynamodb:TABLE`), one task audits per interval and a finding sent by one task is
not sent by another."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from kvs_sentinel.alerts import Alert
from kvs_sentinel.audit.account import AccountState
from kvs_sentinel.audit.collect import AuditReadError
from kvs_sentinel.audit.command import judge
from kvs_sentinel.config import LoadedConfig
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.state.base import StateError, StateStore

log = structlog.get_logger("kvs_sentinel.audit")

Collect = Callable[[], Awaitable[AccountState]]
VOLATILE_DETAILS = frozenset({"age_days", "last_used"})  # change every day without the finding changing


def fingerprint(alert: Alert) -> str:
    """What makes a finding "changed": its check, resource, severity and details (less the clock's)."""
    details = {key: value for key, value in alert.details.items() if key not in VOLATILE_DETAILS}
    text = json.dumps([alert.detector, alert.resource, alert.severity, details], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class PeriodicAudit:
    def __init__(
        self,
        loaded: LoadedConfig,
        dispatcher: Dispatcher,
        store: StateStore,
        collect: Collect,
        *,
        interval: float,
        reminder: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.loaded = loaded
        self.dispatcher = dispatcher
        self.store = store
        self.collect = collect
        self.interval = interval
        self.reminder = reminder
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)

    async def once(self) -> Sequence[Alert]:
        """One audit; the findings sent. Failures are logged, never raised: the consumer goes on."""
        now = self.clock()
        try:
            if not await self.store.claim(
                f"audit-run:{int(now // self.interval)}", now=now, ttl=self.interval
            ):
                return ()  # another task audits this interval
            findings = judge(await self.collect(), self.loaded)
            due = [f for f in findings if not await self.store.is_claimed(self._key(f), now=now)]
            if due:
                await self.dispatcher.deliver(due)
            for finding in due:  # only once delivered: a failed delivery is tried again next interval
                await self.store.claim(self._key(finding), now=now, ttl=self.reminder)
        except AuditReadError as exc:
            log.error("audit_failed", error=str(exc))
            return ()
        except (DeliveryError, StateError) as exc:
            log.error("audit_not_delivered", error=str(exc))
            return ()
        log.info("audit_finished", findings=len(findings), sent=len(due))
        return due

    @staticmethod
    def _key(finding: Alert) -> str:
        return f"audit-sent:{finding.event_id}:{fingerprint(finding)}"
