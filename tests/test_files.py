from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from kvs_sentinel.decode import decode_all
from kvs_sentinel.envelopes import ArrayChunk, Malformed, RecordsChunk, Skipped
from kvs_sentinel.errors import InputError
from kvs_sentinel.events import Event, Location
from kvs_sentinel.sources import files
from kvs_sentinel.sources.files import FileItem, expand_paths, read_documents, split_documents


def record(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventVersion": "1.09",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "GetMedia",
        "eventID": f"e-{n}",
        "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::1:user/u{n}"},
        **extra,
    }


def tricky(n: int) -> dict[str, Any]:
    """A record whose strings hold element-boundary look-alikes and whose resources nest objects in a list."""
    return record(
        n,
        userAgent='x},{"eventID":"fake"},{' if n % 3 == 0 else "}" * (n % 5),
        requestParameters={"streamName": "s},{", "nested": [{"a": {"b": "}"}}, {"c": []}]},
        resources=[
            {"ARN": f"arn:aws:kinesisvideo:eu-west-1:1:stream/s{n}/{i}", "type": "}, {"} for i in range(3)
        ],
    )


class Result:
    def __init__(self, items: list[FileItem]) -> None:
        self.documents = [i for i in items if not isinstance(i, Malformed | Skipped)]
        self.events: list[Event] = []
        self.malformed: list[Malformed] = [i for i in items if isinstance(i, Malformed)]
        self.skipped: list[Skipped] = [i for i in items if isinstance(i, Skipped)]
        for document in self.documents:
            for item in decode_all(document):
                if isinstance(item, Event):
                    self.events.append(item)
                elif isinstance(item, Malformed):
                    self.malformed.append(item)
                elif isinstance(item, Skipped):
                    self.skipped.append(item)

    @property
    def ids(self) -> list[str]:
        return [e.doc.eventID for e in self.events]

    @property
    def wheres(self) -> list[str]:
        return [e.where() for e in self.events]


def read(path: Path, limit: int = files.WHOLE_FILE_LIMIT) -> Result:
    return Result(list(read_documents(str(path), whole_file_limit=limit)))


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------- form detection (whole file)
def test_single_pretty_printed_document_is_one_document(tmp_path: Path):
    path = write(tmp_path, "a.json", json.dumps({"Records": [record(0), record(1)]}, indent=2))
    result = read(path)
    assert len(result.documents) == 1
    assert result.wheres == [f"{path} record 0", f"{path} record 1"]


def test_compact_records_file_is_one_document(tmp_path: Path):
    path = write(tmp_path, "a.json", json.dumps({"Records": [record(0), record(1), record(2)]}))
    result = read(path)
    assert len(result.documents) == 1
    assert result.ids == ["e-0", "e-1", "e-2"]
    assert {e.form for e in result.events} == {"records"}


def test_json_lines_with_a_broken_line_reports_that_line_and_reads_the_others(tmp_path: Path):
    lines = [json.dumps(record(0)), json.dumps(record(1)), '{"eventSource": "x", ', "", json.dumps(record(4))]
    path = write(tmp_path, "a.jsonl", "\n".join(lines) + "\n")
    result = read(path)
    assert result.ids == ["e-0", "e-1", "e-4"]
    assert result.wheres == [f"{path}:1", f"{path}:2", f"{path}:5"]
    assert [m.where for m in result.malformed] == [f"{path}:3"]


def test_json_lines_with_a_broken_first_line_still_reads_the_others(tmp_path: Path):
    lines = ['{"eventSource": "x", ', json.dumps(record(1)), json.dumps(record(2))]
    path = write(tmp_path, "a.jsonl", "\n".join(lines) + "\n")
    result = read(path)
    assert result.ids == ["e-1", "e-2"]
    assert [m.where for m in result.malformed] == [f"{path}:1"]


def test_concatenated_pretty_printed_objects_are_split_with_their_start_lines(tmp_path: Path):
    # what `jq '.Records[]'` prints
    chunks = [json.dumps(record(n), indent=2) for n in range(3)]
    path = write(tmp_path, "a.json", "\n".join(chunks) + "\n")
    result = read(path)
    starts = [1, 1 + chunks[0].count("\n") + 1, 1 + chunks[0].count("\n") + 1 + chunks[1].count("\n") + 1]
    assert result.ids == ["e-0", "e-1", "e-2"]
    assert result.wheres == [f"{path}:{line}" for line in starts]
    assert not result.malformed


def test_concatenated_objects_stop_at_broken_json_keeping_what_came_before(tmp_path: Path):
    first = json.dumps(record(0), indent=2)
    path = write(tmp_path, "a.json", first + '\n{\n  "eventSource": @\n}\n' + json.dumps(record(2), indent=2))
    result = read(path)
    assert result.ids == ["e-0"]
    assert len(result.malformed) == 1
    assert result.malformed[0].where == f"{path}:{first.count(chr(10)) + 2}"


