"""Turn one JSON document, in any form AWS delivers CloudTrail, into events.

Forms (detected per document, nested as AWS nests them):
  a bare record · `{"Records": [...]}` (S3 log file) · an EventBridge envelope · an SNS notification
  whose `Message` holds any form · a CloudWatch Logs subscription message · `aws cloudtrail lookup-events`
  output · S3 event notifications and CloudTrail's "new log file" notification (→ LogFileRef) · arrays.
Digest files, `s3:TestEvent`, SNS subscription confirmations and non-CloudTrail EventBridge events
are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

import msgspec

from kvs_sentinel.array_scan import element_spans
from kvs_sentinel.events import (
    DOC_DECODER,
    DOC_LIST_DECODER,
    RAW_LIST_DECODER,
    Doc,
    Event,
    Location,
    decode_again,
    decode_tolerant,
)

CLOUDTRAIL_DETAIL_TYPES = frozenset(
    {
        "AWS API Call via CloudTrail",
        "AWS Console Sign In via CloudTrail",
        "AWS Console Action via CloudTrail",
        "AWS Service Event via CloudTrail",
        "AWS Insight via CloudTrail",
    }
)
# An SNS message inside an SNS message inside…: real deliveries nest at most twice.
MAX_NESTING = 4


@dataclass(frozen=True, slots=True)
class Skipped:
    """A document that is not an event and was recognised as such (digest file, test event…)."""

    reason: str
    where: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A document or record that could not be read. `where` names file and line or record."""

    where: str
    error: str


@dataclass(frozen=True, slots=True)
class LogFileRef:
    """A notification that a CloudTrail log file landed in S3: the SQS source fetches it."""

    bucket: str
    key: str
    where: str


Item = Event | Skipped | Malformed | LogFileRef


class Document(NamedTuple):
    """A whole JSON document, of any form (an SQS body, a small file, one of concatenated documents)."""

    data: bytes | str
    location: Location


class LineBatch(NamedTuple):
    """Consecutive JSON Lines of one input; `first_line` is the number of the first."""

    lines: list[bytes]
    location: Location
    first_line: int = 1


class ArrayChunk(NamedTuple):
    """A JSON array whose elements are documents of any form: a top-level array, or a streamed slice of
    one; `start` is the index of its first element in the whole array."""

    data: bytes
    location: Location
    start: int = 0


class RecordsChunk(NamedTuple):
    """A JSON array of CloudTrail records: a log file's `Records`, or a streamed slice of them; `start` is
    the index of its first element in the whole array."""

    data: bytes | msgspec.Raw
    location: Location
    start: int = 0


# A unit of input, as the splitters cut files, log files and message bodies.
Unit = Document | LineBatch | ArrayChunk | RecordsChunk
# What the decode layer accepts: a unit, or a marker the splitter made for input it could not cut.
Decodable = Unit | Malformed | Skipped


