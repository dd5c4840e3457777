"""`kvs-sentinel audit` against an account built in moto (server mode): IAM, CloudTrail, EventBridge and
SQS with known misconfigurations give exactly the expected findings; the same account fixed gives none."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kvs_sentinel.audit.account import AccessKey, AccountState, HeldPolicy, Identity
from kvs_sentinel.audit.collect import recorded
from kvs_sentinel.audit.identities import effective_kvs_actions, identity_findings, root_findings
from kvs_sentinel.config import load_config
from kvs_sentinel.iam_policy import Scope
from tests.aws_fixtures import aws_client, moto_server
from tests.support.queues import make_queue

__all__ = ["moto_server"]

PACK = Path(__file__).parents[1] / "config" / "packs" / "kvs.yaml"
ACCOUNT = "123456789012"  # moto's
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


def policy(*actions: str, resource: str = "*", effect: str = "Allow") -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": effect, "Action": list(actions), "Resource": resource}],
        }
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kvs_sentinel", "--log-format", "json", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


async def build_account(queue_url: str, queue_arn: str, *, fixed: bool) -> None:
    async with aws_client("iam") as iam:
        await iam.create_role(RoleName="kvs-producer-cam1", AssumeRolePolicyDocument=TRUST)
        produce = ("kinesisvideo:PutMedia", "kinesisvideo:GetDataEndpoint", "kinesisvideo:DescribeStream")
        cam1 = produce if fixed else (*produce, "kinesisvideo:GetMedia")
        await iam.put_role_policy(
            RoleName="kvs-producer-cam1", PolicyName="produce", PolicyDocument=policy(*cam1)
        )
        # a wildcard policy, held by a producer whose boundary keeps it to the producer's actions
        await iam.create_role(RoleName="kvs-producer-cam2", AssumeRolePolicyDocument=TRUST)
        boundary = await iam.create_policy(PolicyName="producer-boundary", PolicyDocument=policy(*produce))
        await iam.put_role_permissions_boundary(
            RoleName="kvs-producer-cam2", PermissionsBoundary=boundary["Policy"]["Arn"]
        )
        wide = await iam.create_policy(
            PolicyName="video-admin", PolicyDocument=policy(*produce) if fixed else policy("kinesisvideo:*")
        )
        await iam.attach_role_policy(RoleName="kvs-producer-cam2", PolicyArn=wide["Policy"]["Arn"])
        # a viewer that may read video: not a producer, so reading is its job
        await iam.create_role(RoleName="video-viewer", AssumeRolePolicyDocument=TRUST)
        await iam.put_role_policy(
            RoleName="video-viewer", PolicyName="view", PolicyDocument=policy("kinesisvideo:GetMedia")
        )
        # an IAM user with a long-term key and KVS rights (fixed: the key is deactivated)
        await iam.create_user(UserName="ci-uploader")
        await iam.put_user_policy(UserName="ci-uploader", PolicyName="up", PolicyDocument=policy(*produce))
        key = (await iam.create_access_key(UserName="ci-uploader"))["AccessKey"]["AccessKeyId"]
        if fixed:
            await iam.update_access_key(UserName="ci-uploader", AccessKeyId=key, Status="Inactive")
    async with aws_client("s3") as s3:
        await s3.create_bucket(Bucket="trail-bucket")
    async with aws_client("cloudtrail") as cloudtrail:
        await cloudtrail.create_trail(
            Name="main-trail",
            S3BucketName="trail-bucket",
            IsMultiRegionTrail=fixed,
            EnableLogFileValidation=fixed,
        )
        await cloudtrail.start_logging(Name="main-trail")
        if fixed:
            await cloudtrail.put_event_selectors(
                TrailName="main-trail",
                AdvancedEventSelectors=[
                    {
                        "Name": "management",
                        "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}],
                    },
                    {
                        "Name": "kvs data",
                        "FieldSelectors": [
                            {"Field": "eventCategory", "Equals": ["Data"]},
                            {"Field": "resources.type", "Equals": ["AWS::KinesisVideo::Stream"]},
                        ],
                    },
                ],
            )
        else:
            await cloudtrail.create_trail(Name="old-trail", S3BucketName="trail-bucket")  # never started
    async with aws_client("events") as events:
        state = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" if fixed else "ENABLED"
        pattern = json.dumps({"source": ["aws.kinesisvideo"]})
        await events.put_rule(Name="kvs-sentinel", EventPattern=pattern, State=state)
        await events.put_targets(Rule="kvs-sentinel", Targets=[{"Id": "queue", "Arn": queue_arn}])


async def plain_queue(name: str) -> tuple[str, str]:
    async with aws_client("sqs") as sqs:
        url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
            "QueueArn"
        ]
    return url, arn


def config_for(tmp_path: Path, queue_url: str) -> Path:
    config = tmp_path / "sentinel.yaml"
    config.write_text(f"packs: [{PACK}]\nsources:\n  - type: sqs\n    queue_url: {queue_url}\n")
    return config


def findings_of(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_a_misconfigured_account_gives_exactly_the_expected_findings(
    moto_server: str, tmp_path: Path
) -> None:
    url, arn = await plain_queue("kvs-sentinel-events")  # no dead-letter queue
    await build_account(url, arn, fixed=False)
    done = await asyncio.to_thread(
        cli, "audit", "--config", str(config_for(tmp_path, url)), "--format", "jsonl"
    )
    assert done.returncode == 1, done.stderr  # findings at high or above
    found = findings_of(done)
    by_check = {(f["detector"], f["resource"]) for f in found}
    role = f"arn:aws:iam::{ACCOUNT}:role/"
    trail = f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/"
    assert by_check == {
        ("kvs-audit-producer-excess-grant", role + "kvs-producer-cam1"),
        ("kvs-audit-wildcard-grant", f"arn:aws:iam::{ACCOUNT}:policy/video-admin"),
        ("kvs-audit-user-access-key", f"arn:aws:iam::{ACCOUNT}:user/ci-uploader"),
        ("kvs-audit-root-no-mfa", f"arn:aws:iam::{ACCOUNT}:root"),
        ("kvs-audit-trail-not-logging", trail + "old-trail"),
        ("kvs-audit-trail-single-region", trail + "main-trail"),
        ("kvs-audit-trail-no-validation", trail + "main-trail"),
        ("kvs-audit-trail-no-kvs-data-events", trail + "main-trail"),
        ("kvs-audit-rule-without-read-events", arn),
        ("kvs-audit-queue-without-dlq", arn),
    }
    excess = next(f for f in found if f["detector"] == "kvs-audit-producer-excess-grant")
    assert excess["severity"] == "critical"  # it can read video
    assert excess["details"]["granted_by"] == {
        "kinesisvideo:GetMedia": ["inline produce on role kvs-producer-cam1"]
    }
    data_gap = next(f for f in found if f["detector"] == "kvs-audit-trail-no-kvs-data-events")
    assert "kvs-producer-media-read" in data_gap["details"]["blinds"]
    read_gap = next(f for f in found if f["detector"] == "kvs-audit-rule-without-read-events")
    assert "kvs-producer-consumer-endpoint" in read_gap["details"]["blinds"]  # GetDataEndpoint is read-only
    assert all(f["tags"] == ["audit"] and f["event_id"].startswith("audit-") for f in found)

    table = await asyncio.to_thread(
        cli, "audit", "--config", str(config_for(tmp_path, url)), "--fail-on", "none"
    )
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:2] == ["SEVERITY", "CHECK"]
    assert table.stdout.splitlines()[1].startswith("critical kvs-audit-producer-excess-grant")
    assert "findings: 1 critical" in table.stdout


async def test_the_same_account_fixed_gives_none(moto_server: str, tmp_path: Path) -> None:
    url, arn, _ = await make_queue("kvs-sentinel-events")  # with its dead-letter queue
    await build_account(url, arn, fixed=True)
    done = await asyncio.to_thread(
        cli, "audit", "--config", str(config_for(tmp_path, url)), "--format", "jsonl"
    )
    # moto cannot enable MFA on the root user: the one finding a fixed account still has there
    assert [f["detector"] for f in findings_of(done)] == ["kvs-audit-root-no-mfa"]
    assert done.returncode == 1  # high
    gate = await asyncio.to_thread(
        cli, "audit", "--config", str(config_for(tmp_path, url)), "--format", "jsonl", "--fail-on", "critical"
    )
    assert gate.returncode == 0


def cloudtrail_file(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"Records": records}))
    return path


def call(name: str, role: str, n: int, **request: Any) -> dict[str, Any]:
    return {
        "eventVersion": "1.09",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": name,
        "eventID": f"00000000-0000-4000-8000-{n:012d}",
        "eventTime": "2026-11-20T10:00:00Z",
        "awsRegion": "eu-west-1",
        "recipientAccountId": ACCOUNT,
        "userIdentity": {
            "type": "AssumedRole",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/cam",
            "accountId": ACCOUNT,
            "sessionContext": {"sessionIssuer": {"type": "Role", "userName": role}},
        },
        "requestParameters": request,
    }


async def test_the_suggested_policy_names_exactly_the_streams_the_role_used(
    moto_server: str, tmp_path: Path
) -> None:
    url, arn = await plain_queue("kvs-sentinel-events")
    await build_account(url, arn, fixed=False)
    stream = f"arn:aws:kinesisvideo:eu-west-1:{ACCOUNT}:stream/"
    trail = cloudtrail_file(
        tmp_path / "trail.json",
        [
            call("PutMedia", "kvs-producer-cam1", 1, streamARN=stream + "front-door/1700000000000"),
            call("GetDataEndpoint", "kvs-producer-cam1", 2, streamName="garage", aPIName="PUT_MEDIA"),
            call("PutMedia", "kvs-producer-cam1", 3, streamARN=stream + "front-door/1700000000000"),
            call("PutMedia", "kvs-producer-cam9", 4, streamARN=stream + "someone-else/1700000000000"),
        ],
    )
    done = await asyncio.to_thread(
        cli,
        "audit",
        "--config",
        str(config_for(tmp_path, url)),
        "--suggest-policy",
        "kvs-producer-cam1",
        str(trail),
    )
    assert done.returncode == 0, done.stderr
    suggestion = json.loads(done.stdout)
    [statement] = suggestion["Statement"]
    assert sorted(statement["Resource"]) == [stream + "front-door/*", stream + "garage/*"]
    assert sorted(statement["Action"]) == [
        "kinesisvideo:DescribeStream",
        "kinesisvideo:GetDataEndpoint",
        "kinesisvideo:PutMedia",
    ]
    assert (
        "drops 1 kinesisvideo action(s) kvs-producer-cam1 can use today: kinesisvideo:GetMedia" in done.stderr
    )


def test_an_unreadable_account_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    done = cli("audit", "--config", str(config_for(tmp_path, "https://sqs.us-east-1.amazonaws.com/1/q")))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("kvs-sentinel: audit could not read the account:")
    assert "Traceback" not in done.stderr


def identity(name: str, *documents: str, boundary: str | None = None, kind: str = "role") -> Identity:
    def held(label: str, text: str) -> HeldPolicy:
        return HeldPolicy(label, tuple(json.loads(text)["Statement"]))

    return Identity(
        kind,
        name,
        f"arn:aws:iam::{ACCOUNT}:{kind}/{name}",
        tuple(held(f"p{i}", text) for i, text in enumerate(documents)),
        held("boundary", boundary) if boundary else None,
    )


def test_a_deny_in_one_policy_removes_what_another_allows() -> None:
    both = identity("r", policy("kinesisvideo:*"), policy("kinesisvideo:GetMedia", effect="Deny"))
    actions = effective_kvs_actions(both, Scope(account=ACCOUNT)).actions
    assert "kinesisvideo:PutMedia" in actions
    assert "kinesisvideo:GetMedia" not in actions


def test_a_boundary_limits_what_the_policies_grant() -> None:
    bounded = identity("r", policy("kinesisvideo:*"), boundary=policy("kinesisvideo:PutMedia"))
    assert effective_kvs_actions(bounded, Scope(account=ACCOUNT)).actions == ("kinesisvideo:PutMedia",)


def test_inactive_keys_and_root_are_judged() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    user = identity("u", policy("kinesisvideo:PutMedia"), kind="user")
    keys = (
        AccessKey("AKIAOLD", True, datetime(2026, 1, 1, tzinfo=UTC), None),
        AccessKey("AKIAOFF", False, datetime(2026, 1, 1, tzinfo=UTC), None),
    )
    state = AccountState(
        ACCOUNT, "us-east-1", identities=[Identity(**{**user.__dict__, "access_keys": keys})]
    )
    loaded = load_config(PACK.parents[1] / "sentinel.yaml", deliver=False, consume=False)
    [key] = identity_findings(state, loaded.lists, now)
    assert (key.access_key_id, key.details["age_days"]) == ("AKIAOLD", 334)
    state.root_access_keys, state.root_mfa = 1, True
    assert [f.detector for f in root_findings(state, now)] == ["kvs-audit-root-access-key"]


def test_what_trail_selectors_record() -> None:
    assert recorded({}) == (True, True, False)
    assert recorded(
        {"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]}
    ) == (
        False,
        True,
        False,
    )
    reads_only = {"Field": "readOnly", "Equals": ["true"]}
    management = {"Field": "eventCategory", "Equals": ["Management"]}
    assert recorded({"AdvancedEventSelectors": [{"FieldSelectors": [management, reads_only]}]}) == (
        True,
        False,
        False,
    )


async def test_every_account_of_the_organization_through_the_audit_role(
    moto_server: str, tmp_path: Path
) -> None:
    async with aws_client("organizations") as organizations:
        await organizations.create_organization(FeatureSet="ALL")
        await organizations.create_account(AccountName="cameras", Email="cameras@example.com")
        listed = await organizations.list_accounts()
    ids = {account["Id"] for account in listed["Accounts"]}
    assert len(ids) == 2
    config = tmp_path / "sentinel.yaml"
    config.write_text(f"packs: [{PACK}]\n")
    done = await asyncio.to_thread(
        cli, "audit", "--config", str(config), "--format", "jsonl", "--fail-on", "none",
        "--role-arn-template", "arn:aws:iam::{account}:role/kvs-sentinel-audit", "--accounts", "all",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    no_trail = {f["account"] for f in findings_of(done) if f["detector"] == "kvs-audit-no-trail"}
    assert no_trail == ids  # moto answers each assumed role as its own, empty, account
    mismatched = await asyncio.to_thread(cli, "audit", "--config", str(config), "--accounts", "all")
    assert mismatched.returncode == 2
    assert "--accounts and --role-arn-template go together" in mismatched.stderr


async def test_the_suggestion_learns_from_the_archive_in_s3_too(moto_server: str, tmp_path: Path) -> None:
    stream = f"arn:aws:kinesisvideo:eu-west-1:{ACCOUNT}:stream/"
    records = [call("PutMedia", "kvs-producer-cam1", 1, streamARN=stream + "porch/1700000000000")]
    async with aws_client("s3") as s3:
        await s3.create_bucket(Bucket="trail-archive")
        folder = f"AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/2026/11/20/"
        key = folder + f"{ACCOUNT}_CloudTrail_eu-west-1_20261120T1005Z_a.json"
        await s3.put_object(Bucket="trail-archive", Key=key, Body=json.dumps({"Records": records}).encode())
    config = tmp_path / "sentinel.yaml"
    config.write_text(f"packs: [{PACK}]\n")
    done = await asyncio.to_thread(
        cli,
        "audit",
        "--config",
        str(config),
        "--suggest-policy",
        "kvs-producer-cam1",
        "s3://trail-archive/AWSLogs/",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Statement"][0]["Resource"] == [stream + "porch/*"]
    missing = await asyncio.to_thread(
        cli, "audit", "--config", str(config), "--suggest-policy", "kvs-producer-cam1", str(tmp_path / "none")
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("kvs-sentinel: ")
    assert "Traceback" not in missing.stderr
