"""Stateful detectors (`threshold`, `first_seen`) judged on event time through every state backend:
windows, learning, expiry, idempotence under redelivery, several tasks on one store, the local cache,
validation, and stateful examples (tests as data)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from kvs_sentinel.alerts import Alert
from kvs_sentinel.app import processor_for, stateful_judge
from kvs_sentinel.detectors.stateful import event_epoch
from kvs_sentinel.envelopes import Document
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.events import Location
from kvs_sentinel.examples import FORMS, run_examples
from kvs_sentinel.state.base import Membership, StateError, StateStore
from kvs_sentinel.state.dynamodb import DynamoDbStore
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.state.registry import open_store
from kvs_sentinel.state.sqlite import SqliteStore
from kvs_sentinel.stats import RunStats
from tests.aws_fixtures import moto_server
from tests.support.dynamodb_clients import Failing
from tests.support.state_tables import TABLE, make_table, store
from tests.support.stateful_detectors import (
    DAY,
    DENIED_BURST,
    HOUR,
    MANY_NETWORKS,
    MINUTE,
    NEW_NETWORK,
    OTHER,
    PRODUCER,
    START,
    Judged,
    call,
    detector,
    event_at,
    load,
)

__all__ = ["moto_server", "store"]


# ---------------------------------------------------------------- threshold


async def test_a_burst_of_denied_calls_alerts_once_per_principal_and_window(
    tmp_path: Path, store: StateStore
) -> None:
    judged = Judged(load(tmp_path, DENIED_BURST), store)
    assert await judged(call(1, START, error="AccessDenied"), call(2, START + 60, error="AccessDenied")) == []
    assert await judged(call(3, START + 120)) == []  # not denied: not matched, not counted
    crossing = await judged(call(4, START + 180, error="AccessDeniedException"))
    assert [alert.event_id for alert in crossing] == [call(4, 0)["eventID"]]
    assert crossing[0].details["count"] == 3
    assert crossing[0].details["window_start"] == "2026-01-01T00:00:00Z"
    assert await judged(call(5, START + 240, error="AccessDenied")) == []  # one alert per window
    other = [call(10 + i, START + 300, error="AccessDenied", principal=OTHER) for i in range(2)]
    assert await judged(*other) == []  # counted apart from the first principal
    next_window = [call(20 + i, START + 10 * MINUTE + i, error="AccessDenied") for i in range(3)]
    assert len(await judged(*next_window)) == 1


async def test_a_redelivered_event_is_counted_once(tmp_path: Path, store: StateStore) -> None:
    judged = Judged(load(tmp_path, DENIED_BURST), store)
    same = call(1, START, error="AccessDenied")
    assert await judged(same, same, same, same) == []
    assert (
        len(await judged(call(2, START + 1, error="AccessDenied"), call(3, START + 2, error="AccessDenied")))
        == 1
    )


class CountFailsOnce(MemoryStore):
    """A store whose first count fails after the event's claim succeeded (DynamoDB throttling the second
    of two requests)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        if not self.failed:
            self.failed = True
            raise StateError("dynamodb:t: update_item: ThrottlingException", retryable=True)
        return await super().count(key, amount, now=now, ttl=ttl)


async def test_an_event_whose_count_failed_is_counted_when_its_message_is_retried(tmp_path: Path) -> None:
    judged = Judged(load(tmp_path, DENIED_BURST), CountFailsOnce())
    first = call(1, START, error="AccessDenied")
    with pytest.raises(StateError):
        await judged(first)
    assert await judged(first) == []  # the retry
    crossing = await judged(
        call(2, START + 1, error="AccessDenied"), call(3, START + 2, error="AccessDenied")
    )
    assert [alert.details["count"] for alert in crossing] == [3]


async def test_a_redelivery_of_the_crossing_event_alerts_again_and_no_other_does(
    tmp_path: Path, store: StateStore
) -> None:
    # the first delivery of its alert may have failed: the pipeline's dedupe drops it if it did not
    judged = Judged(load(tmp_path, DENIED_BURST), store)
    events = [call(i, START + i, error="AccessDenied") for i in range(1, 5)]
    assert len(await judged(*events)) == 1
    assert [a.event_id for a in await judged(events[2])] == [events[2]["eventID"]]
    assert await judged(events[0], events[3]) == []


