"""Fuzz the whole decode path: every input form, seeded from the shared corpus and the hostile inputs.

Whatever a mutated document holds, no exception escapes splitting and processing, and the good events
around it are still judged: each of them alerts, at its own line or index.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvs_sentinel.config import load_config
from kvs_sentinel.engine import Engine, Processor
from kvs_sentinel.events import Location
from kvs_sentinel.sources.files import split_documents
from kvs_sentinel.stats import RunStats
from tests.conftest import CORPUS

HOSTILE = Path(__file__).parent / "data" / "hostile"
GET_MEDIA_DETECTOR = "kvs-producer-media-read"
MAX_SEED_BYTES = 64 * 1024


def _seeds() -> list[bytes]:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".gz"))
    seeds = [p.read_bytes() for p in files if p.stat().st_size <= MAX_SEED_BYTES]
    seeds += [p.read_bytes() for p in sorted(HOSTILE.glob("*.json"))]
    return [gzip.decompress(s) if s[:2] == b"\x1f\x8b" else s for s in seeds]


def _is_container(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict | list)
    except (ValueError, RecursionError):
        return False


SEEDS = _seeds()
OBJECT_START = re.compile(rb'\{\s*"')
JSON_SEEDS = [seed for seed in SEEDS if _is_container(seed) and OBJECT_START.search(seed)]
PROCESSOR = Processor(Engine(load_config().detectors), RunStats())


def good_event(n: int) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((HOSTILE / "float-overflow-in-requestParameters.json").read_text())
    record["requestParameters"] = {"streamName": "front-door"}
    record["eventID"] = f"good-{n}"
    return record


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# Mutations of a seed: what the adversarial test and the broken corpus files do to documents.
@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(SEEDS))
    kind = draw(
        st.sampled_from(["truncate", "splice", "flip", "deep", "overflow", "invalid_utf8", "blank", "same"])
    )
    at = draw(st.integers(0, max(0, len(seed) - 1)))
    if kind == "truncate":
        return seed[:at]
    if kind == "splice":
        return seed[:at] + draw(st.binary(max_size=32)) + seed[at:]
    if kind == "flip":
        return seed[:at] + bytes([draw(st.integers(0, 255))]) + seed[at + 1 :]
    if kind == "deep":
        return seed[:at] + _deep(draw(st.integers(900, 5000))) + seed[at:]
    if kind == "overflow":
        return seed.replace(b": 1", b": 1e999", 1).replace(b":1", b":-1e400", 1)
    if kind == "invalid_utf8":
        return seed.replace(b'"', b'"\xff\xfe', 3)
    if kind == "blank":
        return seed[:at] + b"\n" * draw(st.integers(1, 5000)) + seed[at:]
    return seed


# Mutations that keep a document valid JSON: values a decoder may refuse, nesting it cannot follow.
@st.composite
def still_json(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(JSON_SEEDS))
    kind = draw(st.sampled_from(["deep", "overflow", "invalid_utf8", "whitespace", "same"]))
    if kind == "deep":
        deep = _deep(draw(st.integers(900, 5000)))
        return OBJECT_START.sub(lambda _: b'{"zz": ' + deep + b', "', seed, count=1)
    if kind == "overflow":
        return re.sub(
            rb'(":\s*)-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?', rb"\g<1>1e999", seed, count=draw(st.integers(1, 3))
        )
    if kind == "invalid_utf8":
        return re.sub(rb'(":\s*")', b"\\g<1>\xff\xfe", seed, count=draw(st.integers(1, 3)))
    if kind == "whitespace":
        return seed.replace(b",", b",\n\n \t\n", draw(st.integers(1, 5)))
    return seed


def _run(data: bytes, source: str) -> list[Any]:
    alerts: list[Any] = []
    stream: Any = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=stream)  # as open_input does for files
    for item in split_documents(stream, Location(source)):
        alerts += PROCESSOR.process(item).alerts
    return alerts


def _judged(alerts: list[Any]) -> set[str]:
    return {alert.event_id for alert in alerts if alert.detector == GET_MEDIA_DETECTOR}


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def test_there_are_seeds() -> None:
    assert len(SEEDS) > 120
    assert len(JSON_SEEDS) > 100


@FUZZ
@given(bad=mutated(), gzipped=st.booleans())
def test_json_lines_good_events_around_a_mutated_line_alert(bad: bytes, gzipped: bool) -> None:
    line = bad.replace(b"\n", b" ").replace(b"\r", b" ")
    data = (
        json.dumps(good_event(1)).encode() + b"\n" + line + b"\n" + json.dumps(good_event(2)).encode() + b"\n"
    )
    alerts = _run(gzip.compress(data) if gzipped else data, "f.jsonl")
    assert {"good-1", "good-2"} <= _judged(alerts)


@FUZZ
@given(bad=still_json(), form=st.sampled_from(["records", "array", "concatenated"]))
def test_a_mutated_document_that_is_still_json_costs_only_itself(bad: bytes, form: str) -> None:
    good = [json.dumps(good_event(n)).encode() for n in (1, 2)]
    if form == "records":
        data = b'{"Records": [' + good[0] + b"," + bad + b"," + good[1] + b"]}"
    elif form == "array":
        data = b"[" + good[0] + b"," + bad + b"," + good[1] + b"]"
    else:
        data = good[0] + b"\n" + bad + b"\n" + good[1]
    assert {"good-1", "good-2"} <= _judged(_run(data, "f.json"))


@FUZZ
@given(bad=mutated())
def test_a_mutated_file_alone_never_raises(bad: bytes) -> None:
    _run(bad, "f.json")
    _run(gzip.compress(bad), "f.json.gz")


@pytest.mark.parametrize("name", sorted(p.name for p in HOSTILE.glob("*.json")))
def test_each_kept_hostile_input_between_good_events(name: str) -> None:
    bad = (HOSTILE / name).read_bytes()
    good = [json.dumps(good_event(n)).encode() for n in (1, 2)]
    data = b'{"Records": [' + good[0] + b"," + bad + b"," + good[1] + b"]}"
    assert {"good-1", "good-2"} <= _judged(_run(data, "f.json"))


HOSTILE_VALUES = [
    b"1e999",
    b"-1e400",
    b"1e-999",
    b'"\xff\xfe"',
    b'"\xed\xa0\x80"',
    b'"\xc3\x28"',
    b"123456789" * 40,
]


@FUZZ
@given(
    field=st.sampled_from(["requestParameters", "userIdentity", "additionalEventData", "responseElements"]),
    value=st.sampled_from(HOSTILE_VALUES),
    depth=st.integers(0, 200),
    form=st.sampled_from(["line", "records"]),
)
def test_a_hostile_value_inside_an_object_does_not_hide_its_event(
    field: str, value: bytes, depth: int, form: str
) -> None:
    record = good_event(1) | {"additionalEventData": {"a": 1}, "responseElements": {"b": 2}}
    wrapped = b"[" * depth + value + b"]" * depth
    data = (
        json.dumps(record)
        .encode()
        .replace(f'"{field}": {{'.encode(), f'"{field}": {{"zz": '.encode() + wrapped + b", ", 1)
    )
    if form == "records":
        data = b'{"Records": [' + data + b"]}"
    assert _judged(_run(data, "f.json")) == {"good-1"}


@pytest.mark.parametrize("depth", range(940, 1001))
def test_an_array_element_nested_to_the_decoders_limit_costs_only_itself(depth: int) -> None:
    # Found by the fuzzer: near the limit, an array could pass the splitter's raw check and then fail
    # as records (the limit moves with the caller's stack depth), losing every element; the elements are
    # now cut by scanning and each judged alone.
    login = {
        "eventVersion": "1.05",
        "userIdentity": {"type": "Root", "arn": "arn:aws:iam::111122223333:root"},
        "eventTime": "2022-11-10T16:24:34Z",
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "requestParameters": None,
        "eventID": "deb1",
        "recipientAccountId": "111122223333",
    }
    bad = b'{"zz": ' + b"[" * depth + b"]" * depth + b", " + json.dumps(login).encode()[1:]
    good = [json.dumps(good_event(n)).encode() for n in (1, 2)]
    data = b"[" + good[0] + b"," + bad + b"," + good[1] + b"]"
    assert {"good-1", "good-2"} <= _judged(_run(data, "f.json"))
