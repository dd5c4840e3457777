"""Parsed YAML kept between runs (parse_cache.py): the same data as parsing, never a secret from the
environment, never code, and never a reason for a command to fail."""

from __future__ import annotations

import datetime
import os
import pickle
from pathlib import Path

import pytest

from kvs_sentinel import parse_cache
from kvs_sentinel.config import load_config
from kvs_sentinel.yaml_files import read_yaml

DOCUMENT = b"""
name: dates and anchors
expires: 2027-01-31
at: 2026-11-02T10:00:00+02:00
base: &base {count: 1, ratio: 0.5, on: true, none: null, ports: [80, 443]}
copy: *base
binary: !!binary aGVsbG8=
names: !!set {a, b}
"""


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(parse_cache.CACHE_DIR_ENV, str(folder))
    return folder / "yaml"


def counting_parse(value: object) -> tuple[list[int], object]:
    calls: list[int] = []

    def parse() -> object:
        calls.append(1)
        return value

    return calls, parse


def test_a_file_parsed_once_is_read_from_the_cache_with_the_same_values(
    tmp_path: Path, cache_dir: Path
) -> None:
    path = tmp_path / "doc.yaml"
    path.write_bytes(DOCUMENT)
    first = read_yaml(path)
    assert len(list(cache_dir.glob("*.pickle"))) == 1
    calls, parse = counting_parse("not this")
    second = parse_cache.parsed(DOCUMENT, parse)
    assert calls == []
    assert second == first == read_yaml(path)
    assert type(second["expires"]) is datetime.date
    assert second["at"].utcoffset() == datetime.timedelta(hours=2)
    assert second["binary"] == b"hello"
    assert second["names"] == {"a", "b"}
    assert second["copy"] is second["base"]  # an alias is the same object, as the parser makes it


def test_an_edited_file_is_parsed_again(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text("value: 1\n")
    assert read_yaml(path) == {"value": 1}
    path.write_text("value: 2\n")
    assert read_yaml(path) == {"value": 2}


def test_a_damaged_entry_is_parsed_again_and_replaced(cache_dir: Path) -> None:
    parse_cache.parsed(b"x: 1", lambda: {"x": 1})
    (entry,) = cache_dir.glob("*.pickle")
    entry.write_bytes(entry.read_bytes()[:5])
    calls, parse = counting_parse({"x": 1})
    assert parse_cache.parsed(b"x: 1", parse) == {"x": 1}
    assert calls == [1]
    assert parse_cache.parsed(b"x: 1", lambda: "not this") == {"x": 1}


class _Runs:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("exit 0",))


def test_an_entry_that_would_build_anything_but_plain_data_is_refused(cache_dir: Path) -> None:
    parse_cache.parsed(b"x: 1", lambda: {"x": 1})
    (entry,) = cache_dir.glob("*.pickle")
    entry.write_bytes(pickle.dumps({"x": _Runs()}))
    calls, parse = counting_parse({"x": 1})
    assert parse_cache.parsed(b"x: 1", parse) == {"x": 1}
    assert calls == [1]


def test_a_folder_that_cannot_be_written_only_costs_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(parse_cache.CACHE_DIR_ENV, str(blocker))
    path = tmp_path / "doc.yaml"
    path.write_text("value: 1\n")
    assert read_yaml(path) == {"value": 1}
    assert read_yaml(path) == {"value": 1}


def test_invalid_yaml_is_reported_every_time_and_never_kept(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\n")
    for _ in range(2):
        with pytest.raises(Exception, match=r"bad\.yaml:2:1: invalid YAML"):
            read_yaml(path)
    assert not list(cache_dir.glob("*.pickle"))


def test_values_from_the_environment_are_never_written(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "https://hooks.slack.com/services/T0/B0/not-a-real-secret-4711"
    monkeypatch.setenv("TEST_SLACK_WEBHOOK", secret)
    monkeypatch.setenv("TEST_NETWORK", "10.9.8.0/24")
    config = tmp_path / "sentinel.yaml"
    config.write_text(
        "lists:\n  trusted_networks: ['${TEST_NETWORK}']\n"
        "sinks:\n  chat:\n    type: slack\n    webhook_url: ${TEST_SLACK_WEBHOOK}\n"
    )
    loaded = load_config(config, deliver=True)
    assert loaded.lists["trusted_networks"] == ["10.9.8.0/24"]
    entries = list(cache_dir.glob("*.pickle"))
    assert len(entries) == 2  # the configuration and the shipped pack
    for entry in entries:
        kept = entry.read_bytes()
        assert b"not-a-real-secret" not in kept
        assert b"10.9.8.0" not in kept
