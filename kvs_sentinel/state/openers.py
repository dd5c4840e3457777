"""How each shipped backend is opened from the rest of its URL."""

from __future__ import annotations

import os
from pathlib import Path

from kvs_sentinel.state.base import StateStore
from kvs_sentinel.state.registry import StoreUse, backend


@backend("memory", "memory")
async def _memory(rest: str, use: StoreUse) -> StateStore:
    from kvs_sentinel.state.memory import MemoryStore

    return MemoryStore()


@backend("sqlite", "sqlite:PATH (e.g. sqlite:.kvs-sentinel/state.db)")
async def _sqlite(rest: str, use: StoreUse) -> StateStore:
    from kvs_sentinel.state.sqlite import GROUP_COMMIT_SECONDS, SqliteStore

    commit_every = GROUP_COMMIT_SECONDS if use.group_commits else 0.0
    return SqliteStore(Path(rest).expanduser(), commit_every=commit_every)  # noqa: ASYNC240 - at start-up


@backend("dynamodb", "dynamodb:TABLE (e.g. dynamodb:kvs-sentinel-state)")
async def _dynamodb(rest: str, use: StoreUse) -> StateStore:
    from kvs_sentinel.aws import aws_client
    from kvs_sentinel.state.dynamodb import DynamoDbStore

    region = os.environ.get("AWS_REGION")
    client = aws_client("dynamodb", region=region, endpoint_url=None, timeout_seconds=10)
    return DynamoDbStore(await client.__aenter__(), rest)
