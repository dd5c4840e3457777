"""The CloudTrail event as the engine sees it, and compiled access to its fields by path.

Decoding is narrow on purpose: the big, rarely-read objects (requestParameters, responseElements…) stay as
raw JSON slices and are decoded only when a detector that was selected for the event asks for them.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_EMPTY = msgspec.Raw()

# Objects kept as raw JSON until a detector reads them: large, or not needed by most events (decoding
# userIdentity for every event cost a third of all decoding, yet only events a detector looks at need it).
LAZY_FIELDS = frozenset(
    {
        "userIdentity",
        "requestParameters",
        "responseElements",
        "additionalEventData",
        "serviceEventDetails",
        "resources",
        "tlsDetails",
        "insightDetails",
        "addendum",
        "edgeDeviceDetails",
    }
)
EAGER_FIELDS = frozenset(
    {
        "eventVersion",
        "eventTime",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "errorCode",
        "errorMessage",
        "requestID",
        "eventID",
        "eventType",
        "apiVersion",
        "managementEvent",
        "readOnly",
        "recipientAccountId",
        "sharedEventID",
        "vpcEndpointId",
        "vpcEndpointAccountId",
        "eventCategory",
        "sessionCredentialFromConsole",
    }
)
# Every top-level field of a CloudTrail record (CloudTrail User Guide, "CloudTrail record contents").
RECORD_FIELDS = LAZY_FIELDS | EAGER_FIELDS


class Doc(msgspec.Struct, gc=False):
    """Any JSON object we may meet at any level: a CloudTrail record or one of the envelopes around it.

    Values are typed `Any` so that odd shapes (an integer account, a null name) never fail decoding:
    the operators that look at them decide, and never crash on a wrong type.
    """

    # CloudTrail record, in the order CloudTrail writes its fields: msgspec looks each key up starting
    # after the field it found last, so this order makes most lookups hit at once (a decoded line
    # costs 12% fewer instructions than with the fields grouped by kind)
    eventVersion: Any = None
    userIdentity: msgspec.Raw = _EMPTY
    eventTime: Any = None
    eventSource: Any = None
    eventName: Any = None
    awsRegion: Any = None
    sourceIPAddress: Any = None
    userAgent: Any = None
    errorCode: Any = None
    errorMessage: Any = None
    requestParameters: msgspec.Raw = _EMPTY
    responseElements: msgspec.Raw = _EMPTY
    additionalEventData: msgspec.Raw = _EMPTY
    requestID: Any = None
    eventID: Any = None
    readOnly: Any = None
    resources: msgspec.Raw = _EMPTY
    eventType: Any = None
    apiVersion: Any = None
    managementEvent: Any = None
    recipientAccountId: Any = None
    sharedEventID: Any = None
    vpcEndpointId: Any = None
    vpcEndpointAccountId: Any = None
    serviceEventDetails: msgspec.Raw = _EMPTY
    eventCategory: Any = None
    tlsDetails: msgspec.Raw = _EMPTY
    sessionCredentialFromConsole: Any = None
    insightDetails: msgspec.Raw = _EMPTY
    addendum: msgspec.Raw = _EMPTY
    edgeDeviceDetails: msgspec.Raw = _EMPTY
    # S3 log file and S3 event notification
    Records: msgspec.Raw = _EMPTY
    s3: Any = None
    # EventBridge
    detail_type: Any = msgspec.field(default=None, name="detail-type")
    detail: msgspec.Raw = _EMPTY
    source: Any = None
    account: Any = None
    region: Any = None
    # SNS notification
    Type: Any = None
    Message: Any = None
    TopicArn: Any = None
    # CloudWatch Logs subscription
    messageType: Any = None
    logEvents: msgspec.Raw = _EMPTY
    # `aws cloudtrail lookup-events` output
    Events: msgspec.Raw = _EMPTY
    CloudTrailEvent: Any = None
    # CloudTrail's own SNS "new log file" notification
    s3Bucket: Any = None
    s3ObjectKey: Any = None
    # things that are not events
    Event: Any = None
    digestS3Bucket: Any = None
    digestStartTime: Any = None


DOC_DECODER = msgspec.json.Decoder(Doc | list[msgspec.Raw])
DOC_LIST_DECODER = msgspec.json.Decoder(list[Doc])
RAW_LIST_DECODER = msgspec.json.Decoder(list[msgspec.Raw])
_ANY_DECODER = msgspec.json.Decoder()


def decode_tolerant(decoder: msgspec.json.Decoder[T], data: bytes | str) -> T:
    """`decoder.decode(data)`, except that valid JSON msgspec will not hold still decodes.

    A number beyond float range (`1e999`) or a string that is not UTF-8 would fail the whole object,
    and an attacker could hide an event from every detector with one such value. Those documents are
    read again by Python's json module (±inf, U+FFFD) and re-encoded, where out-of-range numbers become
    null. Anything else that fails raises the original error: broken JSON stays malformed.
    """
    try:
        return decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return decode_again(decoder, data, exc)


def decode_again(decoder: msgspec.json.Decoder[T], data: bytes | str, error: Exception) -> T:
    """The second half of `decode_tolerant`, for hot paths that made the first attempt inline: raises
    `error` if the document does not decode either way."""
    try:
        return decoder.decode(msgspec.json.encode(loads_tolerant(data)))
    except (ValueError, RecursionError, msgspec.ValidationError, msgspec.DecodeError):
        raise error from None


def loads_tolerant(data: bytes | str) -> Any:
    """Python's json module on bytes that may not be UTF-8; NaN and Infinity, which are not JSON, refused.

    Raises ValueError (json.JSONDecodeError) or RecursionError."""
    text = data if isinstance(data, str) else bytes(data).decode("utf-8", "replace")
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a document came from: a file and line, or a queue message."""

    source: str
    line: int | None = None

    def describe(self, index: int | None = None) -> str:
        text = self.source if self.line is None else f"{self.source}:{self.line}"
        return text if index is None else f"{text} record {index}"