async def test_late_events_count_in_the_window_of_their_own_time(tmp_path: Path, store: StateStore) -> None:
    judged = Judged(load(tmp_path, DENIED_BURST), store)
    assert await judged(call(1, START + 11 * MINUTE, error="AccessDenied")) == []
    late = [call(2, START + 1, error="AccessDenied"), call(3, START + 2, error="AccessDenied")]
    assert await judged(*late) == []  # 2 in the first window, 1 in the second
    alerts = await judged(call(4, START + 3, error="AccessDenied"))
    assert alerts[0].details["window_start"] == "2026-01-01T00:00:00Z"


async def test_a_distinct_count_of_networks_alerts_at_the_third_network(
    tmp_path: Path, store: StateStore
) -> None:
    judged = Judged(load(tmp_path, MANY_NETWORKS), store)
    same_24 = [call(1, START, ip="198.51.100.7"), call(2, START + 1, ip="198.51.100.99")]
    assert await judged(*same_24, call(3, START + 2, ip="2001:db8:1:2::1")) == []
    assert await judged(call(4, START + 3, ip="2001:db8:1:ffff::9")) == []  # the same /48
    alerts = await judged(call(5, START + 4, ip="203.0.113.50"))
    assert alerts[0].details["values"] == ["198.51.100.0/24", "2001:db8:1::/48", "203.0.113.0/24"]
    assert await judged(call(6, START + 5, ip="192.0.2.1")) == []
    assert len(await judged(*(call(10 + i, START + HOUR + i, ip=f"10.{i}.0.1") for i in range(3)))) == 1


# ---------------------------------------------------------------- first_seen


async def test_a_new_network_alerts_only_after_the_learning_period(tmp_path: Path, store: StateStore) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), store)
    learning = [
        call(1, START, ip="198.51.100.7"),
        call(2, START + HOUR, ip="203.0.113.9"),  # new, but the producer is still learning
    ]
    assert await judged(*learning) == []
    assert await judged(call(3, START + 2 * DAY, ip="203.0.113.200")) == []  # learnt: same /24
    alerts = await judged(call(4, START + 2 * DAY + 1, ip="192.0.2.1"))
    assert alerts[0].details == {
        "group": f"userIdentity.arn={PRODUCER}",
        "first_seen": "192.0.2.0/24",
        "field": "sourceIPAddress (network)",
        "known_values": 2,
    }
    assert await judged(call(5, START + 2 * DAY + 2, ip="192.0.2.77")) == []  # now known
    assert await judged(call(6, START + 2 * DAY + 3, ip="192.0.2.1", principal=OTHER)) == []  # new producer


async def test_a_redelivery_of_the_first_seen_event_alerts_again(tmp_path: Path, store: StateStore) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), store)
    await judged(call(1, START))
    novel = call(2, START + 2 * DAY, ip="192.0.2.1")
    assert len(await judged(novel)) == 1
    assert len(await judged(novel)) == 1
    assert await judged(call(3, START + 2 * DAY + 1, ip="192.0.2.1")) == []


async def test_a_network_unseen_past_the_expiry_is_new_again(tmp_path: Path, store: StateStore) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), store)
    await judged(call(1, START), call(2, START + HOUR, ip="192.0.2.1"))
    for day in range(2, 40, 5):  # the first network stays in use, the second is forgotten
        assert await judged(call(10 + day, START + day * DAY)) == []
    assert len(await judged(call(99, START + 41 * DAY, ip="192.0.2.1"))) == 1


async def test_learn_mode_remembers_without_alerting(tmp_path: Path, store: StateStore) -> None:
    loaded = load(tmp_path, NEW_NETWORK)
    learner = Judged(loaded, store, learn=True)
    assert await learner(call(1, START), call(2, START + 2 * DAY, ip="192.0.2.1")) == []
    live = Judged(loaded, store)
    assert await live(call(3, START + 3 * DAY, ip="192.0.2.9")) == []  # learnt from history
    assert len(await live(call(4, START + 3 * DAY, ip="203.0.113.1"))) == 1


