"""The decode layer: its fast paths find exactly what the general normaliser finds; it filters and counts."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kvs_sentinel.decode import Decoder, decode_all
from kvs_sentinel.envelopes import Document, LineBatch, RecordsChunk, normalise
from kvs_sentinel.events import Event, Location
from kvs_sentinel.stats import RunStats

KVS = "kinesisvideo.amazonaws.com"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
# Records and envelopes with the fields the rules look at, in odd shapes too.
records = st.fixed_dictionaries(
    {},
    optional={
        "eventSource": st.sampled_from([KVS, "aws:s3", "iam.amazonaws.com"]) | json_values,
        "eventName": st.sampled_from(["GetMedia", "PutMedia"]) | json_values,
        "eventVersion": st.just("1.08") | json_values,
        "eventID": st.text(max_size=6),
        "s3": json_values,
        "userIdentity": json_values,
    },
)
documents = records | st.builds(
    lambda record, detail_type: {"detail-type": detail_type, "source": "aws.kinesisvideo", "detail": record},
    records,
    st.sampled_from(["AWS API Call via CloudTrail", "Scheduled Event"]) | json_values,
)


def found(items: Any) -> list[tuple[Any, str, str]]:
    return [(i.doc.eventID, i.form, i.where()) for i in items if type(i) is Event]


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(documents, max_size=6))
def test_json_lines_fast_path_finds_what_the_normaliser_finds(docs: list[dict[str, Any]]) -> None:
    lines = [json.dumps(doc).encode() + b"\n" for doc in docs]
    fast = found(decode_all(LineBatch(lines, Location("f"), 1)))
    general = found(item for n, line in enumerate(lines, 1) for item in normalise(line, Location("f", n)))
    assert fast == general


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(records, max_size=6))
def test_records_fast_path_finds_what_the_normaliser_finds(docs: list[dict[str, Any]]) -> None:
    body = json.dumps({"Records": docs})
    whole = found(decode_all(Document(body, Location("f"))))
    chunk = found(decode_all(RecordsChunk(json.dumps(docs).encode(), Location("f"))))
    general = found(normalise(body, Location("f")))
    assert whole == chunk == general


def test_events_no_detector_wants_are_counted_but_not_yielded() -> None:
    def plans_for(source: str, name: str) -> tuple[Any, ...]:
        return ("a plan",) if name == "GetMedia" else ()

    lines = [
        json.dumps({"eventSource": KVS, "eventName": name, "eventID": name}).encode() + b"\n"
        for name in ("GetMedia", "PutMedia", "DescribeStream")
    ]
    envelope = {
        "detail-type": "AWS API Call via CloudTrail",
        "detail": {"eventSource": KVS, "eventName": "PutMedia"},
    }
    lines.append(json.dumps(envelope).encode() + b"\n")
    lines.append(b"not json\n")
    stats = RunStats()
    items = list(Decoder(stats, plans_for).decode(LineBatch(lines, Location("f"), 1)))
    events = [item for item in items if type(item) is Event]
    assert [(e.doc.eventID, e.plans) for e in events] == [("GetMedia", ("a plan",))]
    assert stats.events_by_form == {"record": 3, "eventbridge": 1}
    assert stats.malformed == 1


def test_splitter_markers_are_counted_by_the_decoder() -> None:
    from kvs_sentinel.envelopes import Malformed, Skipped

    stats = RunStats()
    decoder = Decoder(stats)
    assert list(decoder.decode(Skipped("empty_file", "f"))) == [Skipped("empty_file", "f")]
    assert list(decoder.decode(Malformed("f", "broken"))) == [Malformed("f", "broken")]
    assert stats.skipped == {"empty_file": 1}
    assert stats.malformed == 1
