"""The health endpoint on a real port, the metrics exposition, and the `kvs-sentinel health` client."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from kvs_sentinel.health import HealthServer, check_health
from kvs_sentinel.metrics import Metrics, event_lag_seconds
from kvs_sentinel.sources.sqs import SqsCounts
from kvs_sentinel.stats import RunStats

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name → {labels: value} for every sample."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_healthz_and_readyz_follow_their_probes() -> None:
    state = {"alive": True, "ready": False}

    async def ready() -> bool:  # an async probe, as an SQS check would be
        return state["ready"]

    async with HealthServer(0, lambda: state["alive"], ready, host="127.0.0.1") as server:
        assert await get(f"{server.url}/healthz") == (200, "alive\n")
        assert await get(f"{server.url}/readyz") == (503, "not ready\n")
        state["ready"] = True
        assert await get(f"{server.url}/readyz") == (200, "ready\n")
        state["alive"] = False
        assert await get(f"{server.url}/healthz") == (503, "not alive\n")
        assert (await get(f"{server.url}/metrics"))[0] == 404  # no metrics given


async def test_a_probe_that_raises_answers_unavailable() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    async with HealthServer(0, broken, host="127.0.0.1") as server:
        assert (await get(f"{server.url}/healthz"))[0] == 503


async def test_metrics_exposition_parses_and_counts() -> None:
    metrics = Metrics(wall_clock=lambda: NOW)
    counts, stats = SqsCounts(received=5, acked=3, retried=1), RunStats()
    stats.events_by_form.update({"eventbridge": 4, "records": 9})
    stats.skipped["digest_file"] = 2
    metrics.watch_source("kvs-sentinel-events", counts.as_dict)
    metrics.watch_stats(stats)
    metrics.alert_emitted("kvs-producer-media-read", "high")
    metrics.alert_emitted("kvs-producer-media-read", "high")
    metrics.alert_emitted("kvs-long-term-credentials", "critical")
    metrics.sink_failed("slack", retryable=True)
    metrics.decided_alone("slack_pace")
    metrics.message_processed(0.2)
    assert metrics.event_seen("2024-05-01T11:59:30Z") == 30.0
    assert metrics.event_seen("not a time") is None
    counts.acked += 1  # read at scrape time

    async with (
        HealthServer(0, metrics=metrics, host="127.0.0.1") as server,
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()

    found = families(text)
    queue = (("queue", "kvs-sentinel-events"),)
    assert found["kvs_sentinel_messages_received_total"][queue] == 5
    assert found["kvs_sentinel_messages_acked_total"][queue] == 4
    assert found["kvs_sentinel_messages_retried_total"][queue] == 1
    assert found["kvs_sentinel_events_total"] == {(("form", "eventbridge"),): 4, (("form", "records"),): 9}
    assert found["kvs_sentinel_skipped_total"] == {(("reason", "digest_file"),): 2}
    alerts = found["kvs_sentinel_alerts_total"]
    assert alerts[(("detector", "kvs-producer-media-read"), ("severity", "high"))] == 2
    assert alerts[(("detector", "kvs-long-term-credentials"), ("severity", "critical"))] == 1
    assert found["kvs_sentinel_sink_failures_total"] == {(("retryable", "true"), ("sink", "slack")): 1}
    assert found["kvs_sentinel_shared_decisions_alone_total"] == {(("decision", "slack_pace"),): 1}
    assert found["kvs_sentinel_message_processing_seconds_count"][()] == 1
    assert found["kvs_sentinel_event_lag_seconds_count"][()] == 1
    assert found["kvs_sentinel_event_lag_seconds_bucket"][(("le", "30.0"),)] == 1
    assert found["kvs_sentinel_event_lag_last_seconds"][()] == 30.0


def test_two_metrics_objects_do_not_share_state() -> None:
    first, second = Metrics(), Metrics()
    first.alert_emitted("d", "low")
    assert "kvs_sentinel_alerts_total" not in families(second.render().decode())


def test_event_lag_needs_a_timezone() -> None:
    assert event_lag_seconds("2024-05-01T12:00:10+00:00", NOW + 20) == 10.0
    assert event_lag_seconds("2024-05-01T12:00:10", NOW) is None
    assert event_lag_seconds(None, NOW) is None


async def test_check_health_exit_codes() -> None:
    state = {"alive": True}
    reports: list[str] = []
    async with HealthServer(0, lambda: state["alive"], host="127.0.0.1") as server:
        url = f"{server.url}/healthz"
        # urllib blocks: in a thread, so that this loop keeps serving the request
        assert await asyncio.to_thread(check_health, url, 5.0, reports.append) == 0
        state["alive"] = False
        assert await asyncio.to_thread(check_health, url, 5.0, reports.append) == 1
    assert reports == [f"healthy: {url}: HTTP 200", f"unhealthy: {url}: HTTP 503"]


def test_check_health_fails_when_nothing_listens() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, and is closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reports: list[str] = []
    assert check_health(f"http://127.0.0.1:{port}/healthz", 2.0, reports.append) == 1
    assert reports[0].startswith("unhealthy: ")
    assert check_health("not a url", 2.0) == 1


async def test_the_server_listens_on_all_interfaces_by_default() -> None:
    async with HealthServer(0) as server:
        assert server.host == "0.0.0.0"
        assert server.url.startswith("http://127.0.0.1:")
        assert (await get(f"{server.url}/healthz"))[0] == 200