async def test_an_event_without_a_readable_time_is_reported_not_skipped(tmp_path: Path) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), await open_store("memory"))
    alerts = await judged({**call(1, START), "eventTime": "yesterday"})
    assert [alert.detector_failed for alert in alerts] == [True]
    assert "eventTime 'yesterday'" in alerts[0].details["detector_error"]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("stateful", "expected"),
    [
        (
            {"threshold": {"count": 3, "window": "ten minutes", "group_by": ["userIdentity.arn"]}},
            "detectors[0] (memory-test).threshold: window: 'ten minutes' is not a duration",
        ),
        (
            {"threshold": {"count": 3, "window": 60, "group_by": ["useridentity.arn"]}},
            "detectors[0] (memory-test).threshold: group_by[0]: 'useridentity' is not a CloudTrail",
        ),
        (
            {"threshold": {"count": 3, "window": 60, "group_by": ["eventSource"], "derive": "network"}},
            "threshold: derive: applies to the distinct field, and there is none",
        ),
        (
            {
                "threshold": {"count": 3, "window": 60, "group_by": ["eventSource"]},
                "first_seen": {
                    "value": "sourceIPAddress",
                    "group_by": ["eventSource"],
                    "learning": 1,
                    "expiry": 2,
                },
            },
            "detectors[0] (memory-test): threshold and first_seen exclude each other",
        ),
        (
            {
                "first_seen": {
                    "value": "sourceIPAddres",
                    "group_by": ["eventSource"],
                    "learning": "1d",
                    "expiry": "0",
                }
            },
            "detectors[0] (memory-test).first_seen: value: 'sourceIPAddres' is not a CloudTrail record field",
        ),
        (
            {
                "first_seen": {
                    "value": "sourceIPAddress",
                    "group_by": ["eventSource"],
                    "learning": "1d",
                    "expiry": "0d",
                }
            },
            "first_seen: expiry: '0d' is not a positive duration",
        ),
    ],
)
def test_a_bad_stateful_condition_is_one_line_naming_detector_and_field(
    tmp_path: Path, stateful: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, detector(**stateful))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_pack_without_stateful_detectors_needs_no_store(tmp_path: Path) -> None:
    assert stateful_judge(load(tmp_path, detector()), RunStats(), None) is None
    assert stateful_judge(load(tmp_path, NEW_NETWORK), RunStats(), None) is not None


# ---------------------------------------------------------------- the local cache, and several tasks


async def test_a_known_value_is_judged_without_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    judged = Judged(load(tmp_path, NEW_NETWORK), store)
    await judged(call(1, START), call(2, START + 2 * DAY))
    await store.aclose()  # from here on, any store call fails
    assert await judged(call(3, START + 2 * DAY + 60, ip="198.51.100.99")) == []  # known: no call
    with pytest.raises(StateError):
        await judged(call(4, START + 2 * DAY + 60, ip="192.0.2.1"))  # new: the store must say


async def test_the_engine_queues_no_check_for_a_value_the_judge_s_cache_knows(tmp_path: Path) -> None:
    loaded = load(tmp_path, NEW_NETWORK, MANY_NETWORKS)
    judged = Judged(loaded, MemoryStore())
    novel = call(3, START + 2 * DAY + 30, ip="192.0.2.1")
    assert [a.detector for a in await judged(call(1, START), call(2, START + 2 * DAY), novel)] == [
        "memory-test"
    ]
    processor = processor_for(loaded, RunStats(), judge=judged.judge)

    def queued(record: dict[str, Any]) -> list[str]:
        outcome = processor.process(Document(json.dumps(record), Location("test")))
        return [item.plan.detector.id for item in outcome.pending]

    assert queued(call(4, START + 2 * DAY + 60, ip="198.51.100.99")) == []  # both know its /24
    assert queued(call(5, START + 2 * DAY + 60, ip="203.0.113.1")) == ["memory-test", "many-networks"]
    assert queued(novel) == ["memory-test"]  # a redelivery of the event that alerted: the store must say


