"""The DynamoDB table of the state store, made on moto as the stack makes it, and the `store` fixture:
each test that takes it runs on memory, SQLite (committing each batch, as `run` opens it, and in groups,
as a replay of files does) and DynamoDB (the test module imports `moto_server`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvs_sentinel.state.base import StateStore
from kvs_sentinel.state.registry import StoreUse, open_store
from tests.aws_fixtures import aws_client

TABLE = "kvs-sentinel-state"


async def make_table() -> None:
    async with aws_client("dynamodb") as dynamodb:
        await dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        await dynamodb.update_time_to_live(
            TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )


@pytest.fixture(params=["memory", "sqlite", "sqlite-grouped", "dynamodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        url = "memory"
    elif request.param.startswith("sqlite"):
        url = f"sqlite:{tmp_path / 'state' / 'state.db'}"
    else:
        request.getfixturevalue("moto_server")
        await make_table()
        url = f"dynamodb:{TABLE}"
    opened = await open_store(url, StoreUse(group_commits=request.param == "sqlite-grouped"))
    try:
        yield opened
    finally:
        await opened.aclose()
