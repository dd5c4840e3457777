"""Local files for `replay`: paths, directories (recursive), `-` for stdin, gzip detected by its magic bytes.

A file up to WHOLE_FILE_LIMIT is read at once and split into documents (one document, or JSON Lines).
Bigger files stream with flat memory: JSON Lines line by line, and a top-level array or a CloudTrail
`{"Records": [...]}` file in chunks cut at element boundaries.
"""

from __future__ import annotations

import gzip
import io
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from kvs_sentinel.array_scan import element_spans
from kvs_sentinel.envelopes import (
    ArrayChunk,
    Decodable,
    Document,
    LineBatch,
    Malformed,
    RecordsChunk,
    Skipped,
)
from kvs_sentinel.errors import InputError
from kvs_sentinel.events import RAW_LIST_DECODER, Location

# Bigger files stream; most CloudTrail log files are well under this once gunzipped.
WHOLE_FILE_LIMIT = 8 * 1024 * 1024
CHUNK = 4 * 1024 * 1024
MAX_ELEMENT = 64 * 1024 * 1024
LINES_PER_DOCUMENT = 256
STDIN = "-"

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_RECORDS_PREFIX = re.compile(rb'\s*\{\s*"Records"\s*:\s*\[')
_BOUNDARY_TRIES = 16
_TRAILING = re.compile(r"trailing characters \(byte (\d+)\)")
_WHITESPACE = re.compile(rb"\s*")
# A blank line after a newline, and what may follow it: found by the regex engine at C speed, so a flood
# of blank lines (a gzip of 10 GiB of newlines is 10 MB) never becomes millions of Python line objects.
_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")
_BLANK_CHARS = re.compile(rb"[ \t\r\n]*")
MIN_BLANK_RUN = 32  # shorter runs stay lines: cheap, and cutting there would cost more than it saves
# Searched first, by bytes.find, which skips ahead by its length: 0.4 ms per 4 MiB of JSON Lines, a third
# of what the regex costs. Other blank floods (CRLF, spaces) stay lines, bounded by the log-file budget.
_NEWLINE_FLOOD = b"\n" * MIN_BLANK_RUN
# Named in a directory, these are not CloudTrail; named on the command line, any file is read.
NOT_EVENT_SUFFIXES = frozenset(
    {
        ".md",
        ".txt",
        ".tsv",
        ".csv",
        ".yaml",
        ".yml",
        ".zip",
        ".py",
        ".sh",
        ".html",
        ".xml",
        ".pdf",
        ".png",
        ".jpg",
    }
)

FileItem = Decodable
# The unit a cut array becomes: documents of any form, or a log file's records.
Chunk = type[ArrayChunk] | type[RecordsChunk]
TOO_DEEP = "JSON nested too deeply"


class _TooLong:
    """Stands for a JSON Lines line longer than MAX_ELEMENT, dropped unread."""


TOO_LONG = _TooLong()
# What a JSON Lines input is cut into: lists of lines, counts of blank lines skipped, and dropped lines.
LinePiece = list[bytes] | int | _TooLong


# why a file in a directory walk was not read: the summary counts them so nothing is left out silently
SKIPPED_BY_NAME = "not CloudTrail by name"
SKIPPED_HIDDEN = "hidden"


def expand_paths(paths: Iterable[str], skipped: Callable[[str, str], None] | None = None) -> Iterator[str]:
    """Files named, files under directories (sorted; hidden files and documentation left out), and `-`.

    `skipped(reason, name)` hears of each file a directory walk leaves out (a hidden folder once, as `dir/`).
    """
    for name in paths:
        path = Path(name)
        if name == STDIN or not path.is_dir():
            yield name
            continue
        for child in sorted(path.rglob("*")):
            if not child.is_file():
                continue
            parts = child.relative_to(path).parts
            hidden = next((i for i, part in enumerate(parts) if part.startswith(".")), None)
            if hidden is not None:
                if skipped is not None:
                    folder = "/" if hidden < len(parts) - 1 else ""
                    skipped(SKIPPED_HIDDEN, str(path.joinpath(*parts[: hidden + 1])) + folder)
            elif child.suffix.lower() in NOT_EVENT_SUFFIXES:
                if skipped is not None:
                    skipped(SKIPPED_BY_NAME, str(child))
            else:
                yield str(child)


def open_input(name: str) -> tuple[BinaryIO, BinaryIO]:
    """(raw, readable): the file as opened, for its position, and the stream to read, gunzipped if need be.

    Raises InputError when the file cannot be opened.
    """
    if name == STDIN:
        raw: BinaryIO = sys.stdin.buffer
    else:
        try:
            raw = open(name, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"{name}: cannot open: {exc.strerror or exc}") from None
    peek = getattr(raw, "peek", None)
    magic = peek(2)[:2] if peek else b""
    if magic == _GZIP_MAGIC:
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw, raw