async def test_a_distinct_count_s_cached_value_settles_only_events_of_its_window(tmp_path: Path) -> None:
    loaded = load(tmp_path, MANY_NETWORKS)
    judged = Judged(loaded, MemoryStore())
    assert await judged(call(1, START + HOUR)) == []  # 198.51.100.0/24 counted in the second hour
    processor = processor_for(loaded, RunStats(), judge=judged.judge)

    def queued(record: dict[str, Any]) -> list[str]:
        outcome = processor.process(Document(json.dumps(record), Location("test")))
        return [item.plan.detector.id for item in outcome.pending]

    assert queued(call(2, START + HOUR + 59 * MINUTE)) == []  # the same hour: already counted
    assert queued(call(3, START + 2 * HOUR)) == ["many-networks"]  # the next hour counts afresh
    assert queued(call(4, START + HOUR - 1)) == ["many-networks"]  # and so did the hour before


class LearningUnreadable(MemoryStore):
    """A store that fails when asked whether a group is learning."""

    async def is_claimed(self, key: str, *, now: float) -> bool:
        raise StateError(f"asked whether {key} is claimed", retryable=True)


async def test_a_group_this_task_started_learning_is_known_to_learn_without_the_store(
    tmp_path: Path,
) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), LearningUnreadable())
    assert await judged(call(1, START), call(2, START + HOUR, ip="192.0.2.1")) == []  # learning, known here
    with pytest.raises(StateError, match="learning"):  # past the end this task knows: the store must say
        await judged(call(3, START + 2 * DAY, ip="203.0.113.1"))


class AlertRecordFailsOnce(MemoryStore):
    """A store whose first record of an alerting event fails (DynamoDB throttling the request after the
    one that remembered the value); `overlaps` as DynamoDB's (a message's values of one group are then
    remembered together) or not."""

    def __init__(self, overlaps: bool) -> None:
        super().__init__()
        self.overlaps = overlaps
        self.failed = False
        self.remembered_together = 0

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        if "/alerted/" in key and not self.failed:
            self.failed = True
            raise StateError("dynamodb:t: update_item: ThrottlingException", retryable=True)
        return await super().remember(key, member, now=now, ttl=ttl, limit=limit)

    async def remember_all(
        self, key: str, members: Sequence[tuple[str, float]], *, ttl: float, limit: int
    ) -> list[Membership]:
        self.remembered_together += 1
        return await super().remember_all(key, members, ttl=ttl, limit=limit)


@pytest.mark.parametrize("overlaps", [True, False])
async def test_new_values_whose_alert_failed_to_be_recorded_alert_when_their_message_is_retried(
    tmp_path: Path, overlaps: bool
) -> None:
    store = AlertRecordFailsOnce(overlaps)
    judged = Judged(load(tmp_path, NEW_NETWORK), store)
    assert await judged(call(1, START)) == []  # learning starts
    known = call(2, START + 2 * DAY)
    novel = [call(3 + n, START + 2 * DAY + n, ip=ip) for n, ip in enumerate(["192.0.2.1", "203.0.113.1"])]
    with pytest.raises(StateError):
        await judged.message(known, *novel)  # the first new value's alert record fails
    assert [alert.event_id for alert in await judged.message(known, *novel)] == [e["eventID"] for e in novel]
    assert store.remembered_together == (2 if overlaps else 0)  # the message's values in one operation


class RememberAllFailsMidway(MemoryStore):
    """An overlapping store whose `remember_all` stores its first member, then fails (DynamoDB
    throttling the second request of a long message)."""

    overlaps = True

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        if key.endswith("/values") and member == "203.0.113.0/24" and not self.failed:
            self.failed = True
            raise StateError("dynamodb:t: update_item: ThrottlingException", retryable=True)
        return await super().remember(key, member, now=now, ttl=ttl, limit=limit)


def claiming(key_part: str) -> Callable[[str, dict[str, Any]], bool]:
    """A DynamoDB claim of a key holding `key_part`."""

    def claims(operation: str, request: dict[str, Any]) -> bool:
        return operation == "put_item" and key_part in request["Item"]["pk"]["S"]

    return claims


