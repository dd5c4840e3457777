"""Suppressions and grouping: known noise is silenced, bursts become one alert plus one summary."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from kvs_sentinel.cli import main
from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.flood import Grouper, GroupingSpec, Suppressions, SuppressionSpec
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.shared_windows import SharedWindows
from kvs_sentinel.sinks.base import Sink
from kvs_sentinel.state.base import SharedState, StateError, StateStore
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.testing import FakeClock, RecordingSink
from tests.support.alert_samples import sample_alert
from tests.support.logging_reset import fresh_logging

__all__ = ["fresh_logging"]  # autouse here too

TODAY = dt.date(2026, 2, 3)


def suppression(match: dict[str, object], expires: dt.date = TODAY) -> SuppressionSpec:
    return SuppressionSpec.model_validate({"match": match, "reason": "CI runner egress", "expires": expires})


def test_a_suppression_silences_matching_alerts_only() -> None:
    suppressions = Suppressions(
        [suppression({"detector": "kvs-producer-*", "source_ip": {"cidr": ["198.51.100.0/24"]}})],
        today=lambda: TODAY,
    )
    assert suppressions.match(sample_alert()) is not None
    assert suppressions.match(sample_alert(source_ip="203.0.113.9")) is None
    assert suppressions.match(sample_alert(detector="kvs-iam-wildcard-grant")) is None
    assert sum(suppressions.counts.values()) == 1


def test_an_expired_suppression_stops_applying_the_day_after_its_date() -> None:
    today = [TODAY]
    suppressions = Suppressions([suppression({"principal": "*kvs-producer-cam1*"})], today=lambda: today[0])
    assert suppressions.match(sample_alert()) is not None
    today[0] = TODAY + dt.timedelta(days=1)
    assert suppressions.match(sample_alert()) is None
    assert [s.index for s in suppressions.expired()] == [0]


def test_a_suppression_without_reason_or_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="expires"):
        SuppressionSpec.model_validate({"match": {"detector": "x"}, "reason": "noise"})
    with pytest.raises(ValueError, match="reason"):
        SuppressionSpec.model_validate({"match": {"detector": "x"}, "expires": "2030-01-01"})
    with pytest.raises(ValueError, match="unknown operator"):
        SuppressionSpec.model_validate(
            {"match": {"source_ip": {"cidrr": "10/8"}}, "reason": "x y", "expires": TODAY}
        )


def test_validate_reports_expired_suppressions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = Path(__file__).resolve().parents[1] / "config" / "packs" / "kvs.yaml"
    path = tmp_path / "sentinel.yaml"
    path.write_text(
        f"packs: [{pack}]\n"
        "suppressions:\n"
        "  - match: {detector: kvs-untrusted-source-ip, source_ip: 198.51.100.7}\n"
        "    reason: old office egress, SEC-42\n"
        "    expires: 2020-01-31\n"
        "  - match: {detector: kvs-untrusted-source-ip}\n"
        "    reason: migration window, SEC-43\n"
        "    expires: 2999-12-31\n"
    )
    assert main(["validate", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: suppressions[0] (old office egress, SEC-42) expired on 2020-01-31 and no longer applies"
        in out
    )
    assert "suppressions[1]" not in out


# ------------------------------------------------------------------ grouping


def grouping(window: float = 300, **more: object) -> GroupingSpec:
    return GroupingSpec.model_validate({"window_seconds": window, **more})


async def burst(dispatcher: Dispatcher, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        await dispatcher.deliver(
            [sample_alert(event_id=f"e-{n}", event_time=f"2026-02-03T10:{n // 60 % 60:02}:{n % 60:02}Z")]
        )


async def test_a_burst_of_1000_identical_alerts_is_one_message_and_one_summary() -> None:
    clock, sink = FakeClock(), RecordingSink("slack")
    dispatcher = Dispatcher({"slack": sink}, grouping=grouping(), clock=clock)
    await burst(dispatcher, 1000)
    assert [a.event_id for a in sink.alerts] == ["e-0"]
    clock.advance(300)
    await dispatcher.emit_due()
    assert len(sink.alerts) == 2
    summary = sink.alerts[1]
    assert summary.details["grouped"]["repeats"] == 999
    assert summary.details["grouped"]["sample_event_ids"] == ["e-1", "e-2", "e-3", "e-4", "e-5"]
    assert summary.title.endswith("(repeated 999 times)")
    assert summary.summary.startswith("999 more alerts like the first (same detector, principal arn:aws")
    assert "in the 5 min after it" in summary.summary


async def test_each_window_gets_its_own_first_alert_and_summary() -> None:
    clock, sink = FakeClock(), RecordingSink("slack")
    dispatcher = Dispatcher({"slack": sink}, grouping=grouping(60), clock=clock)
    await burst(dispatcher, 500)
    clock.advance(60)
    await burst(dispatcher, 500, start=500)  # the first of these opens a new window
    clock.advance(60)
    await dispatcher.emit_due()
    kinds = ["summary" if "grouped" in a.details else a.event_id for a in sink.alerts]
    assert kinds == ["e-0", "summary", "e-500", "summary"]
    assert [a.details["grouped"]["repeats"] for a in sink.alerts if "grouped" in a.details] == [499, 499]


async def test_different_keys_and_escalated_severities_are_not_grouped_together() -> None:
    sink = RecordingSink("slack")
    dispatcher = Dispatcher({"slack": sink}, grouping=grouping(), clock=FakeClock())
    await dispatcher.deliver([sample_alert(event_id="a")])
    await dispatcher.deliver([sample_alert(event_id="b", resource="back-door")])
    await dispatcher.deliver([sample_alert(event_id="c", severity="high")])
    await dispatcher.deliver([sample_alert(event_id="d")])
    assert [a.event_id for a in sink.alerts] == ["a", "b", "c"]


async def test_per_detector_key_fields_replace_the_global_key() -> None:
    sink = RecordingSink("slack")
    spec = grouping(detectors={"kvs-producer-consumer-endpoint": ["source_ip"]})
    dispatcher = Dispatcher({"slack": sink}, grouping=spec, clock=FakeClock())
    await dispatcher.deliver([sample_alert(event_id="a")])
    await dispatcher.deliver([sample_alert(event_id="b", resource="back-door")])  # same source IP
    await dispatcher.deliver([sample_alert(event_id="c", source_ip="203.0.113.1")])
    assert [a.event_id for a in sink.alerts] == ["a", "c"]


async def test_open_windows_are_summarised_at_shutdown() -> None:
    clock, sink = FakeClock(), RecordingSink("slack")
    dispatcher = Dispatcher({"slack": sink}, grouping=grouping(), clock=clock)
    await burst(dispatcher, 10)
    clock.advance(42)
    await dispatcher.drain()
    summary = sink.alerts[-1]
    assert summary.details["grouped"] | {"sample_event_ids": []} == summary.details["grouped"] | {
        "repeats": 9,
        "closed": "shutdown",
        "sample_event_ids": [],
    }
    assert "in the 42 s after it, before shutdown" in summary.summary


async def test_a_single_alert_needs_no_summary() -> None:
    clock, sink = FakeClock(), RecordingSink("slack")
    dispatcher = Dispatcher({"slack": sink}, grouping=grouping(), clock=clock)
    await burst(dispatcher, 1)
    await dispatcher.drain()
    assert len(sink.alerts) == 1


async def test_too_many_open_windows_close_the_oldest_early() -> None:
    grouper = Grouper(grouping(max_groups=2), FakeClock())
    for resource in ("a", "b"):
        assert await grouper.observe("slack", sample_alert(resource=resource, event_id=resource))
        await grouper.settle("slack", sample_alert(resource=resource), True)
    assert not await grouper.observe("slack", sample_alert(resource="a", event_id="a2"))
    assert await grouper.observe("slack", sample_alert(resource="c", event_id="c"))
    assert grouper.open_groups == 2
    [(sink, summary)] = await grouper.due()
    assert sink == "slack"
    assert summary.details["grouped"]["closed"] == "evicted"


async def test_grouping_off_sends_everything() -> None:
    grouper = Grouper(grouping(0), FakeClock())
    assert all([await grouper.observe("s", sample_alert()) for _ in range(5)])


# ------------------------------------------------------------------ grouping shared by tasks


def two_tasks(
    store: StateStore, clock: FakeClock, *sinks: Sink, told: list[str] | None = None
) -> list[Dispatcher]:
    """Two tasks' dispatchers, each with its own sink, whose windows are shared through `store`; what
    they decide alone is told to `told`."""
    shared = SharedState(store, (told if told is not None else []).append)
    return [
        Dispatcher(
            {"slack": sink},
            grouping=grouping(60),
            clock=clock,
            shared_windows=SharedWindows(shared, 60, wall=clock.monotonic),
        )
        for sink in sinks
    ]


def summaries(sink: RecordingSink) -> list[dict[str, Any]]:
    return [alert.details["grouped"] for alert in sink.alerts if "grouped" in alert.details]


async def all_due(tasks: list[Dispatcher], clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    for task in tasks:
        await task.emit_due()


async def test_a_burst_split_between_two_tasks_sends_one_first_alert_and_one_summary() -> None:
    clock, store = FakeClock(), MemoryStore()
    sinks = RecordingSink("slack"), RecordingSink("slack")
    tasks = two_tasks(store, clock, *sinks)
    for n in range(20):
        await tasks[n % 2].deliver([sample_alert(event_id=f"e-{n}")])
    assert [a.event_id for a in sinks[0].alerts] == ["e-0"]
    assert sinks[1].alerts == []
    await all_due(tasks, clock, 60)  # the window ends: each task hands its count in
    assert [summaries(sink) for sink in sinks] == [[], []]
    await all_due(tasks, clock, 5)  # the task that opened it summarises every task's repeats
    await all_due(tasks, clock, 5)  # the other task finds the summary taken
    assert [[r["repeats"] for r in summaries(sink)] for sink in sinks] == [[19], []]
    assert summaries(sinks[0])[0]["counted_by"] == "every task"
    assert sinks[0].alerts[1].summary.startswith("19 more alerts counted by every task like the first")


async def test_the_next_shared_window_opens_on_whichever_task_gets_its_first_alert() -> None:
    clock, store = FakeClock(), MemoryStore()
    sinks = RecordingSink("slack"), RecordingSink("slack")
    tasks = two_tasks(store, clock, *sinks)
    await tasks[0].deliver([sample_alert(event_id="e-0")])
    clock.advance(30)
    await tasks[1].deliver([sample_alert(event_id="e-1")])  # counted into the window that ends at 60 s
    clock.advance(31)
    await tasks[1].deliver([sample_alert(event_id="e-2")])  # the shared window ended: this one opens the next
    assert [a.event_id for a in sinks[1].alerts] == ["e-2"]
    await all_due(tasks, clock, 10)
    assert [[r["repeats"] for r in summaries(sink)] for sink in sinks] == [[1], []]


async def test_when_the_task_that_opened_a_window_stops_another_summarises_what_the_rest_counted() -> None:
    clock, store = FakeClock(), MemoryStore()
    sinks = RecordingSink("slack"), RecordingSink("slack")
    tasks = two_tasks(store, clock, *sinks)
    for n in range(8):
        await tasks[n % 2].deliver([sample_alert(event_id=f"e-{n}")])
    clock.advance(30)
    await tasks[0].drain()  # ECS stops the task that opened the window: it summarises its own 3 repeats
    await all_due(tasks[1:], clock, 30)
    await all_due(tasks[1:], clock, 5)  # the opener would have taken the summary by now
    assert summaries(sinks[1]) == []
    await all_due(tasks[1:], clock, 5)
    assert [[r["repeats"] for r in summaries(sink)] for sink in sinks] == [[3], [4]]  # all 7, once each
    assert summaries(sinks[0])[0]["closed"] == "shutdown"


async def test_a_count_handed_in_after_the_summary_was_taken_is_summarised_by_its_task() -> None:
    clock, store = FakeClock(), MemoryStore()
    sinks = RecordingSink("slack"), RecordingSink("slack")
    tasks = two_tasks(store, clock, *sinks)
    for n in range(6):
        await tasks[n % 2].deliver([sample_alert(event_id=f"e-{n}")])
    await all_due(tasks[:1], clock, 65)  # the second task is too busy to hand its count in on time
    await all_due(tasks[1:], clock, 0)
    assert [[r["repeats"] for r in summaries(sink)] for sink in sinks] == [[2], [3]]
    assert summaries(sinks[1])[0]["first_sent_by"] == "another task"


async def test_a_first_alert_that_fails_is_released_for_its_retry_on_another_task() -> None:
    clock, store = FakeClock(), MemoryStore()
    failing, healthy = RecordingSink("slack"), RecordingSink("slack")
    failing.fail_next = 1
    tasks = two_tasks(store, clock, failing, healthy)
    with pytest.raises(DeliveryError):
        await tasks[0].deliver([sample_alert(event_id="e-0")])
    await tasks[1].deliver([sample_alert(event_id="e-0")])  # SQS redelivers the message to task two
    assert [a.event_id for a in healthy.alerts] == ["e-0"]


async def test_a_task_hands_its_count_in_on_time_though_a_window_it_opened_earlier_ends_later() -> None:
    clock, store = FakeClock(autoadvance=False), MemoryStore()
    sinks = RecordingSink("slack"), RecordingSink("slack")
    tasks = two_tasks(store, clock, *sinks)

    async def tick(seconds: int) -> None:
        for _ in range(seconds):
            clock.advance(1)
            for _ in range(20):  # each dispatcher's timer runs what the second made due
                await asyncio.sleep(0)

    async with tasks[0].running(), tasks[1].running():
        await tasks[0].deliver([sample_alert(event_id="a-0")])  # task one opens A: it ends at 60 s
        await tick(30)
        await tasks[1].deliver([sample_alert(event_id="b-0", resource="back-door")])  # B ends at 90 s
        await tick(5)
        await tasks[1].deliver([sample_alert(event_id="a-1")])  # a repeat of A, counted by task two
        await tick(40)  # A ended at 60 s; task one took its summary at 65 s
        assert [[r["repeats"] for r in summaries(sink)] for sink in sinks] == [[1], []]


async def test_a_store_that_fails_leaves_each_task_to_decide_alone() -> None:
    clock, told = FakeClock(), []
    sinks = RecordingSink("slack"), RecordingSink("slack")
    tasks = two_tasks(_UnreachableStore(), clock, *sinks, told=told)
    for n in range(4):
        await tasks[n % 2].deliver([sample_alert(event_id=f"e-{n}")])
    assert [[a.event_id for a in sink.alerts] for sink in sinks] == [["e-0"], ["e-1"]]
    assert told == ["group_window", "group_window"]  # the metrics count each decision taken alone


async def test_a_store_that_fails_to_count_leaves_each_task_to_summarise_its_own_repeats() -> None:
    clock, told = FakeClock(), []
    sinks = RecordingSink("slack"), RecordingSink("slack")
    tasks = two_tasks(_UncountingStore(), clock, *sinks, told=told)
    for n in range(6):
        await tasks[n % 2].deliver([sample_alert(event_id=f"e-{n}")])
    await all_due(tasks, clock, 60)
    assert [[r["repeats"] for r in summaries(sink)] for sink in sinks] == [[2], [3]]  # none lost
    assert told == ["group_window", "group_window"]


class _UncountingStore(MemoryStore):
    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        raise StateError("dynamodb:t: update_item: ThrottlingException", retryable=True)


class _UnreachableStore(MemoryStore):
    async def claim(self, key: str, *, now: float, ttl: float) -> bool:
        raise StateError("dynamodb:t: put_item: could not connect", retryable=True)
