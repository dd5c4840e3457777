"""The `audit` command: read the account(s), judge, report, and (with --deliver) send the findings through
the configured routes and sinks."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from kvs_sentinel.alerts import Alert
from kvs_sentinel.audit.account import AccountState, identities_from_details
from kvs_sentinel.audit.collect import (
    AuditReadError,
    assume,
    collect_account,
    organization_accounts,
    role_details,
)
from kvs_sentinel.audit.identities import effective_kvs_actions, identity_findings, root_findings
from kvs_sentinel.audit.monitoring import Blinded, monitoring_findings
from kvs_sentinel.audit.report import failed, write_jsonl, write_table
from kvs_sentinel.audit.suggest import dropped, role_usage, suggested_policy
from kvs_sentinel.config import LoadedConfig
from kvs_sentinel.decode import decode_all
from kvs_sentinel.detectors.index import DetectorIndex
from kvs_sentinel.errors import DeliveryError, InputError, UsageError
from kvs_sentinel.events import Event
from kvs_sentinel.iam_policy import Scope
from kvs_sentinel.sources.local import FileSource
from kvs_sentinel.sources.s3_archive import ArchiveSource, TimeRange
from kvs_sentinel.stats import RunStats

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def judge(state: AccountState, loaded: LoadedConfig) -> list[Alert]:
    blinded = Blinded(DetectorIndex(loaded.detectors), loaded.lists)
    return [
        *identity_findings(state, loaded.lists),
        *root_findings(state),
        *monitoring_findings(state, blinded),
    ]


def queue_urls(loaded: LoadedConfig) -> list[str]:
    urls = (getattr(source, "queue_url", None) for source in loaded.sources)
    return [url for url in urls if isinstance(url, str) and "${" not in url]


def queue_account(url: str) -> str | None:
    """The account in a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME): each account's audit
    checks only the queues (and rules) that are its own."""
    parts = url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else None


async def run_audit(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    region = (
        args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    )
    if args.suggest_policy:
        return await _suggest(args, region)
    accounts = [a.strip() for a in (args.accounts or "").split(",") if a.strip()]
    if bool(accounts) != bool(args.role_arn_template):
        print("kvs-sentinel: --accounts and --role-arn-template go together", file=sys.stderr)
        return EXIT_USAGE
    findings: list[Alert] = []
    try:
        if accounts == ["all"]:
            accounts = await organization_accounts(region)
        if accounts:
            for account in accounts:
                role = args.role_arn_template.format(account=account)
                own = [url for url in queue_urls(loaded) if queue_account(url) == account]
                state = await collect_account(region, own, await assume(role, region))
                findings += judge(state, loaded)
        else:
            findings = judge(await collect_account(region, queue_urls(loaded)), loaded)
    except AuditReadError as exc:
        print(f"kvs-sentinel: audit could not read the account: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "jsonl":
        write_jsonl(findings, sys.stdout)
    else:
        write_table(findings, sys.stdout)
    if args.deliver:
        from kvs_sentinel.app import configured_dispatcher

        dispatcher = configured_dispatcher(loaded, "audit --deliver")
        try:
            async with dispatcher.running():
                await dispatcher.deliver(findings)
        except DeliveryError as exc:
            print(f"kvs-sentinel: audit findings not delivered: {exc}", file=sys.stderr)
            return EXIT_FINDINGS
        finally:
            await dispatcher.aclose()
    return EXIT_FINDINGS if failed(findings, args.fail_on) else EXIT_OK


async def _suggest(args: argparse.Namespace, region: str) -> int:
    role = args.suggest_policy
    if not args.paths:
        print(
            "kvs-sentinel: --suggest-policy needs CloudTrail files to learn from (PATH...)", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        usage = role_usage(role, [event async for event in _events(args.paths)])
    except (InputError, UsageError) as exc:
        print(f"kvs-sentinel: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not usage.streams:
        print(
            f"kvs-sentinel: no kinesisvideo call on a stream by role {role} in the files given",
            file=sys.stderr,
        )
        return EXIT_USAGE
    policy = suggested_policy(usage)
    print(json.dumps(policy, indent=2))
    print(
        f"from {usage.events} kinesisvideo call(s) by {role}: {len(usage.streams)} stream(s), "
        f"{len(usage.channels)} channel(s)",
        file=sys.stderr,
    )
    try:
        details = await role_details(role, region)
    except AuditReadError as exc:
        print(f"what {role} can do today is unknown (IAM not readable: {exc})", file=sys.stderr)
        return EXIT_OK
    identity = next((i for i in identities_from_details(details) if i.name == role), None)
    if identity is None:
        print(f"role {role} is not in this account: nothing to compare", file=sys.stderr)
        return EXIT_OK
    partition = identity.arn.split(":")[1]
    current = effective_kvs_actions(identity, Scope(partition, identity.arn.split(":")[4]))
    lost = dropped(current.actions, policy)
    print(
        f"the suggestion drops {len(lost)} kinesisvideo action(s) {role} can use today"
        + (f": {', '.join(lost)}" if lost else ""),
        file=sys.stderr,
    )
    return EXIT_OK


async def _events(paths: list[str]) -> AsyncIterator[Event]:
    """The events of local CloudTrail files, or of CloudTrail's archive for s3:// URLs; raises InputError
    (LogFileError for S3) or UsageError."""
    async with AsyncExitStack() as stack:
        source: FileSource | ArchiveSource
        if any(path.startswith("s3://") for path in paths):
            from kvs_sentinel.archive_commands import archive_source

            source = await archive_source(paths, TimeRange(), RunStats(), stack)
            found = bool(source.files)
        else:
            source = FileSource(paths, RunStats())
            found = bool(source.names)
        if not found:
            raise InputError("no input files found")
        async for batch in source.messages():
            for document in batch.documents:
                for item in decode_all(document):
                    if isinstance(item, Event):
                        yield item