@pytest.fixture
async def burst_on_dynamodb(tmp_path: Path, moto_server: str) -> AsyncIterator[tuple[DynamoDbStore, Judged]]:
    """The denied-burst detector (3 within 10 minutes) judged on a DynamoDB table of the moto server."""
    await make_table()
    store = await open_store(f"dynamodb:{TABLE}")
    assert isinstance(store, DynamoDbStore)
    try:
        yield store, Judged(load(tmp_path, DENIED_BURST), store)
    finally:
        await store.aclose()


async def test_an_event_whose_dynamodb_claim_lost_its_answer_is_counted_when_its_message_is_retried(
    burst_on_dynamodb: tuple[DynamoDbStore, Judged],
) -> None:
    store, judged = burst_on_dynamodb
    assert await judged(*(call(n, START + n, error="AccessDenied") for n in (1, 2))) == []
    third = call(3, START + 3, error="AccessDenied")
    store.client = lossy = Failing(store.client, claiming(f"/seen/{third['eventID']}"), applied=True)
    with pytest.raises(StateError, match="ReadTimeoutError") as lost:
        await judged(third)  # its claim, that it is counted, was applied; the count was not
    assert lost.value.maybe_applied
    assert lossy.failed == 1
    assert [alert.event_id for alert in await judged(third)] == [third["eventID"]]
    assert await judged(call(4, START + 4, error="AccessDenied")) == []  # one alert per window


async def test_a_redelivered_event_whose_dynamodb_claim_was_refused_is_not_counted_twice(
    burst_on_dynamodb: tuple[DynamoDbStore, Judged],
) -> None:
    store, judged = burst_on_dynamodb
    first = call(1, START + 1, error="AccessDenied")
    assert await judged(first) == []
    store.client = Failing(store.client, claiming(f"/seen/{first['eventID']}"), applied=False)
    with pytest.raises(StateError, match="ThrottlingException") as refused:
        await judged(first)  # redelivered: its claim is throttled, and must stay the first delivery's
    assert not refused.value.maybe_applied
    assert await judged(first) == []  # counted once: the threshold of 3 is not reached by two events
    assert await judged(call(2, START + 2, error="AccessDenied")) == []
    assert len(await judged(call(3, START + 3, error="AccessDenied"))) == 1


def writing_value(member: str) -> Callable[[str, dict[str, Any]], bool]:
    """A DynamoDB request that writes `member` into a baseline or a distinct count: the set's creation, or
    an update of it."""

    def writes(operation: str, request: dict[str, Any]) -> bool:
        if operation == "put_item":
            return member in request["Item"].get("members", {}).get("M", {})
        return operation == "update_item" and member in request.get("ExpressionAttributeNames", {}).values()

    return writes


@pytest.fixture
async def dynamodb_store(moto_server: str) -> AsyncIterator[DynamoDbStore]:
    await make_table()
    store = await open_store(f"dynamodb:{TABLE}")
    assert isinstance(store, DynamoDbStore)
    try:
        yield store
    finally:
        await store.aclose()


async def answer_lost_then_retried(
    store: DynamoDbStore, member: str, judge: Callable[[], Awaitable[list[Alert]]]
) -> list[Alert]:
    """`judge` once with DynamoDB applying the write of `member` but its answer lost (a read timeout),
    then again, as the retried message is: the retry's alerts."""
    lossy = Failing(store.client, writing_value(member), applied=True)
    store.client = lossy
    with pytest.raises(StateError, match="ReadTimeoutError") as lost:
        await judge()
    assert lost.value.maybe_applied
    assert lossy.failed == 1
    return await judge()


async def test_a_new_network_whose_dynamodb_write_lost_its_answer_alerts_when_its_message_is_retried(
    tmp_path: Path, dynamodb_store: DynamoDbStore
) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), dynamodb_store)
    assert await judged(call(1, START)) == []  # learning starts
    assert await judged(call(2, START + 2 * DAY)) == []  # the learnt network, after learning
    novel = call(3, START + 2 * DAY + 1, ip="203.0.113.9")
    retried = await answer_lost_then_retried(dynamodb_store, "203.0.113.0/24", lambda: judged(novel))
    assert [alert.event_id for alert in retried] == [novel["eventID"]]
    assert await judged(call(4, START + 2 * DAY + 2, ip="203.0.113.10")) == []  # known from now on


