"""Monitoring coverage: whether CloudTrail records what the detectors need, and whether it reaches the
sentinel's queue. Each gap names the detectors it blinds (those of the loaded pack that watch the calls
that go unseen)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial

from kvs_sentinel.alerts import Alert
from kvs_sentinel.audit.account import AccountState
from kvs_sentinel.audit.findings import finding
from kvs_sentinel.detectors.index import DetectorIndex

KVS_SOURCE = "kinesisvideo.amazonaws.com"
ALL_MANAGEMENT = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"


class Blinded:
    """Which detectors watch which calls."""

    def __init__(self, index: DetectorIndex, lists: Mapping[str, Sequence[object]]) -> None:
        self.index = index
        self.data_events = [
            str(a) for key in ("kvs_ingest_apis", "kvs_media_read_apis") for a in lists.get(key, ())
        ]
        every_kvs = {str(a) for key, values in lists.items() if key.startswith("kvs_") for a in values}
        self.read_only = sorted(
            a for a in every_kvs if a.startswith(("Describe", "Get", "List")) and a not in self.data_events
        )

    def by(self, names: Iterable[str], source: str = KVS_SOURCE) -> list[str]:
        found = {d.id for name in names for d in self.index.candidates_for(source, name)}
        return sorted(found)

    def everything(self) -> list[str]:
        return [d.id for d in self.index.detectors]


def monitoring_findings(
    state: AccountState, blinded: Blinded, now: datetime | None = None
) -> Iterator[Alert]:
    account, region = state.account, state.region
    logging = [trail for trail in state.trails if trail.logging]

    gap = partial(_gap, state, now)

    for trail in state.trails:
        if not trail.logging:
            yield gap(
                "kvs-audit-trail-not-logging",
                "high",
                "A CloudTrail trail is not logging",
                f"trail {trail.name} exists but is not logging",
                trail.arn,
                "Start logging (StartLogging), and find out who stopped it.",
                [],
            )
    trails = f"account {account}"
    if not logging:
        yield gap(
            "kvs-audit-no-trail",
            "critical",
            "No CloudTrail trail is logging",
            f"{trails}: no trail is logging, so no API call reaches the sentinel",
            f"arn:aws:cloudtrail:{region}:{account}:trail/*",
            "Create a multi-region trail that logs management events and KVS data events (the stack can).",
            blinded.everything(),
        )
        return
    if not any(trail.multi_region for trail in logging):
        yield gap(
            "kvs-audit-trail-single-region",
            "high",
            "No multi-region trail",
            f"{trails}: every logging trail records one region only; calls in the others go unseen",
            logging[0].arn,
            "Make the trail multi-region (UpdateTrail --is-multi-region-trail).",
            [],
        )
    if not any(trail.log_file_validation for trail in logging):
        yield gap(
            "kvs-audit-trail-no-validation",
            "medium",
            "Log file validation is off",
            f"{trails}: no logging trail validates its log files, so edited or deleted files go unnoticed",
            logging[0].arn,
            "Enable log file validation (UpdateTrail --enable-log-file-validation).",
            [],
        )
    if not any(trail.records_writes for trail in logging):
        yield gap(
            "kvs-audit-trail-no-write-events",
            "critical",
            "Write management events are not recorded",
            f"{trails}: no logging trail records write management events (IAM, CloudTrail, KVS writes)",
            logging[0].arn,
            "Record management events, read and write, on a logging trail.",
            blinded.everything(),
        )
    if not any(trail.records_reads for trail in logging):
        yield gap(
            "kvs-audit-trail-no-read-events",
            "high",
            "Read-only management events are not recorded",
            f"{trails}: no logging trail records read-only management events (GetDataEndpoint...)",
            logging[0].arn,
            "Record read-only management events as well (ReadWriteType All).",
            blinded.by(blinded.read_only),
        )
    if not any(trail.records_kvs_data for trail in logging):
        yield gap(
            "kvs-audit-trail-no-kvs-data-events",
            "high",
            "Kinesis Video Streams data events are not recorded",
            f"{trails}: no logging trail records data events of AWS::KinesisVideo::Stream "
            "(GetMedia, PutMedia and the other media calls)",
            logging[0].arn,
            "Add an advanced event selector: eventCategory Data, resources.type AWS::KinesisVideo::Stream.",
            blinded.by(blinded.data_events),
        )
    yield from _delivery_findings(state, blinded, now)


def _gap(
    state: AccountState,
    now: datetime | None,
    detector: str,
    severity: str,
    title: str,
    summary: str,
    resource: str,
    remediation: str,
    blinds: list[str],
) -> Alert:
    return finding(
        detector,
        severity,
        title,
        summary + (f"; blinds {len(blinds)} detector(s)" if blinds else ""),
        practice="monitoring",
        resource=resource,
        account=state.account,
        region=state.region,
        remediation=remediation,
        details={"blinds": blinds},
        now=now,
    )


def _delivery_findings(state: AccountState, blinded: Blinded, now: datetime | None) -> Iterator[Alert]:
    make = partial(_gap, state, now)
    for queue in state.queues:
        rules = [rule for rule in state.rules if queue.arn in rule.target_arns]
        enabled = [rule for rule in rules if rule.state in ("ENABLED", ALL_MANAGEMENT)]
        if not enabled:
            yield make(
                "kvs-audit-no-rule",
                "critical",
                "No enabled EventBridge rule sends CloudTrail to the queue",
                f"queue {queue.url}: no enabled rule in {state.region} targets it"
                + (f" ({', '.join(r.name for r in rules)} disabled)" if rules else ""),
                queue.arn,
                "Create (or enable) the rule the stack defines, with the queue as its target.",
                blinded.everything(),
            )
        elif not any(rule.state == ALL_MANAGEMENT for rule in enabled):
            yield make(
                "kvs-audit-rule-without-read-events",
                "medium",
                "The EventBridge rule does not receive read-only management events",
                f"queue {queue.url}: rule {enabled[0].name} is ENABLED, not {ALL_MANAGEMENT}, so read-only "
                "calls (GetDataEndpoint, DescribeStream) never reach the queue",
                queue.arn,
                f"Set the rule's state to {ALL_MANAGEMENT}.",
                blinded.by(blinded.read_only),
            )
        if not queue.has_dead_letter_queue:
            yield make(
                "kvs-audit-queue-without-dlq",
                "medium",
                "The sentinel's queue has no dead-letter queue",
                f"queue {queue.url}: a message that keeps failing is retried until the retention period "
                "ends, then lost without a trace",
                queue.arn,
                "Give the queue a redrive policy to a dead-letter queue (maxReceiveCount 5) and alarm on it.",
                [],
            )
