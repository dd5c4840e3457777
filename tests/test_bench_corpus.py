"""The benchmark corpus generator: deterministic, every output form round-trips, realistic mix and size."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bench.corpus import FORMS, generate_events, write_corpus

N = 300


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    return list(generate_events(5000))


def _is_violation(e: dict) -> bool:
    ident, req = e["userIdentity"], e["requestParameters"] or {}
    producer = "kvs-producer-" in ident.get("arn", "")
    return (
        ident.get("type") in ("IAMUser", "Root")
        or e.get("errorCode") == "AccessDeniedException"
        or (producer and e["eventName"] in ("GetMedia", "DeleteStream", "UpdateDataRetention"))
        or (producer and req.get("aPIName") == "GET_MEDIA")
    )


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_corpus(a, 500, "jsonl")
    write_corpus(b, 500, "jsonl")
    write_corpus(c, 500, "jsonl", seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("form", FORMS)
def test_forms_round_trip(tmp_path: Path, form: str) -> None:
    path = tmp_path / f"corpus.{form}"
    size = write_corpus(path, N, form)
    raw = path.read_bytes()
    assert size == len(raw)
    expected = list(generate_events(N))
    if form == "records-gz":
        raw = gzip.decompress(raw)
        write_corpus(tmp_path / "records", N, "records")
        assert raw == (tmp_path / "records").read_bytes()
    if form.startswith("records"):
        assert b"\n" not in raw  # compact single line, like CloudTrail S3 objects
        doc = json.loads(raw)
        assert list(doc) == ["Records"]
        assert doc["Records"] == expected
    else:
        lines = raw.decode().splitlines()
        assert len(lines) == N
        parsed = [json.loads(line) for line in lines]
        if form == "jsonl":
            assert parsed == expected
        else:
            assert [env["detail"] for env in parsed] == expected
            env = parsed[0]
            assert set(env) == {
                "version",
                "id",
                "detail-type",
                "source",
                "account",
                "time",
                "region",
                "resources",
                "detail",
            }
            assert env["detail-type"] == "AWS API Call via CloudTrail"
            assert env["source"] == "aws." + env["detail"]["eventSource"].split(".")[0]
            assert env["time"] == env["detail"]["eventTime"]
            assert len({e["id"] for e in parsed}) == N


def test_unknown_form(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown form"):
        write_corpus(tmp_path / "x", 1, "csv")


def test_record_shape(sample: list[dict]) -> None:
    required = {
        "eventVersion",
        "userIdentity",
        "eventTime",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "requestID",
        "eventID",
        "eventType",
        "recipientAccountId",
        "eventCategory",
    }
    times = [e["eventTime"] for e in sample]
    assert times == sorted(times)
    assert times[0].startswith("2026-11-01T00:00")
    assert times[0].endswith("Z")
    assert len({e["eventID"] for e in sample}) == len(sample)
    for e in sample:
        assert required <= set(e)
        assert e["eventVersion"] in ("1.08", "1.09")
        assert e["eventType"] in ("AwsApiCall", "AwsServiceEvent")
        assert e["eventID"][14] == "4"
        assert e["managementEvent"] == (e["eventCategory"] == "Management")
        if e["eventCategory"] == "Data":
            assert e["resources"]
    puts = [e for e in sample if e["eventName"] == "PutMedia"]
    assert puts
    assert all(e["resources"][0]["type"] == "AWS::KinesisVideo::Stream" for e in puts)
    ips = Counter(e["sourceIPAddress"] for e in sample)
    assert any(":" in ip for ip in ips)
    assert "kinesisvideo.amazonaws.com" in ips
    assert "AWS Internal" in ips
    docs = [
        e["requestParameters"]["policyDocument"]
        for e in sample
        if e["eventSource"] == "iam.amazonaws.com" and e["eventName"] in ("PutRolePolicy", "CreatePolicy")
    ]
    assert docs
    assert all(d.startswith("%7B%22Version%22") for d in docs)


def test_mix_and_violations(sample: list[dict]) -> None:
    kvs = [e for e in sample if e["eventSource"] == "kinesisvideo.amazonaws.com"]
    assert 0.30 <= len(kvs) / len(sample) <= 0.40
    names = Counter(e["eventName"] for e in kvs)
    for name in ("PutMedia", "GetDataEndpoint", "GetMedia", "GetHLSStreamingSessionURL", "ConnectAsMaster"):
        assert names[name] > 0, name
    violations = [e for e in kvs if _is_violation(e)]
    assert 0.005 <= len(violations) / len(kvs) <= 0.05
    kinds = {e["userIdentity"].get("type") for e in violations} | {e.get("errorCode") for e in violations}
    assert {"IAMUser", "AssumedRole"} <= kinds
    others = {e["eventSource"].split(".")[0] for e in sample} - {"kinesisvideo"}
    assert {"s3", "sts", "ec2", "iam", "kms", "sqs", "sns", "lambda", "logs"} <= others


def test_sizes(sample: list[dict]) -> None:
    sizes = [len(orjson.dumps(e)) for e in sample]
    assert 1000 <= sum(sizes) / len(sizes) <= 2500
    assert max(sizes) > 4000