class Event:
    """One CloudTrail record, with where it came from and how it was wrapped."""

    __slots__ = ("_lazy", "doc", "envelope", "form", "index", "line", "location", "plans", "unreadable")

    def __init__(
        self,
        doc: Doc,
        form: str,
        location: Location,
        index: int | None,
        envelope: Doc | None = None,
        line: int | None = None,
        plans: tuple[Any, ...] | None = None,
    ) -> None:
        self.doc = doc
        self.form = form
        self.location = location
        self.index = index
        self.envelope = envelope  # the EventBridge envelope, for its account and region
        self.line = line  # JSON Lines batches share one Location; the line is kept here instead
        self.plans = plans  # the detectors' plans for its API call, when the decoder looked them up
        self._lazy: dict[str, Any] | None = None
        self.unreadable: list[str] | None = None  # lazy objects that could not be decoded

    def lazy(self, name: str) -> Any:
        """Decode a raw sub-object on first use; absent gives None.

        An object that cannot be decoded at all (nested deeper than any decoder goes) is None too, and is
        named in `unreadable`: the other fields still drive the detectors, and the caller reports it.
        """
        cache = self._lazy
        if cache is None:
            cache = self._lazy = {}
        elif name in cache:
            return cache[name]
        raw: msgspec.Raw = getattr(self.doc, name)
        try:
            value = _ANY_DECODER.decode(raw) if raw else None
        except (RecursionError, msgspec.ValidationError, msgspec.DecodeError):
            value = self._decode_again(name, raw)
        cache[name] = value
        return value

    def _decode_again(self, name: str, raw: msgspec.Raw) -> Any:
        try:
            return loads_tolerant(raw)  # keeps ±inf, unlike decode_tolerant's re-encoding
        except (ValueError, RecursionError):
            if self.unreadable is None:
                self.unreadable = []
            self.unreadable.append(name)
            return None

    def remember(self, key: str, compute: Callable[[Event], Any]) -> Any:
        """Compute a derived value once per event (checks shared by several detectors)."""
        cache = self._lazy
        if cache is None:
            cache = self._lazy = {}
        elif key in cache:
            return cache[key]
        value = cache[key] = compute(self)
        return value

    def where(self) -> str:
        location = self.location if self.line is None else Location(self.location.source, self.line)
        return location.describe(self.index)

    def __repr__(self) -> str:
        return f"Event({self.doc.eventSource}:{self.doc.eventName} id={self.doc.eventID} at {self.where()})"


Getter = Callable[[Event], Any]


def dig(value: Any, keys: tuple[str, ...]) -> Any:
    """Follow keys into nested objects. A list on the way fans out: the result lists every value found."""
    for position, key in enumerate(keys):
        if type(value) is dict:
            value = value.get(key)
        elif type(value) is list:
            rest = keys[position:]
            found: list[Any] = []
            for element in value:
                item = dig(element, rest)
                if type(item) is list:
                    found.extend(item)
                elif item is not None:
                    found.append(item)
            return found or None
        else:
            return None
    return value


def field_getter(path: str) -> Getter:
    """Compile a dotted CloudTrail field path (`userIdentity.sessionContext.sessionIssuer.arn`) to a getter.

    Raises ValueError naming the problem when the path cannot name a CloudTrail field.
    """
    head, keys = split_field_path(path)
    top: Getter = (
        (lambda event: event.lazy(head)) if head in LAZY_FIELDS else operator.attrgetter("doc." + head)
    )
    if not keys:
        return top
    return lambda event: dig(top(event), keys)


def split_field_path(path: str) -> tuple[str, tuple[str, ...]]:
    """(top-level CloudTrail field, keys below it); ValueError if the path cannot name a CloudTrail field."""
    parts = tuple(path.split("."))
    if any(not part for part in parts):
        raise ValueError(f"field path {path!r} has an empty segment")
    head = parts[0]
    if head not in RECORD_FIELDS:
        hint = _closest(head)
        raise ValueError(
            f"{head!r} is not a CloudTrail record field" + (f" (did you mean {hint!r}?)" if hint else "")
        )
    return head, parts[1:]


def _closest(name: str) -> str | None:
    lowered = name.lower()
    for field in sorted(RECORD_FIELDS):
        if field.lower() == lowered:
            return field
    return None
