"""The audit inside `run`: new and changed findings are sent, unchanged ones wait for the reminder, one
task audits per interval, and a failed delivery is tried again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from kvs_sentinel.alerts import Alert
from kvs_sentinel.audit.account import AccountState, HeldPolicy, Identity
from kvs_sentinel.audit.periodic import PeriodicAudit
from kvs_sentinel.config import load_config
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.state.memory import MemoryStore

CONFIG = Path(__file__).parents[1] / "config" / "sentinel.yaml"
ACCOUNT = "111122223333"
HOUR, DAY = 3600.0, 86400.0


class Recorder:
    def __init__(self) -> None:
        self.name = "recorder"
        self.sent: list[Alert] = []
        self.failing = False

    async def send(self, alert: Alert) -> None:
        if self.failing:
            raise DeliveryError("down", retryable=True)
        self.sent.append(alert)

    async def flush(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def producer(*actions: str) -> Identity:
    statement = {"Effect": "Allow", "Action": [f"kinesisvideo:{a}" for a in actions], "Resource": "*"}
    return Identity(
        "role",
        "kvs-producer-cam1",
        f"arn:aws:iam::{ACCOUNT}:role/kvs-producer-cam1",
        (HeldPolicy("inline produce", (json.loads(json.dumps(statement)),)),),
    )


class Account:
    def __init__(self) -> None:
        self.state = AccountState(ACCOUNT, "eu-west-1", identities=[producer("PutMedia", "GetMedia")])

    async def collect(self) -> AccountState:
        return self.state


def audit(store: MemoryStore, recorder: Recorder, account: Account, clock: list[float]) -> PeriodicAudit:
    loaded = load_config(CONFIG, deliver=False, consume=False)
    return PeriodicAudit(
        loaded,
        Dispatcher.broadcast([recorder]),
        store,
        account.collect,
        interval=HOUR,
        reminder=DAY,
        clock=lambda: clock[0],
    )


def sent_checks(alerts: Sequence[Alert]) -> list[str]:
    return sorted(alert.detector for alert in alerts)


async def test_unchanged_findings_wait_for_the_reminder_and_changed_ones_go_now() -> None:
    store, recorder, account, clock = MemoryStore(), Recorder(), Account(), [1_000_000.0]
    periodic = audit(store, recorder, account, clock)
    first = await periodic.once()
    assert "kvs-audit-producer-excess-grant" in sent_checks(first)
    assert "kvs-audit-no-trail" in sent_checks(first)  # the account has no trail at all
    clock[0] += HOUR
    assert await periodic.once() == []  # nothing changed
    account.state.identities = [producer("PutMedia", "GetMedia", "GetClip")]
    clock[0] += HOUR
    assert sent_checks(await periodic.once()) == ["kvs-audit-producer-excess-grant"]  # it changed
    clock[0] += DAY
    assert sent_checks(await periodic.once()) == sent_checks(first)  # the reminder
    assert len(recorder.sent) == 2 * len(first) + 1


async def test_one_task_audits_per_interval() -> None:
    store, clock = MemoryStore(), [1_000_000.0]
    first, second = Recorder(), Recorder()
    assert await audit(store, first, Account(), clock).once()
    assert await audit(store, second, Account(), clock).once() == ()
    assert second.sent == []


async def test_a_failed_delivery_is_tried_again_next_interval() -> None:
    store, recorder, account, clock = MemoryStore(), Recorder(), Account(), [1_000_000.0]
    periodic = audit(store, recorder, account, clock)
    recorder.failing = True
    assert await periodic.once() == ()
    recorder.failing = False
    clock[0] += HOUR
    assert "kvs-audit-producer-excess-grant" in sent_checks(await periodic.once())