def test_top_level_array_file(tmp_path: Path):
    path = write(tmp_path, "a.json", json.dumps([record(0), record(1)], indent=1))
    result = read(path)
    assert result.wheres == [f"{path} record 0", f"{path} record 1"]
    assert {e.form for e in result.events} == {"record"}


@pytest.mark.parametrize("content", [b"", b"  \n\n\t", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n"])
def test_empty_file_is_skipped(tmp_path: Path, content: bytes):
    path = write(tmp_path, "a.json", content)
    assert list(read_documents(str(path))) == [Skipped("empty_file", str(path))]


def test_byte_order_mark_is_ignored(tmp_path: Path):
    path = write(tmp_path, "a.json", b"\xef\xbb\xbf" + json.dumps({"Records": [record(0)]}).encode())
    result = read(path)
    assert result.ids == ["e-0"]
    assert not result.malformed


def test_gzip_is_detected_by_magic_bytes_whatever_the_name(tmp_path: Path):
    body = json.dumps({"Records": [record(0), record(1)]}).encode()
    zipped = write(tmp_path, "events.json", gzip.compress(body))
    plain = write(tmp_path, "plain.json.gz", body)
    assert read(zipped).ids == ["e-0", "e-1"]
    assert read(plain).ids == ["e-0", "e-1"]


def test_corrupt_gzip_is_malformed_not_a_crash(tmp_path: Path):
    path = write(tmp_path, "bad.json.gz", gzip.compress(b'{"Records": []}')[:12] + b"garbage!")
    result = read(path)
    assert not result.events
    assert len(result.malformed) == 1
    assert result.malformed[0].where == str(path)


def test_directory_is_expanded_recursively_in_sorted_order_and_reports_what_it_leaves_out(tmp_path: Path):
    for name in ["b.json", "a.json.gz", "sub/c.jsonl", "sub/deeper/d", ".hidden.json", ".git/config.json",
                 "README.md", "pack.yaml", "notes.TXT", "sub/x.yml", "run.sh"]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write(tmp_path, name, "{}")
    skipped: list[tuple[str, str]] = []
    found = [
        Path(p).relative_to(tmp_path).as_posix()
        for p in expand_paths([str(tmp_path)], skipped=lambda reason, name: skipped.append((reason, name)))
    ]
    assert found == ["a.json.gz", "b.json", "sub/c.jsonl", "sub/deeper/d"]
    assert sorted((reason, name.removeprefix(str(tmp_path) + "/")) for reason, name in skipped) == [
        ("hidden", ".git/"),
        ("hidden", ".hidden.json"),
        ("not CloudTrail by name", "README.md"),
        ("not CloudTrail by name", "notes.TXT"),
        ("not CloudTrail by name", "pack.yaml"),
        ("not CloudTrail by name", "run.sh"),
        ("not CloudTrail by name", "sub/x.yml"),
    ]


def test_files_named_explicitly_are_kept_whatever_their_suffix(tmp_path: Path):
    readme = write(tmp_path, "README.md", "{}")
    assert list(expand_paths([str(readme), "-", str(tmp_path / "missing.json")])) == [
        str(readme),
        "-",
        str(tmp_path / "missing.json"),
    ]


def test_missing_file_raises_input_error_naming_it(tmp_path: Path):
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError, match=r"nope\.json: cannot open"):
        list(read_documents(str(missing)))


def test_directory_given_as_a_file_raises_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="cannot open"):
        list(read_documents(str(tmp_path)))


# ---------------------------------------------------------------- streaming
LIMIT = 1024
N = 40


@pytest.fixture(params=[64, 300, 1000])
def small_chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(files, "CHUNK", request.param)
    return int(request.param)


def stream(data: bytes, source: str = "big") -> Result:
    return Result(list(split_documents(io.BufferedReader(io.BytesIO(data)), Location(source), LIMIT)))


@pytest.mark.parametrize("indent", [None, 2])
def test_streamed_records_file_recovers_every_record_with_its_index(small_chunk: int, indent: int | None):
    data = json.dumps({"Records": [tricky(n) for n in range(N)]}, indent=indent).encode()
    assert len(data) > 4 * LIMIT
    result = stream(data)
    assert result.ids == [f"e-{n}" for n in range(N)]
    assert result.wheres == [f"big record {n}" for n in range(N)]
    assert {e.form for e in result.events} == {"records"}
    assert not result.malformed
    assert len(result.documents) > 1
    assert all(type(d) is RecordsChunk for d in result.documents)
    assert result.events[0].lazy("resources")[2]["ARN"] == "arn:aws:kinesisvideo:eu-west-1:1:stream/s0/2"