def split_documents(
    stream: BinaryIO, location: Location, whole_file_limit: int = WHOLE_FILE_LIMIT
) -> Iterator[FileItem]:
    """Split one input into documents. Read failures and broken structure come out as Malformed.

    This is the boundary of one input: whatever goes wrong costs the rest of this input, never another."""
    try:
        head = stream.read(whole_file_limit + 1)
        if len(head) <= whole_file_limit:
            yield from _split_whole(head, location)
        else:
            yield from _split_stream(head, stream, location)
    except (OSError, EOFError, zlib.error) as exc:
        yield Malformed(location.source, f"read failed: {exc}")
    except Exception as exc:
        yield Malformed(location.source, f"could not be split, the rest is skipped: {exc!r:.300}")


def read_documents(name: str, whole_file_limit: int = WHOLE_FILE_LIMIT) -> Iterator[FileItem]:
    """Every document of one file (raises InputError if it cannot be opened)."""
    raw, stream = open_input(name)
    try:
        yield from split_documents(stream, Location("<stdin>" if name == STDIN else name), whole_file_limit)
    finally:
        if name != STDIN:
            stream.close()
            raw.close()


def _split_whole(buf: bytes, location: Location) -> Iterator[FileItem]:
    if buf.startswith(_BOM):
        buf = buf[len(_BOM) :]
    if not buf or buf.isspace():
        yield Skipped("empty_file", location.source)
        return
    complaint = _json_error(buf)
    if complaint == TOO_DEEP and (array := _array_start(buf)) is not None:
        yield from _scanned_array(buf, array[0], location, array[1])
        return
    if complaint is not None:
        if _first_line_is_json(buf):
            yield from _json_lines(_line_pieces(buf), location)
            return
        if _TRAILING.search(complaint):
            yield from _concatenated(buf, location)
            return
    yield Document(buf, location)


def _json_error(data: bytes | memoryview) -> str | None:
    """None if `data` is one JSON value; else what is wrong with it."""
    try:
        msgspec.json.decode(data, type=msgspec.Raw)
    except msgspec.DecodeError as exc:
        return str(exc)
    except RecursionError:
        return TOO_DEEP
    return None


def _array_start(buf: bytes) -> tuple[int, Chunk] | None:
    """Where the body of a top-level array or of a log file's `Records` begins, and what its chunks are."""
    start = _WHITESPACE.match(buf).end()  # type: ignore[union-attr]
    if buf[start : start + 1] == b"[":
        return start + 1, ArrayChunk
    records = _RECORDS_PREFIX.match(buf)
    return (records.end(), RecordsChunk) if records else None


def _scanned_array(
    buf: bytes, start: int, location: Location, chunk: Chunk, index: int = 0
) -> Iterator[FileItem]:
    """An array some element of which nests deeper than the decoder goes: cut by scanning, so that the
    too-deep elements alone are malformed."""
    cut = element_spans(buf, start)
    yield from _elements(buf, cut.spans, location, chunk, index)
    if not cut.closed:
        yield Malformed(
            location.describe(index + len(cut.spans)), "file ends inside the array: truncated or broken JSON"
        )


def _elements(
    buf: bytes, spans: list[tuple[int, int]], location: Location, chunk: Chunk, index: int
) -> Iterator[FileItem]:
    """Documents of consecutive readable elements, and each unreadable one as Malformed."""
    run: list[bytes] = []
    run_index = index
    for offset, (start, end) in enumerate(spans):
        element = buf[start:end]
        complaint = _json_error(element)
        if complaint is None:
            if not run:
                run_index = index + offset
            run.append(element)
            continue
        if run:
            yield chunk(b"[" + b",".join(run) + b"]", location, run_index)
            run = []
        yield Malformed(location.describe(index + offset), f"record unreadable: {complaint}")
    if run:
        yield chunk(b"[" + b",".join(run) + b"]", location, run_index)


def _lines_of(buf: bytes) -> list[bytes]:
    """Lines, each with its newline. BytesIO finds them with memchr; bytes.split walks byte by byte
    (2.6x slower over CloudTrail-sized lines)."""
    return io.BytesIO(buf).readlines()