async def test_a_known_network_whose_refresh_lost_its_answer_stays_known(
    tmp_path: Path, dynamodb_store: DynamoDbStore
) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), dynamodb_store)
    assert await judged(call(1, START)) == []
    assert await judged(call(2, START + 2 * DAY)) == []  # known, and now in the task's cache
    refresh = call(3, START + 6 * DAY)  # past a tenth of the 30-day expiry: the store refreshes it
    # known before this write: not forgotten, so no alert
    assert await answer_lost_then_retried(dynamodb_store, "198.51.100.0/24", lambda: judged(refresh)) == []
    assert await judged(call(4, START + 6 * DAY + 1, ip="203.0.113.9")) != []  # still out of learning


async def test_new_networks_written_together_whose_answer_was_lost_alert_when_their_message_is_retried(
    tmp_path: Path, dynamodb_store: DynamoDbStore
) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), dynamodb_store)
    assert await judged(call(1, START)) == []
    assert await judged(call(2, START + 2 * DAY)) == []  # 198.51.100.0/24: known, and cached
    refresh = call(3, START + 6 * DAY)  # past a tenth of its expiry: written again with the new ones
    novel = [call(4 + n, START + 6 * DAY + n, ip=ip) for n, ip in enumerate(["192.0.2.1", "203.0.113.1"])]
    # one request for the three values; its answer is lost
    retried = await answer_lost_then_retried(
        dynamodb_store, "203.0.113.0/24", lambda: judged.message(refresh, *novel)
    )
    assert [alert.event_id for alert in retried] == [e["eventID"] for e in novel]  # the known one stays


async def test_a_distinct_value_cached_in_an_earlier_window_whose_write_lost_its_answer_alerts_when_retried(
    tmp_path: Path, dynamodb_store: DynamoDbStore
) -> None:
    judged = Judged(load(tmp_path, MANY_NETWORKS), dynamodb_store)
    ips = ["192.0.2.1", "198.51.100.1", "203.0.113.1"]
    assert len(await judged(*(call(1 + n, START + n, ip=ip) for n, ip in enumerate(ips)))) == 1
    # the next hour: the same three networks, in the cache from the first window, new to this one's set
    assert await judged(call(10, START + HOUR, ip=ips[0]), call(11, START + HOUR + 1, ip=ips[1])) == []
    third = call(12, START + HOUR + 2, ip=ips[2])
    retried = await answer_lost_then_retried(dynamodb_store, "203.0.113.0/24", lambda: judged(third))
    assert [alert.event_id for alert in retried] == [third["eventID"]]