@pytest.mark.parametrize("indent", [None, 2])
def test_streamed_top_level_array_recovers_every_element_with_its_index(small_chunk: int, indent: int | None):
    data = json.dumps([tricky(n) for n in range(N)], indent=indent).encode()
    result = stream(data)
    assert result.ids == [f"e-{n}" for n in range(N)]
    assert result.wheres == [f"big record {n}" for n in range(N)]
    assert {e.form for e in result.events} == {"record"}
    assert not result.malformed
    assert all(type(d) is ArrayChunk for d in result.documents)


def test_streamed_result_equals_whole_file_result(small_chunk: int):
    data = json.dumps({"Records": [tricky(n) for n in range(N)]}).encode()
    whole = Result(list(split_documents(io.BytesIO(data), Location("big"))))
    streamed = stream(data)
    assert len(whole.documents) == 1
    assert [(e.doc.eventID, e.where(), e.lazy("requestParameters")) for e in streamed.events] == [
        (e.doc.eventID, e.where(), e.lazy("requestParameters")) for e in whole.events
    ]


@pytest.mark.parametrize("kind", ["records", "array"])
def test_truncated_stream_keeps_every_whole_element_then_one_malformed(small_chunk: int, kind: str):
    elements = [tricky(n) for n in range(N)]
    data = json.dumps({"Records": elements} if kind == "records" else elements).encode()
    cut = data.index(b'"e-31"') - 30  # inside element 31, before its eventID
    result = stream(data[:cut])
    assert result.ids == [f"e-{n}" for n in range(31)]
    assert result.wheres == [f"big record {n}" for n in range(31)]
    assert len(result.malformed) == 1
    assert result.malformed[0].where == "big record 31"


def test_truncated_stream_keeps_whole_elements_when_the_broken_one_has_many_nested_objects(
    monkeypatch: pytest.MonkeyPatch,
):
    # The last read reaches the end of the file, so every element after the last cut is in the tail buffer.
    monkeypatch.setattr(files, "CHUNK", 8192)
    elements = [record(n) for n in range(12)]
    elements[11]["resources"] = [{"ARN": f"arn:aws:kinesisvideo:eu-west-1:1:stream/s/{i}"} for i in range(40)]
    elements[11]["zzz"] = "the file is cut here"
    data = json.dumps({"Records": elements}).encode()
    data = data[: data.index(b"the file is cut here")]
    assert LIMIT < len(data) < 8192
    result = stream(data)
    assert result.ids == [f"e-{n}" for n in range(11)]
    assert [m.where for m in result.malformed] == ["big record 11"]


def test_truncated_stream_inside_a_string_that_looks_like_a_boundary(small_chunk: int):
    elements = [tricky(n) for n in range(N)]
    data = json.dumps({"Records": elements}).encode()
    cut = data.index(b'x},{\\"eventID\\":\\"fake\\"},{', data.index(b'"e-33"')) + 5  # e-33 is a tricky one
    result = stream(data[:cut])
    assert result.ids == [f"e-{n}" for n in range(33)]
    assert [m.where for m in result.malformed] == ["big record 33"]


def test_streamed_gzip_records_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(files, "CHUNK", 200)
    data = json.dumps({"Records": [tricky(n) for n in range(N)]}).encode()
    path = write(tmp_path, "big", gzip.compress(data))
    result = read(path, LIMIT)
    assert result.ids == [f"e-{n}" for n in range(N)]
    assert result.wheres[-1] == f"{path} record {N - 1}"


def test_streamed_json_lines_reports_broken_line_and_reads_the_rest(small_chunk: int):
    lines = [json.dumps(tricky(n)) for n in range(N)]
    lines[17] = lines[17][:40]
    result = stream(("\n".join(lines) + "\n").encode())
    expected = [n for n in range(N) if n != 17]
    assert result.ids == [f"e-{n}" for n in expected]
    assert result.wheres == [f"big:{n + 1}" for n in expected]
    assert [m.where for m in result.malformed] == ["big:18"]


def test_streamed_json_lines_without_final_newline_keeps_the_last_line(small_chunk: int):
    data = "\n".join(json.dumps(record(n)) for n in range(N)).encode()
    assert stream(data).ids == [f"e-{n}" for n in range(N)]


def test_big_file_of_unstreamable_form_is_one_malformed(small_chunk: int):
    data = (json.dumps({"other": 1, "Records": [record(n) for n in range(N)]}, indent=2)).encode()
    result = stream(data)
    assert not result.events
    assert len(result.malformed) == 1
    assert "cannot be streamed" in result.malformed[0].error
