"""CloudTrail log files fetched from a real (moto server) S3 bucket, split as `replay` splits files."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from kvs_sentinel.decode import decode_all
from kvs_sentinel.envelopes import LogFileRef, Malformed
from kvs_sentinel.events import Event, Location
from kvs_sentinel.log_files import LogFileError
from kvs_sentinel.sources.s3 import (
    documents_of_log_file,
    fetch_log_file,
    log_file_location,
    s3_client,
)
from tests.aws_fixtures import aws_client, moto_server

__all__ = ["moto_server"]

BUCKET = "kvs-trail-logs"
KEY = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_x.json.gz"


def record(n: int) -> dict[str, Any]:
    return {
        "eventVersion": "1.09",
        "eventID": f"00000000-0000-0000-0000-{n:012d}",
        "eventTime": "2024-05-01T12:00:00Z",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "GetMedia",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/kvs-producer/cam",
        },
    }


def log_file(count: int) -> bytes:
    return gzip.compress(json.dumps({"Records": [record(n) for n in range(count)]}).encode())


async def put(key: str, body: bytes) -> None:
    async with aws_client("s3") as s3:
        await s3.create_bucket(Bucket=BUCKET)
        await s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def events_of(items: list[Any]) -> list[Event]:
    events: list[Event] = []
    for item in items:
        assert not isinstance(item, Malformed), item
        events.extend(e for e in decode_all(item) if type(e) is Event)
    return events


async def test_a_gzipped_log_file_in_s3_becomes_its_events(moto_server: str) -> None:
    await put(KEY, log_file(3))
    ref = LogFileRef(BUCKET, KEY, "sqs:q/m1")
    async with s3_client() as client:
        stream = await fetch_log_file(client, ref)
    with stream:
        items = list(documents_of_log_file(stream, log_file_location(ref)))
    events = events_of(items)
    assert [e.doc.eventID for e in events] == [record(n)["eventID"] for n in range(3)]
    assert {e.form for e in events} == {"records"}
    assert items[0].location.source == f"s3://{BUCKET}/{KEY}"


async def test_a_large_log_file_spills_to_disk_and_streams(moto_server: str) -> None:
    await put(KEY, log_file(2000))
    ref = LogFileRef(BUCKET, KEY, "sqs:q/m1")
    async with s3_client() as client:
        stream = await fetch_log_file(client, ref, spool_bytes=1024)
    with stream:
        assert stream._rolled  # type: ignore[attr-defined]  # on disk, not in memory
        events = events_of(list(documents_of_log_file(stream, log_file_location(ref))))
    assert len(events) == 2000


async def test_a_missing_object_is_an_input_error_not_worth_retrying_soon(moto_server: str) -> None:
    await put("other.json.gz", log_file(1))
    async with s3_client() as client:
        with pytest.raises(LogFileError, match="NoSuchKey") as missing:
            await fetch_log_file(client, LogFileRef(BUCKET, KEY, "sqs:q/m1"))
        with pytest.raises(LogFileError, match="NoSuchBucket") as no_bucket:
            await fetch_log_file(client, LogFileRef("kvs-nowhere", KEY, "sqs:q/m1"))
    assert not missing.value.retryable
    assert not no_bucket.value.retryable
    assert f"s3://{BUCKET}/{KEY}" in str(missing.value)


async def test_an_object_over_the_size_cap_is_refused(moto_server: str) -> None:
    await put(KEY, log_file(50))
    async with s3_client() as client:
        with pytest.raises(LogFileError, match="limit") as too_big:
            await fetch_log_file(client, LogFileRef(BUCKET, KEY, "sqs:q/m1"), max_bytes=100)
    assert not too_big.value.retryable


async def test_an_unreachable_endpoint_is_retryable(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    async with s3_client(attempts=1) as client:
        with pytest.raises(LogFileError) as unreachable:
            await fetch_log_file(client, LogFileRef(BUCKET, KEY, "sqs:q/m1"))
    assert unreachable.value.retryable


def test_plain_json_log_files_are_read_too() -> None:
    data = json.dumps({"Records": [record(1)]}).encode()
    assert len(events_of(list(documents_of_log_file(data, Location("s3://b/k.json"))))) == 1


def test_a_gzip_bomb_stops_at_the_unzipped_cap() -> None:
    data = log_file(200)
    items = list(documents_of_log_file(data, Location("s3://b/k.json.gz"), max_unzipped_bytes=4096))
    assert [type(i) for i in items] == [Malformed]
    assert "unzips to more than 4096 bytes" in items[0].error


def test_a_truncated_gzip_file_is_malformed() -> None:
    data = log_file(20)[:-40]
    items = list(documents_of_log_file(data, Location("s3://b/k.json.gz")))
    assert any(type(i) is Malformed for i in items)