async def test_a_value_cached_past_its_expiry_whose_write_lost_its_answer_alerts_when_retried(
    tmp_path: Path, dynamodb_store: DynamoDbStore
) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), dynamodb_store)
    assert await judged(call(1, START)) == []  # 198.51.100.0/24 learnt and cached
    assert await judged(call(2, START + DAY // 2, ip="203.0.113.9")) == []
    assert await judged(call(3, START + 20 * DAY, ip="203.0.113.9")) == []  # the group stays alive
    back = call(4, START + 40 * DAY)  # 198.51.100.0/24 expired 30 days after START: new again
    retried = await answer_lost_then_retried(dynamodb_store, "198.51.100.0/24", lambda: judged(back))
    assert [alert.event_id for alert in retried] == [back["eventID"]]


def recording_alert(operation: str, request: dict[str, Any]) -> bool:
    """A DynamoDB request that records which event alerted (a `.../alert` set)."""
    item = request.get("Item") or request.get("Key") or {}
    return operation in ("put_item", "update_item") and item.get("pk", {}).get("S", "").endswith("/alert")


@pytest.mark.parametrize("failure", ["its write's answer lost", "its alert record refused"])
async def test_a_distinct_value_whose_judgement_failed_alerts_when_its_message_is_retried(
    tmp_path: Path, dynamodb_store: DynamoDbStore, failure: str
) -> None:
    judged = Judged(load(tmp_path, MANY_NETWORKS), dynamodb_store)
    assert await judged(call(1, START, ip="192.0.2.1"), call(2, START + 1, ip="198.51.100.1")) == []
    third = call(3, START + 2, ip="203.0.113.1")
    if failure == "its write's answer lost":
        retried = await answer_lost_then_retried(dynamodb_store, "203.0.113.0/24", lambda: judged(third))
    else:  # its network is remembered; recording that it alerts is throttled
        refusing = Failing(dynamodb_store.client, recording_alert, applied=False)
        dynamodb_store.client = refusing
        with pytest.raises(StateError, match="ThrottlingException"):
            await judged(third)
        assert refusing.failed == 1
        retried = await judged(third)
    assert [alert.event_id for alert in retried] == [third["eventID"]]
    assert await judged(call(4, START + 3, ip="203.0.113.2")) == []  # one alert per window


class SqliteAlertRecordFails(SqliteStore):
    """A SQLite store whose next write of an alert record fails (a disk I/O error)."""

    fail = False

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        if self.fail and "/alerted/" in key:
            self.fail = False
            raise StateError("sqlite: disk I/O error", retryable=True)
        return await super().remember(key, member, now=now, ttl=ttl, limit=limit)


async def test_a_message_failing_on_sqlite_does_not_undo_what_another_worker_judged(tmp_path: Path) -> None:
    store = SqliteAlertRecordFails(tmp_path / "state.db")
    loaded = load(tmp_path, NEW_NETWORK)
    worker, other_worker = Judged(loaded, store), Judged(loaded, store)  # one task's workers share it
    assert await worker(call(1, START)) == []
    store.fail = True
    novel = call(2, START + 2 * DAY, ip="203.0.113.1")  # new after learning: its alert record fails
    elsewhere = call(3, START + 2 * DAY, principal=OTHER)  # another group's first call, meanwhile
    failed, judged = await asyncio.gather(worker(novel), other_worker(elsewhere), return_exceptions=True)
    assert isinstance(failed, StateError)
    assert judged == []  # that message succeeded, and would be acknowledged: what it taught must stay
    learnt = await store.members(f"first_seen/memory-test/{OTHER}/values", now=START + 2 * DAY)
    assert learnt == {"198.51.100.0/24"}
    await store.aclose()


async def test_values_a_failed_remember_all_stored_alert_when_their_message_is_retried(
    tmp_path: Path,
) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), RememberAllFailsMidway())
    assert await judged(call(1, START)) == []  # learning starts
    novel = [call(3 + n, START + 2 * DAY + n, ip=ip) for n, ip in enumerate(["192.0.2.1", "203.0.113.1"])]
    with pytest.raises(StateError):
        await judged.message(*novel)  # 192.0.2.0/24 is stored, then 203.0.113.0/24 fails
    assert [alert.event_id for alert in await judged.message(*novel)] == [e["eventID"] for e in novel]


async def test_a_message_of_one_group_s_events_alerts_as_its_events_would_one_by_one(
    tmp_path: Path, store: StateStore
) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), store)
    assert await judged(call(1, START)) == []  # learning starts
    later = START + 2 * DAY
    ips = ["198.51.100.9", "192.0.2.1", "192.0.2.77", "203.0.113.1", "198.51.100.10", "203.0.113.2"]
    events = [call(10 + n, later + n, ip=ip) for n, ip in enumerate(ips)]
    alerted = [alert.event_id for alert in await judged.message(*events)]
    assert alerted == [events[1]["eventID"], events[3]["eventID"]]  # a network's first event only
    assert [alert.event_id for alert in await judged.message(*events)] == alerted  # redelivered: again


class WaitsForOtherGroup(MemoryStore):
    """A store whose sets of the producer's group wait until the other principal's group is asked; it
    says its operations overlap, as DynamoDB's do."""

    overlaps = True

    def __init__(self) -> None:
        super().__init__()
        self.other_asked = asyncio.Event()

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        if OTHER in key:
            self.other_asked.set()
        else:
            await self.other_asked.wait()
        return await super().remember(key, member, now=now, ttl=ttl, limit=limit)