def array_chunk_items(chunk: ArrayChunk) -> Iterator[Item]:
    """Every item of each element of an array of documents."""
    try:
        elements = RAW_LIST_DECODER.decode(chunk.data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        yield Malformed(chunk.location.describe(chunk.start), f"array chunk unreadable: {exc}")
        return
    for offset, element in enumerate(elements):
        yield from normalise(element, chunk.location, chunk.start + offset, "", 1)


_BYTE_OFFSET = re.compile(r"\(byte (\d+)\)")
_LOG_EVENT_DECODER = msgspec.json.Decoder(list[dict[str, Any]])
_ANY_DECODER = msgspec.json.Decoder()


def normalise(
    data: bytes | str, location: Location, index: int | None = None, via: str = "", depth: int = 0
) -> Iterator[Item]:
    """Yield every event (or skip/malformed marker) found in one JSON document."""
    try:
        parsed = decode_tolerant(DOC_DECODER, data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Expected `object | array`"):
            text = "expected a JSON object or array, found a bare value"
        yield Malformed(location.describe(index), text)
        return
    except msgspec.DecodeError as exc:
        yield Malformed(location.describe(index), _decode_error_text(exc, data))
        return
    except RecursionError:
        elements = _array_elements(data)  # one element too deep must not cost the others
        if elements is None or depth >= MAX_NESTING:
            yield Malformed(location.describe(index), "JSON nested too deeply")
            return
        for position, element in enumerate(elements):
            yield from normalise(element, location, position, via, depth + 1)
        return
    if isinstance(parsed, list):
        if depth >= MAX_NESTING:
            yield Malformed(location.describe(index), f"arrays nested deeper than {MAX_NESTING}")
            return
        for position, raw in enumerate(parsed):
            yield from normalise(raw, location, position, via, depth + 1)
    else:
        yield from classify(parsed, location, index, via, depth)


def _array_elements(data: bytes | str) -> list[bytes] | None:
    """The elements of a top-level JSON array, cut by scanning (see array_scan.py); None if `data` is
    not one whole array."""
    buf = data.encode() if isinstance(data, str) else bytes(data)
    start = len(buf) - len(buf.lstrip())
    if buf[start : start + 1] != b"[":
        return None
    cut = element_spans(buf, start + 1)
    if not cut.closed or buf[cut.rest :].strip():
        return None
    return [buf[begin:end] for begin, end in cut.spans]


def is_record(doc: Doc) -> bool:
    """A CloudTrail record: API calls and service events name their source; Insights events don't."""
    return (
        doc.eventSource is not None
        or (doc.eventName is not None and doc.eventVersion is not None)
        or doc.eventType == "AwsCloudTrailInsight"
    )


def classify(
    doc: Doc, location: Location, index: int | None, via: str = "", depth: int = 0
) -> Iterator[Item]:
    if is_record(doc):
        if doc.eventSource == "aws:s3" and doc.s3 is not None:
            yield from _s3_notification(doc, location, index)
        else:
            yield Event(doc, via + "record", location, index)
    elif doc.Records:
        yield from records_items(doc.Records, location, via)
    elif doc.detail_type is not None:
        yield from _eventbridge(doc, location, index, via)
    elif doc.Type is not None and doc.Message is not None:
        yield from _sns(doc, location, index, via, depth)
    elif doc.messageType is not None:
        yield from _cloudwatch_logs(doc, location, index, via, depth)
    elif doc.Events:
        yield from _lookup_events(doc, location, via, depth)
    elif doc.s3Bucket is not None and doc.s3ObjectKey is not None:
        yield from _log_file_notification(doc, location, index)
    elif doc.Event == "s3:TestEvent":
        yield Skipped("s3_test_event", location.describe(index))
    elif doc.digestStartTime is not None or doc.digestS3Bucket is not None:
        yield Skipped("digest_file", location.describe(index))
    else:
        yield Malformed(location.describe(index), "not a CloudTrail record nor a known envelope")


def records_items(
    raw: msgspec.Raw | bytes, location: Location, via: str = "", start: int = 0
) -> Iterator[Item]:
    form = via + "records"
    elements = records_of(raw)
    if elements is None:
        yield Malformed(location.describe(), "`Records` is not a list")
        return
    # One by one, not as one list of records: a bad element costs only itself, and only one decoded
    # record is alive at a time (decoding 100k at once keeps 100k dicts for the GC to walk, again and again).
    for position, element in enumerate(elements, start):
        yield from record_element(as_doc(element), form, location, position)


def records_of(raw: msgspec.Raw | bytes) -> list[msgspec.Raw] | None:
    """The elements of a `Records` array, undecoded; None if it is not an array."""
    try:
        return RAW_LIST_DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


def record_element(doc: Doc | None, form: str, location: Location, position: int) -> Iterator[Item]:
    """What one element of a `Records` array is: a record, an S3 notification, or malformed."""
    if doc is None:
        yield Malformed(location.describe(position), "record is not a JSON object")
    elif doc.eventSource == "aws:s3" and doc.s3 is not None:
        yield from _s3_notification(doc, location, position)
    elif is_record(doc) or doc.eventName is not None:
        yield Event(doc, form, location, position)
    else:
        yield Malformed(location.describe(position), "record has neither eventSource nor eventName")


def as_doc(raw: msgspec.Raw) -> Doc | None:
    try:
        parsed = DOC_DECODER.decode(raw)  # inline, not through decode_tolerant: once per record
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        try:
            parsed = decode_again(DOC_DECODER, raw, exc)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
    except RecursionError:
        return None
    return parsed if type(parsed) is Doc else None


def _eventbridge(doc: Doc, location: Location, index: int | None, via: str) -> Iterator[Item]:
    if not isinstance(doc.detail_type, str):
        yield Malformed(location.describe(index), "EventBridge `detail-type` is not a string")
    elif doc.detail_type in CLOUDTRAIL_DETAIL_TYPES:
        inner = as_doc(doc.detail) if doc.detail else None
        if inner is None:
            yield Malformed(location.describe(index), "EventBridge CloudTrail event has no `detail` object")
        else:
            yield Event(inner, via + "eventbridge", location, index, envelope=doc)
    elif doc.source == "aws.s3" and doc.detail_type == "Object Created" and doc.detail:
        try:
            detail = decode_tolerant(_ANY_DECODER, doc.detail)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            detail = None
        bucket = _nested_str(detail, "bucket", "name")
        key = _nested_str(detail, "object", "key")
        if bucket and key:
            yield _log_file_ref(bucket, key, location.describe(index))
        else:
            yield Malformed(location.describe(index), "S3 `Object Created` event without bucket name and key")
    else:
        yield Skipped("eventbridge_not_cloudtrail", location.describe(index))


def _sns(doc: Doc, location: Location, index: int | None, via: str, depth: int) -> Iterator[Item]:
    where = location.describe(index)
    if doc.Type != "Notification":
        yield Skipped("sns_control_message", where)
    elif not isinstance(doc.Message, str):
        yield Malformed(where, "SNS `Message` is not a string")
    elif depth >= MAX_NESTING:
        yield Malformed(where, f"envelopes nested deeper than {MAX_NESTING}")
    else:
        yield from normalise(doc.Message, location, index, via + "sns/", depth + 1)


def _cloudwatch_logs(doc: Doc, location: Location, index: int | None, via: str, depth: int) -> Iterator[Item]:
    where = location.describe(index)
    if doc.messageType != "DATA_MESSAGE":
        yield Skipped("cloudwatch_logs_control_message", where)
        return
    try:
        log_events = decode_tolerant(_LOG_EVENT_DECODER, doc.logEvents) if doc.logEvents else None
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        log_events = None
    if log_events is None:
        yield Malformed(where, "CloudWatch Logs `logEvents` is not a list of objects")
        return
    if depth >= MAX_NESTING:
        yield Malformed(where, f"envelopes nested deeper than {MAX_NESTING}")
        return
    for position, log_event in enumerate(log_events):
        message = log_event.get("message")
        if isinstance(message, str):
            yield from normalise(message, location, position, via + "cloudwatch_logs/", depth + 1)
        else:
            yield Malformed(location.describe(position), "CloudWatch Logs event without a `message` string")


def _lookup_events(doc: Doc, location: Location, via: str, depth: int) -> Iterator[Item]:
    try:
        entries = decode_tolerant(DOC_LIST_DECODER, doc.Events)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        yield Malformed(location.describe(), "`Events` is not a list of objects")
        return
    for position, entry in enumerate(entries):
        if isinstance(entry.CloudTrailEvent, str) and depth < MAX_NESTING:
            yield from normalise(entry.CloudTrailEvent, location, position, via + "lookup_events/", depth + 1)
        elif is_record(entry):  # `--output json` of Insights lookups holds the records themselves
            yield Event(entry, via + "lookup_events", location, position)
        else:
            yield Malformed(
                location.describe(position), "lookup-events entry without a `CloudTrailEvent` string"
            )


def _s3_notification(doc: Doc, location: Location, index: int | None) -> Iterator[Item]:
    bucket = _nested_str(doc.s3, "bucket", "name")
    key = _nested_str(doc.s3, "object", "key")
    where = location.describe(index)
    if bucket and key:
        # S3 event notifications URL-encode object keys (space → '+').
        yield _log_file_ref(bucket, unquote_plus(key), where)
    else:
        yield Malformed(where, "S3 event notification without bucket name and object key")


def _log_file_notification(doc: Doc, location: Location, index: int | None) -> Iterator[Item]:
    keys = doc.s3ObjectKey if isinstance(doc.s3ObjectKey, list) else [doc.s3ObjectKey]
    where = location.describe(index)
    for key in keys:
        if isinstance(doc.s3Bucket, str) and isinstance(key, str):
            yield _log_file_ref(doc.s3Bucket, key, where)
        else:
            yield Malformed(where, "log file notification with a non-string bucket or key")


def is_digest_key(key: str) -> bool:
    """A CloudTrail digest file (integrity hashes, not events), by its place in the trail's layout."""
    return "/CloudTrail-Digest/" in key or key.startswith("CloudTrail-Digest/")


def _log_file_ref(bucket: str, key: str, where: str) -> Item:
    if is_digest_key(key):
        return Skipped("digest_file", where)
    return LogFileRef(bucket, key, where)


def _nested_str(value: Any, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) else None


def _decode_error_text(exc: msgspec.DecodeError, data: bytes | str) -> str:
    text = str(exc)
    match = _BYTE_OFFSET.search(text)
    if match is None:
        return text
    offset = int(match.group(1))
    blob = data.encode() if isinstance(data, str) else bytes(data)
    line = blob.count(b"\n", 0, offset) + 1
    if line == 1:
        return text
    column = offset - (blob.rfind(b"\n", 0, offset) + 1) + 1
    return f"{text} at line {line} column {column}"
