"""The pipeline around stateful detectors: a message's checks judged before delivery, retried (never
acked) when the store fails, judged whole after a failure halfway, a failed delivery sent once on the
redelivery, and the failure visible in the metrics and /readyz."""

from __future__ import annotations

from pathlib import Path

from kvs_sentinel.app import stateful_judge
from kvs_sentinel.dedupe import AlertDeduper
from kvs_sentinel.engine import Engine, Processor
from kvs_sentinel.metrics import Metrics
from kvs_sentinel.pipeline import Pipeline
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.state.base import Membership, StateError
from kvs_sentinel.state.registry import open_store
from kvs_sentinel.state.sqlite import SqliteStore
from kvs_sentinel.stateful import StatefulJudge
from kvs_sentinel.stats import RunStats
from kvs_sentinel.testing import ListSource, RecordingSink
from tests.support.logging_reset import fresh_logging
from tests.support.stateful_detectors import DENIED_BURST, MANY_NETWORKS, START, call, load, message

__all__ = ["fresh_logging"]


async def test_a_message_whose_store_fails_is_retried_never_acked(tmp_path: Path) -> None:
    loaded = load(tmp_path, DENIED_BURST)
    store = SqliteStore(tmp_path / "state.db")
    await store.aclose()  # every operation now fails
    stats = RunStats()
    sink = RecordingSink("slack")
    msg = message("m1", call(1, START, error="AccessDenied"))
    pipeline = Pipeline(
        ListSource([msg]),
        Processor(Engine(loaded.detectors), stats),
        Dispatcher.broadcast([sink]),
        judge=StatefulJudge(store, stats),
    )
    await pipeline.handle(msg)
    assert not msg.acked
    assert len(msg.retries) == 1
    assert "sqlite:" in msg.retries[0]
    assert pipeline.counts.messages_failed == 1


async def test_the_pipeline_judges_a_message_s_pending_checks_before_delivery(tmp_path: Path) -> None:
    loaded = load(tmp_path, DENIED_BURST)
    stats = RunStats()
    sink = RecordingSink("slack")
    burst = [call(i, START + i, error="AccessDenied") for i in range(1, 5)]
    messages = [message("m1", *burst[:2]), message("m2", *burst[2:])]
    pipeline = Pipeline(
        ListSource(messages),
        Processor(Engine(loaded.detectors), stats),
        Dispatcher.broadcast([sink]),
        judge=stateful_judge(loaded, stats, None),
    )
    await pipeline.run()
    assert all(msg.acked for msg in messages)
    assert [alert.event_id for alert in sink.alerts] == [burst[2]["eventID"]]
    assert stats.alerts_by_detector["memory-test"] == 1


async def test_a_failed_delivery_of_a_threshold_alert_is_retried_and_then_sent_once(tmp_path: Path) -> None:
    loaded = load(tmp_path, DENIED_BURST)
    store = await open_store(f"sqlite:{tmp_path / 'state.db'}")
    stats = RunStats()
    sink = RecordingSink("slack")
    msg = message("m1", *(call(i, START + i, error="AccessDenied") for i in range(1, 4)))
    pipeline = Pipeline(
        ListSource([msg]),
        Processor(Engine(loaded.detectors), stats),
        Dispatcher.broadcast([sink]),
        dedupe=AlertDeduper(store),
        judge=StatefulJudge(store, stats),
    )
    sink.fail_next = 1
    await pipeline.handle(msg)  # the threshold is crossed, the alert cannot be sent
    assert not msg.acked
    await pipeline.handle(msg)  # SQS redelivers: counted once, the crossing event alerts again
    await pipeline.handle(msg)  # delivered before: the dedupe drops it
    assert msg.acked
    assert [alert.event_id for alert in sink.alerts] == [call(3, 0)["eventID"]]
    assert pipeline.counts.alerts_deduplicated == 1
    await store.aclose()


class FailingAt(SqliteStore):
    """A SQLite store whose `remember` fails once, at its Nth call (a throttled or locked store)."""

    def __init__(self, path: Path, failing_call: int) -> None:
        super().__init__(path)
        self.calls = 0
        self.failing_call = failing_call

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        self.calls += 1
        if self.calls == self.failing_call:
            raise StateError("sqlite: database is locked", retryable=True)
        return await super().remember(key, member, now=now, ttl=ttl, limit=limit)


async def test_a_message_that_failed_halfway_is_judged_whole_when_retried(tmp_path: Path) -> None:
    loaded = load(tmp_path, MANY_NETWORKS)
    store = FailingAt(tmp_path / "state.db", failing_call=3)
    stats = RunStats()
    sink = RecordingSink("slack")
    networks = [
        call(i, START + i, ip=ip) for i, ip in enumerate(["198.51.100.1", "203.0.113.1", "192.0.2.1"])
    ]
    msg = message("m1", *networks)
    pipeline = Pipeline(
        ListSource([msg]),
        Processor(Engine(loaded.detectors), stats),
        Dispatcher.broadcast([sink]),
        judge=StatefulJudge(store, stats),
    )
    await pipeline.handle(msg)  # the third network's check fails: the message's checks are undone
    assert not msg.acked
    await pipeline.handle(msg)  # and judged whole again: neither the store nor the cache kept half of it
    assert msg.acked
    assert [alert.event_id for alert in sink.alerts] == [networks[2]["eventID"]]
    await store.aclose()


async def test_a_failing_store_shows_in_the_metrics_and_readiness_until_it_answers(tmp_path: Path) -> None:
    loaded = load(tmp_path, MANY_NETWORKS)
    store = FailingAt(tmp_path / "state.db", failing_call=1)
    stats, metrics = RunStats(), Metrics()
    msg = message("m1", call(1, START))
    pipeline = Pipeline(
        ListSource([msg]),
        Processor(Engine(loaded.detectors), stats),
        Dispatcher.broadcast([RecordingSink("slack")]),
        metrics=metrics,
        judge=StatefulJudge(store, stats),
    )
    await pipeline.handle(msg)
    assert pipeline.state_failing
    assert 'kvs_sentinel_state_failures_total{retryable="true"} 1.0' in metrics.render().decode()
    await pipeline.handle(msg)
    assert msg.acked
    assert not pipeline.state_failing
    await store.aclose()