async def test_a_message_s_checks_of_different_groups_are_judged_concurrently(tmp_path: Path) -> None:
    judged = Judged(load(tmp_path, NEW_NETWORK), WaitsForOtherGroup())
    records = [call(1, START), call(2, START, principal=OTHER), call(3, START + 1, ip="192.0.2.1")]
    outcome = judged.processor.process(Document(json.dumps({"Records": records}), Location("test")))
    assert len(outcome.pending) == 3
    # judged one after another, the producer's first check would wait for ever for the other's
    assert await asyncio.wait_for(judged.judge.judge(outcome.pending), timeout=10) == []


async def test_tasks_sharing_a_store_alert_once_and_a_redelivery_alerts_wherever_it_lands(
    tmp_path: Path, store: StateStore
) -> None:
    loaded = load(tmp_path, NEW_NETWORK, MANY_NETWORKS)
    first, second = Judged(loaded, store), Judged(loaded, store)
    await first(call(1, START))
    novel = call(2, START + 2 * DAY, ip="192.0.2.1")
    assert [a.detector for a in await first(novel)] == ["memory-test"]
    assert await second(call(3, START + 2 * DAY + 1, ip="192.0.2.2")) == []  # known through the store
    assert len(await second(novel)) == 1  # the redelivery lands on the other task: it alerts again


async def test_a_distinct_count_split_between_tasks_alerts_once(tmp_path: Path, store: StateStore) -> None:
    loaded = load(tmp_path, MANY_NETWORKS)
    first, second = Judged(loaded, store), Judged(loaded, store)
    assert await first(call(1, START, ip="198.51.100.1")) == []
    assert await second(call(2, START + 1, ip="203.0.113.1")) == []
    crossing = call(3, START + 2, ip="192.0.2.1")
    assert len(await first(crossing)) == 1
    assert await second(call(4, START + 3, ip="192.0.2.2"), call(5, START + 4, ip="10.0.0.1")) == []
    assert len(await second(crossing)) == 1  # redelivered to the other task


# ---------------------------------------------------------------- tests as data


def burst_example(alerts_at_third: int) -> dict[str, Any]:
    denied = call(1, START, error="AccessDenied")
    return {
        "name": "three denials",
        "steps": [
            {"alerts": 0, "repeat": 2, "event": denied},
            {"alerts": alerts_at_third, "event": {**denied, "eventID": "third"}},
        ],
    }


def test_a_sequence_example_passes_in_every_form_when_each_step_gives_what_it_says(tmp_path: Path) -> None:
    loaded = load(tmp_path, {**DENIED_BURST, "examples": [burst_example(1)]})
    results = run_examples(loaded.detectors)
    assert [(r.form, r.passed) for r in results] == [(form, True) for form in FORMS]


def test_a_sequence_example_names_the_step_that_gave_the_wrong_alerts(tmp_path: Path) -> None:
    loaded = load(tmp_path, {**DENIED_BURST, "examples": [burst_example(0)]})
    problems = {r.problem for r in run_examples(loaded.detectors)}
    assert problems == {"step 2: expected 0 alert(s), got 1"}


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            {"name": "x", "expect": "match", "steps": [{"alerts": 1, "event": {}}]},
            "steps say what to expect after each event: no expect beside them",
        ),
        (
            {"name": "x", "steps": [{"alerts": 1, "event": {}}], "event": {}},
            "an example has exactly one of event, file or steps",
        ),
        ({"name": "x", "event": {}}, "expect: match or no_match is required with event or file"),
    ],
)
def test_a_malformed_example_is_a_one_line_load_error(
    tmp_path: Path, example: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {**DENIED_BURST, "examples": [example]})
    assert str(caught.value).endswith("detectors[0] (memory-test).examples[0]: " + expected)


def test_event_time_is_utc_whatever_the_zone_it_is_written_in() -> None:
    for written in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T01:00:00+01:00"):
        assert event_epoch(event_at(written)) == START
