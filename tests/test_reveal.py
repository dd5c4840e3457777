"""Hidden characters are shown as escapes, in text and in JSON, and nothing else changes."""

from __future__ import annotations

import json
import sys
import unicodedata

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from kvs_sentinel.reveal import HIDDEN, escape_of, reveal, reveal_in_json

ISSUE_NAMED = [
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    *range(0xE0000, 0xE0080),
]
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
ALSO_HIDDEN = {0x115F, 0x1160, 0x3164, 0xFFA0, *range(0xE0000, 0xE0080), *range(0x13439, 0x13440)}


def test_hidden_is_every_control_format_and_separator_character_and_nothing_visible() -> None:
    matched = {point for point in range(sys.maxunicode + 1) if HIDDEN.fullmatch(chr(point))}
    by_category = {
        point for point in range(sys.maxunicode + 1) if unicodedata.category(chr(point)) in HIDDEN_CATEGORIES
    }
    assert by_category - matched == set(), "a hidden character is not revealed"
    assert matched - by_category - ALSO_HIDDEN == set(), "a visible character is revealed"
    assert set(ISSUE_NAMED) <= matched


def test_reveal_shows_each_hidden_character_as_its_escape() -> None:
    assert reveal("admin\u202egnp.exe") == "admin\\u202egnp.exe"
    assert reveal("cam\u200b1") == "cam\\u200b1"
    assert reveal("a\nb\r\tc\x00") == "a\\nb\\r\\tc\\u0000"
    assert reveal("tag\U000e0041\U000e007f") == "tag\\U000e0041\\U000e007f"
    assert reveal("\u061c\u200e\u2066x\u2069\u2028") == "\\u061c\\u200e\\u2066x\\u2069\\u2028"
    assert reveal("Caméra · 東京 👍 ‐") == "Caméra · 東京 👍 ‐"  # noqa: RUF001 (visible, kept)


@given(st.text())
def test_reveal_leaves_nothing_hidden_and_changes_only_hidden_characters(value: str) -> None:
    shown = reveal(value)
    assert HIDDEN.search(shown) is None
    assert shown == "".join(escape_of(c) if HIDDEN.fullmatch(c) else c for c in value)
    if HIDDEN.search(value) is None:
        assert shown == value


@given(st.dictionaries(st.text(), st.text() | st.lists(st.text())))
def test_json_keeps_the_exact_value_and_shows_no_hidden_character(document: dict[str, object]) -> None:
    encoded = reveal_in_json(msgspec.json.encode(document))
    assert HIDDEN.search(encoded.decode()) is None
    assert json.loads(encoded) == document
    assert msgspec.json.decode(encoded) == document


def test_json_whitespace_between_tokens_is_left_alone() -> None:
    indented = json.dumps({"a": ["x\u202ey", "\U000e0041"]}, indent=2, ensure_ascii=False).encode()
    revealed = reveal_in_json(indented)
    assert revealed.decode() == indented.decode().replace("\u202e", "\\u202e").replace(
        "\U000e0041", "\\udb40\\udc41"
    )
    assert json.loads(revealed) == json.loads(indented)
