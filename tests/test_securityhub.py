"""The securityhub sink: against moto in server mode (import, update, batches), and against a small local
HTTP server that speaks Security Hub's JSON protocol for what moto cannot do (throttling, per-finding
failures, holding a reply). Both are real HTTP with the real aiobotocore client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from kvs_sentinel.errors import DeliveryError
from kvs_sentinel.sinks.securityhub import SecurityHubConfig, SecurityHubSink
from kvs_sentinel.testing import FakeClock, FakeSecurityHub
from tests.aws_fixtures import REGION, aws_client, moto_server
from tests.support.alert_samples import sample_alert
from tests.support.events import event_id, eventbridge
from tests.support.fake_sqs import FakeSqs, service_for
from tests.support.waiting import wait_until

__all__ = ["moto_server"]

MOTO_ACCOUNT = "123456789012"  # what moto's STS answers


def sink_for(endpoint: str, clock: FakeClock | None = None, **options: Any) -> SecurityHubSink:
    config = SecurityHubConfig.model_validate({"endpoint_url": endpoint, **options})
    return SecurityHubSink("securityhub", config, clock=clock or FakeClock())


async def all_findings() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with aws_client("securityhub") as hub:
        request: dict[str, Any] = {"MaxResults": 100}
        while True:
            page = await hub.get_findings(**request)
            found += page["Findings"]
            if not page.get("NextToken"):
                return found
            request["NextToken"] = page["NextToken"]


async def deliver(sink: SecurityHubSink, *alerts: Any) -> None:
    """What the dispatcher does for one message: send each alert, then flush."""
    for alert in alerts:
        await sink.send(alert)
    await sink.flush()


# ------------------------------------------------------------------ moto in server mode


async def test_alerts_are_imported_as_asff_findings(moto_server: str) -> None:
    sink = sink_for(moto_server)
    try:
        await deliver(sink, sample_alert(), sample_alert(event_id="e-2", severity="medium"))
    finally:
        await sink.aclose()
    findings = {f["Id"]: f for f in await all_findings()}
    assert set(findings) == {
        "kvs-sentinel/kvs-producer-consumer-endpoint/6b1e8f3a-2c44-4f0e-9d51-0c7f5b2a9e10",
        "kvs-sentinel/kvs-producer-consumer-endpoint/e-2",
    }
    finding = findings["kvs-sentinel/kvs-producer-consumer-endpoint/6b1e8f3a-2c44-4f0e-9d51-0c7f5b2a9e10"]
    assert (
        finding["ProductArn"] == f"arn:aws:securityhub:{REGION}:{MOTO_ACCOUNT}:product/{MOTO_ACCOUNT}/default"
    )
    assert finding["AwsAccountId"] == MOTO_ACCOUNT, "the importing account, learnt from STS"
    assert finding["ProductFields"]["kvs-sentinel/event_account"] == "111122223333"
    assert finding["Severity"] == {"Label": "CRITICAL", "Original": "critical"}
    assert finding["GeneratorId"] == "kvs-sentinel/kvs-producer-consumer-endpoint"
    assert finding["Remediation"]["Recommendation"]["Text"].startswith("Remove kinesisvideo read actions")
    assert [r["Type"] for r in finding["Resources"]] == ["Other", "Other", "AwsIamAccessKey"]
    assert finding["Resources"][1]["Id"] == "arn:aws:sts::111122223333:assumed-role/kvs-producer-cam1/s"
    assert findings["kvs-sentinel/kvs-producer-consumer-endpoint/e-2"]["Severity"]["Label"] == "MEDIUM"
    assert sink.counts.delivered == 2


async def test_a_redelivered_event_updates_its_finding_instead_of_adding_one(moto_server: str) -> None:
    moments = iter([datetime(2026, 2, 3, 10, 16, tzinfo=UTC), datetime(2026, 2, 3, 11, 0, tzinfo=UTC)])
    config = SecurityHubConfig(endpoint_url=moto_server, account_id=MOTO_ACCOUNT)
    sink = SecurityHubSink("securityhub", config, clock=FakeClock(), now=lambda: next(moments))
    try:
        await deliver(sink, sample_alert())
        await deliver(sink, sample_alert())  # SQS delivered the message again
    finally:
        await sink.aclose()
    (finding,) = await all_findings()
    assert finding["UpdatedAt"] == "2026-02-03T11:00:00.000Z"
    assert finding["CreatedAt"] == "2026-02-03T10:15:42.000Z", "the event's time, the same both times"


async def test_more_than_100_alerts_go_in_calls_of_at_most_100(moto_server: str) -> None:
    sink = sink_for(moto_server, account_id=MOTO_ACCOUNT)
    try:
        await deliver(sink, *(sample_alert(event_id=f"e-{n}") for n in range(250)))
    finally:
        await sink.aclose()
    assert sink.calls == 3
    assert len(await all_findings()) == 250


async def test_alerts_of_concurrent_messages_share_one_call(moto_server: str) -> None:
    sink = sink_for(moto_server, account_id=MOTO_ACCOUNT)
    try:
        await asyncio.gather(*(deliver(sink, sample_alert(event_id=f"m-{n}")) for n in range(5)))
    finally:
        await sink.aclose()
    assert sink.calls == 1
    assert len(await all_findings()) == 5


# ------------------------------------------------------------------ a scripted Security Hub


@pytest.fixture
async def fake_hub(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeSecurityHub, str]]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    async with FakeSecurityHub() as hub:
        yield hub, hub.url


def scripted_sink(endpoint: str, clock: FakeClock | None = None, **options: Any) -> SecurityHubSink:
    return sink_for(endpoint, clock, region="eu-west-1", account_id="111122223333", **options)


def uid(event_id: str) -> str:
    return f"kvs-sentinel/kvs-producer-consumer-endpoint/{event_id}"


async def test_a_throttled_import_is_retried_with_backoff(fake_hub: tuple[FakeSecurityHub, str]) -> None:
    hub, endpoint = fake_hub
    hub.throttle = 2
    clock = FakeClock()
    sink = scripted_sink(endpoint, clock, batch_window_seconds=0)
    try:
        await deliver(sink, sample_alert(event_id="a"))
    finally:
        await sink.aclose()
    assert hub.requests == [[uid("a")]] * 3
    assert hub.accepted == [uid("a")]
    assert len(clock.sleeps) == 2
    assert sink.counts.rate_limited == 2


async def test_one_failed_finding_does_not_fail_the_others_in_its_batch(
    fake_hub: tuple[FakeSecurityHub, str],
) -> None:
    hub, endpoint = fake_hub
    hub.fail = {uid("bad"): ["InvalidInput"]}
    sink = scripted_sink(endpoint)

    async def message(event_id: str) -> DeliveryError | None:
        try:
            await deliver(sink, sample_alert(event_id=event_id))
        except DeliveryError as exc:
            return exc
        return None

    try:
        good, bad, other = await asyncio.gather(message("good"), message("bad"), message("other"))
    finally:
        await sink.aclose()
    assert hub.requests == [[uid("good"), uid("bad"), uid("other")]], "one batch, not retried"
    assert good is None
    assert other is None
    assert bad is not None
    assert not bad.retryable
    assert "InvalidInput" in str(bad)
    assert sink.counts.delivered == 2
    assert sink.counts.failed_permanent == 1


async def test_transiently_failed_findings_are_imported_again_alone(
    fake_hub: tuple[FakeSecurityHub, str],
) -> None:
    hub, endpoint = fake_hub
    hub.fail = {uid("b"): ["ThrottlingException", "InternalException"]}
    sink = scripted_sink(endpoint)
    try:
        await deliver(sink, sample_alert(event_id="a"), sample_alert(event_id="b"))
    finally:
        await sink.aclose()
    assert hub.requests == [[uid("a"), uid("b")], [uid("b")], [uid("b")]]
    assert sorted(hub.accepted) == [uid("a"), uid("b")]
    assert sink.counts.delivered == 2


async def test_a_finding_that_keeps_failing_fails_its_message_retryably(
    fake_hub: tuple[FakeSecurityHub, str],
) -> None:
    hub, endpoint = fake_hub
    hub.fail = {uid("b"): ["InternalException"] * 10}
    sink = scripted_sink(endpoint, max_attempts=3)
    try:
        with pytest.raises(DeliveryError) as caught:
            await deliver(sink, sample_alert(event_id="a"), sample_alert(event_id="b"))
    finally:
        await sink.aclose()
    assert caught.value.retryable
    assert "1 of 2 findings not imported" in str(caught.value)
    assert len(hub.requests) == 3
    assert hub.accepted == [uid("a")]


async def test_flush_returns_only_after_security_hub_accepted_the_batch(
    fake_hub: tuple[FakeSecurityHub, str],
) -> None:
    hub, endpoint = fake_hub
    hub.hold = asyncio.Event()
    sink = scripted_sink(endpoint)
    try:
        flushing: asyncio.Task[None] = asyncio.create_task(deliver(sink, sample_alert(event_id="a")))
        await wait_until(lambda: hub.requests, 10, "the import request")
        # the poll above gave the flush many turns of the loop to return early, were it to
        assert not flushing.done(), "flush returned before Security Hub answered"
        hub.hold.set()
        await asyncio.wait_for(flushing, 10)
    finally:
        await sink.aclose()
    assert hub.accepted == [uid("a")]


async def test_a_permanent_call_error_fails_every_finding_of_the_batch(
    fake_hub: tuple[FakeSecurityHub, str],
) -> None:
    _, endpoint = fake_hub
    sink = scripted_sink(endpoint + "/nowhere")
    try:
        with pytest.raises(DeliveryError) as caught:
            await deliver(sink, sample_alert(event_id="a"), sample_alert(event_id="b"))
    finally:
        await sink.aclose()
    assert not caught.value.retryable, "a 404 will not heal on retry"
    assert "2 of 2" in str(caught.value)


async def test_run_deletes_the_messages_whose_findings_were_accepted_and_retries_the_other(
    fake_hub: tuple[FakeSecurityHub, str],
) -> None:
    hub, endpoint = fake_hub
    hub.reject_containing = event_id(1)
    fake = FakeSqs([eventbridge(n) for n in range(3)])
    sink = scripted_sink(endpoint)
    service = service_for(fake, sink, workers=3)  # type: ignore[arg-type]
    running = asyncio.create_task(service.run())
    await wait_until(lambda: len(fake.deleted) == 2 and fake.visibility, 20, "two deleted, one retried")
    service.request_stop()
    await asyncio.wait_for(running, 20)
    assert sorted(fake.deleted) == ["rh-m0", "rh-m2"]
    assert [handle for handle, _ in fake.visibility] == ["rh-m1"], "the rejected finding's message only"
    assert {uid.split("/")[-1] for uid in hub.accepted} == {event_id(0), event_id(2)}
    assert len(hub.requests) < 3 * 2, "alerts of concurrent messages shared calls"


def test_default_window_and_retry_settings_are_sane() -> None:
    config = SecurityHubConfig()
    assert 0 < config.batch_window_seconds <= 1
    assert config.max_attempts >= 3
    with pytest.raises(ValueError, match="account_id"):
        SecurityHubConfig(account_id="12345")
