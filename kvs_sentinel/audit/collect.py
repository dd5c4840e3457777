"""Reading one account for the audit: the only module of the audit that calls AWS. Read-only calls, each
named in the README's audit policy: iam:GetAccountAuthorizationDetails, GetAccountSummary,
ListAccessKeys, GetAccessKeyLastUsed; cloudtrail:DescribeTrails, GetTrailStatus, GetEventSelectors;
events:ListRules, ListTargetsByRule; sqs:GetQueueAttributes; sts:GetCallerIdentity (and AssumeRole for
other accounts)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from kvs_sentinel.audit.account import (
    AccessKey,
    AccountState,
    Identity,
    Queue,
    Rule,
    Trail,
    identities_from_details,
)
from kvs_sentinel.aws import aws_client

TIMEOUT_SECONDS = 30
ATTEMPTS = 5  # botocore's standard retries: the audit is not latency bound, throttling is retried


class AuditReadError(Exception):
    """A call the audit needs failed (AccessDenied names the missing permission)."""


@contextlib.asynccontextmanager
async def _reading() -> AsyncIterator[None]:
    """AWS errors as one AuditReadError naming the call (AccessDenied names the missing permission)."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", "")
        raise AuditReadError(f"{exc.operation_name}: {code}: {message}".rstrip(": ")) from None
    except (BotoCoreError, OSError, TimeoutError) as exc:
        raise AuditReadError(f"{type(exc).__name__}: {exc}") from None


def _client(service: str, region: str, credentials: Mapping[str, str] | None) -> Any:
    return aws_client(
        service, region=region, endpoint_url=None, timeout_seconds=TIMEOUT_SECONDS, attempts=ATTEMPTS,
        credentials=credentials,
    )  # fmt: skip


async def collect_account(
    region: str, queue_urls: Sequence[str], credentials: Mapping[str, str] | None = None
) -> AccountState:
    async with _reading():
        async with _client("sts", region, credentials) as sts:
            caller = await sts.get_caller_identity()
        partition = caller["Arn"].split(":")[1]
        state = AccountState(caller["Account"], region, partition)
        async with _client("iam", region, credentials) as iam:
            pages = [page async for page in iam.get_paginator("get_account_authorization_details").paginate()]
            state.identities = [await _with_keys(iam, i) for i in identities_from_details(pages)]
            summary = (await iam.get_account_summary())["SummaryMap"]
            state.root_access_keys = int(summary.get("AccountAccessKeysPresent", 0))
            state.root_mfa = bool(summary.get("AccountMFAEnabled", 0))
        async with _client("cloudtrail", region, credentials) as cloudtrail:
            state.trails = [
                await _trail(cloudtrail, t) for t in (await cloudtrail.describe_trails())["trailList"]
            ]
        if queue_urls:
            async with _client("sqs", region, credentials) as sqs:
                state.queues = [await _queue(sqs, url) for url in queue_urls]
            async with _client("events", region, credentials) as events:
                state.rules = [rule async for rule in _rules(events)]
    return state


async def _with_keys(iam: Any, identity: Identity) -> Identity:
    if identity.kind != "user":
        return identity
    keys = []
    async for page in iam.get_paginator("list_access_keys").paginate(UserName=identity.name):
        for key in page.get("AccessKeyMetadata", ()):
            used = await iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
            keys.append(
                AccessKey(
                    key["AccessKeyId"],
                    key.get("Status") == "Active",
                    key.get("CreateDate"),
                    used.get("AccessKeyLastUsed", {}).get("LastUsedDate"),
                )
            )
    return replace(identity, access_keys=tuple(keys))


async def _trail(cloudtrail: Any, trail: Mapping[str, Any]) -> Trail:
    arn = trail["TrailARN"]
    status = await cloudtrail.get_trail_status(Name=arn)
    selectors = await cloudtrail.get_event_selectors(TrailName=arn)
    reads, writes, kvs_data = recorded(selectors)
    return Trail(
        name=trail["Name"],
        arn=arn,
        home_region=trail.get("HomeRegion", ""),
        logging=bool(status.get("IsLogging")),
        multi_region=bool(trail.get("IsMultiRegionTrail")),
        log_file_validation=bool(trail.get("LogFileValidationEnabled")),
        records_reads=reads,
        records_writes=writes,
        records_kvs_data=kvs_data,
    )


def recorded(selectors: Mapping[str, Any]) -> tuple[bool, bool, bool]:
    """(read management events, write management events, KVS data events) a trail's selectors record."""
    basic = selectors.get("EventSelectors") or []
    advanced = selectors.get("AdvancedEventSelectors") or []
    if not basic and not advanced:
        return True, True, False  # a trail's default: every management event, no data event
    reads = writes = kvs_data = False
    for selector in basic:
        if selector.get("IncludeManagementEvents", True):
            kind = selector.get("ReadWriteType", "All")
            reads |= kind in ("All", "ReadOnly")
            writes |= kind in ("All", "WriteOnly")
    for selector in advanced:
        fields = {f.get("Field"): f for f in selector.get("FieldSelectors", ())}
        category = fields.get("eventCategory", {}).get("Equals", [])
        read_only = fields.get("readOnly", {}).get("Equals", [])
        if "Management" in category:
            reads |= read_only != ["false"]
            writes |= read_only != ["true"]
        if "Data" in category and "AWS::KinesisVideo::Stream" in fields.get("resources.type", {}).get(
            "Equals", []
        ):
            kvs_data = True
    return reads, writes, kvs_data


async def _queue(sqs: Any, url: str) -> Queue:
    attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "RedrivePolicy"]))[
        "Attributes"
    ]
    return Queue(url, attributes["QueueArn"], "RedrivePolicy" in attributes)


async def _rules(events: Any) -> Any:
    async for page in events.get_paginator("list_rules").paginate():
        for rule in page.get("Rules", ()):
            targets = await events.list_targets_by_rule(Rule=rule["Name"])
            arns = tuple(target["Arn"] for target in targets.get("Targets", ()))
            yield Rule(rule["Name"], rule.get("State", ""), arns)


async def assume(role_arn: str, region: str) -> dict[str, str]:
    """Credentials of `role_arn` (another account's audit role), from the caller's own."""
    async with _client("sts", region, None) as sts:
        response = await sts.assume_role(RoleArn=role_arn, RoleSessionName="kvs-sentinel-audit")
    keys = response["Credentials"]
    return {
        "aws_access_key_id": keys["AccessKeyId"],
        "aws_secret_access_key": keys["SecretAccessKey"],
        "aws_session_token": keys["SessionToken"],
    }


async def role_details(role: str, region: str) -> list[Any]:
    """GetAccountAuthorizationDetails pages for roles and the managed policies they hold."""
    async with _reading(), _client("iam", region, None) as iam:
        paginator = iam.get_paginator("get_account_authorization_details")
        filters = ["Role", "LocalManagedPolicy", "AWSManagedPolicy"]
        return [page async for page in paginator.paginate(Filter=filters)]


async def organization_accounts(region: str) -> list[str]:
    """The ids of the Organization's active accounts (the caller must be allowed organizations:ListAccounts:
    the management account or a delegated administrator)."""
    async with _reading(), _client("organizations", region, None) as organizations:
        paginator = organizations.get_paginator("list_accounts")
        return [
            account["Id"]
            async for page in paginator.paginate()
            for account in page.get("Accounts", ())
            if account.get("Status", "ACTIVE") == "ACTIVE"
        ]