def _line_pieces(buf: bytes) -> Iterator[list[bytes] | int]:
    """The lines of `buf` (each with its newline; the last may lack one), in lists, with each run of at
    least MIN_BLANK_RUN blank lines replaced by its length."""
    if _NEWLINE_FLOOD not in buf:
        yield _lines_of(buf)
        return
    start = search = 0
    while (found := _BLANK_LINE.search(buf, search)) is not None:
        run_start = found.start() + 1
        blank_end = _BLANK_CHARS.match(buf, run_start).end()  # type: ignore[union-attr]
        run_end = buf.rfind(b"\n", run_start, blank_end) + 1  # whole lines only
        blank = buf.count(b"\n", run_start, run_end)
        if blank >= MIN_BLANK_RUN:
            if run_start > start:
                yield _lines_of(buf[start:run_start])
            yield blank
            start = run_end
        search = run_end
    if start < len(buf):
        yield _lines_of(buf[start:] if start else buf)


def _first_line_is_json(buf: bytes) -> bool:
    """Whether one of the first three non-blank lines is a whole JSON object or array on its own: JSON
    Lines (a broken first line must not hide the rest). Pretty-printed documents never have such lines."""
    start, seen = 0, 0
    while seen < 3:  # lines found without splitting, i.e. copying, the whole buffer
        start = _WHITESPACE.match(buf, start).end()  # type: ignore[union-attr]  # blank lines, at C speed
        if start >= len(buf):
            return False
        end = buf.find(b"\n", start)
        line = (buf[start:] if end < 0 else buf[start:end]).strip()
        if line not in (b"{}", b"[]"):
            seen += 1
            if _is_json_container(line):
                return True
        if end < 0:
            return False
        start = end + 1
    return False


def _is_json_container(line: bytes) -> bool:
    if line[:1] not in (b"{", b"["):
        return False
    return _json_error(line) is None


def _concatenated(buf: bytes, location: Location) -> Iterator[FileItem]:
    """JSON values one after another, pretty-printed (`jq '.Records[]'` output): cut where each one ends."""
    view = memoryview(buf)
    position, line, size = 0, 1, len(buf)
    while True:
        start = _WHITESPACE.match(buf, position).end()  # type: ignore[union-attr]
        line += buf.count(b"\n", position, start)
        if start >= size:
            return
        complaint = _json_error(view[start:])
        if complaint is None:
            end = size
        else:
            trailing = _TRAILING.search(complaint)
            if trailing is None:  # broken JSON: nothing after it can be trusted to line up
                yield Document(buf[start:], Location(location.source, line))
                return
            end = start + int(trailing.group(1)) - 1  # msgspec counts one past the offending byte
        yield Document(buf[start:end], Location(location.source, line))
        line += buf.count(b"\n", start, end)
        position = end


def _json_lines(pieces: Iterable[LinePiece], location: Location) -> Iterator[FileItem]:
    """JSON Lines in batches: a Document holds up to LINES_PER_DOCUMENT lines and its first line number."""
    number = 1
    for lines in pieces:
        if type(lines) is int:  # blank lines, skipped
            number += lines
            continue
        if type(lines) is _TooLong:
            yield Malformed(
                Location(location.source, number).describe(),
                f"line longer than {MAX_ELEMENT // 2**20} MiB, skipped",
            )
            number += 1
            continue
        assert type(lines) is list
        for offset in range(0, len(lines), LINES_PER_DOCUMENT):
            batch = lines[offset : offset + LINES_PER_DOCUMENT]
            yield LineBatch(batch, location, number)
            number += len(batch)


def _split_stream(head: bytes, stream: BinaryIO, location: Location) -> Iterator[FileItem]:
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    start = len(head) - len(head.lstrip())
    if head[start : start + 1] == b"[":
        yield from _stream_array(head[start + 1 :], stream, location, ArrayChunk)
        return
    records = _RECORDS_PREFIX.match(head)
    if records:
        yield from _stream_array(head[records.end() :], stream, location, RecordsChunk)
        return
    if _first_line_is_json(head):
        yield from _json_lines(_stream_lines(head, stream), location)
        return
    yield Malformed(
        location.source,
        f"larger than {WHOLE_FILE_LIMIT // 2**20} MiB and neither JSON Lines, a JSON array "
        "nor a CloudTrail Records file, so it cannot be streamed",
    )


