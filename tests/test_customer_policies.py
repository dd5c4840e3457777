"""Customer managed policies read from IAM (moto in server mode) and judged when attached."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kvs_sentinel.customer_policies import (
    CustomerPolicy,
    CustomerPolicyCatalog,
    PolicyRefresher,
    active_catalog,
    iam_client,
    read_policy,
    refresh_attached,
    start_policy_lookup,
    use_catalog,
)
from kvs_sentinel.decode import decode_all
from kvs_sentinel.detectors.iam_checks import PolicyGrantArguments, policy_grant
from kvs_sentinel.envelopes import Document
from kvs_sentinel.events import Event, Location
from kvs_sentinel.examples import wrap
from tests.aws_fixtures import aws_client, moto_server
from tests.support.waiting import wait_until

__all__ = ["moto_server"]

GET_MEDIA = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "kinesisvideo:GetMedia", "Resource": "*"}],
}
PUT_MEDIA = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "kinesisvideo:PutMedia", "Resource": "*"}],
}
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture
def no_catalog() -> Iterator[None]:
    yield
    use_catalog(None)


async def create_policy(name: str, document: dict[str, Any], attach_to: str | None = None) -> str:
    async with aws_client("iam") as iam:
        arn: str = (await iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document)))["Policy"][
            "Arn"
        ]
        if attach_to is not None:
            await iam.create_role(RoleName=attach_to, AssumeRolePolicyDocument=json.dumps(TRUST))
            await iam.attach_role_policy(RoleName=attach_to, PolicyArn=arn)
    return arn


def attach_event(arn: str) -> Event:
    record = {
        "eventVersion": "1.09",
        "eventSource": "iam.amazonaws.com",
        "eventName": "AttachRolePolicy",
        "awsRegion": "us-east-1",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/admin/x"},
        "requestParameters": {"roleName": "kvs-producer-cam", "policyArn": arn},
        "eventID": "3f0c5e2a-0000-4000-8000-0000000000bb",
        "recipientAccountId": "123456789012",
    }
    (event,) = decode_all(Document(wrap(record, "record"), Location("test")))
    assert isinstance(event, Event)
    return event


async def test_attached_customer_policies_are_read_with_their_default_version(moto_server: str) -> None:
    arn = await create_policy("kvs-producer-extra", GET_MEDIA, attach_to="kvs-producer-cam")
    await create_policy("unattached", PUT_MEDIA)
    catalog = CustomerPolicyCatalog()
    async with iam_client() as iam:
        assert await refresh_attached(iam, catalog) == 1
        assert await refresh_attached(iam, catalog) == 0  # unchanged: not read again
        async with aws_client("iam") as setup:
            await setup.create_policy_version(
                PolicyArn=arn, PolicyDocument=json.dumps(PUT_MEDIA), SetAsDefault=True
            )
        assert await refresh_attached(iam, catalog) == 1
    policy = catalog.get(arn)
    assert policy is not None
    assert policy.version == "v2"
    assert policy.statements[0]["Action"] == "kinesisvideo:PutMedia"


async def test_a_policy_is_read_by_arn_and_a_missing_one_is_none(moto_server: str) -> None:
    arn = await create_policy("named", GET_MEDIA)
    async with iam_client() as iam:
        policy = await read_policy(iam, arn, 0.0)
        assert policy is not None
        assert (policy.version, policy.statements[0]["Action"]) == ("v1", "kinesisvideo:GetMedia")
        assert await read_policy(iam, "arn:aws:iam::123456789012:policy/none", 0.0) is None


async def test_the_refresher_fetches_what_a_check_asked_for(moto_server: str, no_catalog: None) -> None:
    arn = await create_policy("kvs-producer-late", GET_MEDIA)  # created after the start-up read
    catalog = CustomerPolicyCatalog()
    use_catalog(catalog)
    check = policy_grant(PolicyGrantArguments(outside=["PutMedia"]))
    async with iam_client() as iam:
        refresher = PolicyRefresher(iam, catalog, refresh_seconds=3600)
        await refresher.start()
        assert check(attach_event(arn)) is None  # not known yet: asked for
        task = asyncio.create_task(refresher.run())
        try:
            await wait_until(lambda: catalog.get(arn), 5, "the refresher to read the policy from IAM")
        finally:
            task.cancel()
    details = check(attach_event(arn))
    assert details is not None
    assert details["kvs_actions"] == ["kinesisvideo:GetMedia"]
    assert details["judged_from"].startswith("IAM: default version v1")


def test_without_the_catalog_customer_policies_are_not_judged(no_catalog: None) -> None:
    check = policy_grant(PolicyGrantArguments())
    arn = "arn:aws:iam::123456789012:policy/kvs-producer-extra"
    assert check(attach_event(arn)) is None
    catalog = CustomerPolicyCatalog()
    catalog.put(CustomerPolicy(arn, "v3", tuple(GET_MEDIA["Statement"]), 0.0))
    use_catalog(catalog)
    assert check(attach_event(arn)) is not None
    aws_only = policy_grant(PolicyGrantArguments(source="aws_managed"))  # kvs-iam-managed-policy-grant
    assert aws_only(attach_event(arn)) is None


def test_catalog_is_bounded_and_remembers_what_was_asked() -> None:
    catalog = CustomerPolicyCatalog(max_policies=2)
    for n in range(3):
        catalog.put(CustomerPolicy(f"arn:{n}", "v1", (), 0.0))
    assert len(catalog) == 2
    assert catalog.get("arn:0") is None
    assert list(catalog.wanted) == ["arn:0"]
    assert catalog.wanted_signal.is_set()


async def test_run_starts_the_lookup_and_turns_it_off_on_the_way_out(moto_server: str) -> None:
    arn = await create_policy("kvs-producer-reads", GET_MEDIA, attach_to="kvs-producer-cam")
    async with contextlib.AsyncExitStack() as stack:
        catalog = await start_policy_lookup(stack, refresh_seconds=900)
        assert active_catalog() is catalog
        assert catalog.get(arn) is not None  # read at start-up
    assert active_catalog() is None


async def test_a_refused_first_read_fails_start_up(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: IAM unreachable
    with pytest.raises(Exception, match=r"Could not connect to the endpoint URL"):
        async with contextlib.AsyncExitStack() as stack:
            await start_policy_lookup(stack, 900, lambda: iam_client(attempts=1))
    assert active_catalog() is None