def _stream_lines(head: bytes, stream: BinaryIO) -> Iterator[LinePiece]:
    """The pieces of a stream's lines, a chunk's worth at a time (the last, partial line waits for the
    next chunk). A line longer than MAX_ELEMENT is dropped as it streams past, never held whole."""
    pending = head
    dropping = False
    while True:
        if dropping:
            newline = pending.find(b"\n")
            if newline >= 0:
                yield TOO_LONG
                dropping = False
                pending = pending[newline + 1 :]
            else:
                pending = b""
        if not dropping:
            pieces = list(_line_pieces(pending))
            last = pieces[-1] if pieces else None
            pending = last.pop() if type(last) is list and not last[-1].endswith(b"\n") else b""
            yield from (piece for piece in pieces if piece != [])
            if len(pending) > MAX_ELEMENT:
                dropping, pending = True, b""
        more = stream.read(CHUNK)
        if not more:
            break
        pending += more
    if dropping:
        yield TOO_LONG
    elif pending:
        yield [pending]


def _stream_array(buf: bytes, stream: BinaryIO, location: Location, chunk: Chunk) -> Iterator[FileItem]:
    """Cut a streamed array into chunks of whole elements; `buf` starts just after the opening '['."""
    index = 0
    eof = False
    while True:
        while not eof and len(buf) < CHUNK:
            more = stream.read(CHUNK)
            eof = not more
            buf += more
        if eof:
            break
        cut = _last_boundary(buf)
        if cut is None and (scanned := element_spans(buf, 0)).spans:
            yield from _elements(buf, scanned.spans, location, chunk, index)
            if scanned.closed:
                return
            index += len(scanned.spans)
            buf = buf[scanned.rest :]
            continue
        if cut is None:
            if len(buf) > MAX_ELEMENT:
                yield Malformed(
                    location.describe(index),
                    f"no element boundary within {MAX_ELEMENT // 2**20} MiB: broken JSON or a huge element",
                )
                return
            more = stream.read(CHUNK)
            eof = not more
            buf += more
            continue
        end, resume, count = cut
        yield chunk(b"[" + buf[:end] + b"]", location, index)
        index += count
        buf = buf[resume:]
    yield from _array_tail(buf, location, chunk, index)


def _array_tail(buf: bytes, location: Location, chunk: Chunk, index: int) -> Iterator[FileItem]:
    body = buf.rstrip()
    closing = b"}" if chunk is RecordsChunk else b""
    if closing and body.endswith(closing):
        body = body[:-1].rstrip()
    if body.endswith(b"]"):
        if not body[:-1].strip():
            return
        document = b"[" + body[:-1] + b"]"
        if _json_error(document) == TOO_DEEP:
            yield from _scanned_array(document, 1, location, chunk, index)
        else:
            yield chunk(document, location, index)
        return
    yield from _salvage(buf, location, chunk, index)


def _salvage(buf: bytes, location: Location, chunk: Chunk, index: int) -> Iterator[FileItem]:
    """A truncated array: keep every whole element before the break, found one by one, then report it."""
    view = memoryview(buf)
    position, end = 0, 0
    count = 0
    while True:
        start = _WHITESPACE.match(buf, position).end()  # type: ignore[union-attr]
        complaint = _json_error(view[start:])
        if complaint is None:
            break  # the rest is one whole value but the array was never closed
        trailing = _TRAILING.search(complaint)
        if trailing is None:
            break
        element_end = start + int(trailing.group(1)) - 1
        if buf[element_end : element_end + 1] != b",":
            break
        end, position, count = element_end, element_end + 1, count + 1
    if count:
        yield chunk(b"[" + buf[:end] + b"]", location, index)
    yield Malformed(location.describe(index + count), "file ends inside the array: truncated or broken JSON")


def _last_boundary(buf: bytes) -> tuple[int, int, int] | None:
    """The last '}' that ends an element (followed by ','), as (end, resume, element count).

    `[` + buf[:end] + `]` decodes only when the cut is between top-level elements: a cut inside a string
    leaves it unterminated and a cut inside a nested value leaves a bracket open. So trying to decode is a
    sound boundary test.
    """
    position = len(buf)
    attempts = 0
    while attempts < _BOUNDARY_TRIES:
        position = buf.rfind(b"}", 0, position)
        if position < 0:
            return None
        after = position + 1
        while after < len(buf) and buf[after] in b" \t\r\n":
            after += 1
        if after < len(buf) and buf[after : after + 1] == b",":
            attempts += 1
            try:
                count = len(RAW_LIST_DECODER.decode(b"[" + buf[: position + 1] + b"]"))
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                continue
            return position + 1, after + 1, count
    return None


TYPICAL_EVENT_BYTES = 1500


def approximate_events(item: Decodable) -> int:
    """About how many events a unit holds, without decoding it (streamed chunks are megabytes)."""
    if isinstance(item, LineBatch):
        return len(item.lines)
    if isinstance(item, Malformed | Skipped):
        return 1
    return 1 + len(item.data) // TYPICAL_EVENT_BYTES
