"""Cut a JSON array into its elements without decoding them.

msgspec recurses into every element even to skip it, so one element nested deeper than it will go (a
hostile record) makes the whole array undecodable. Scanning only strings and brackets finds where each
top-level element ends whatever its depth, so that element alone is lost. The elements are not validated
here: whoever decodes them reports the broken ones.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# A string (the unrolled form: each repeat is one character class, which the regex engine runs at C
# speed), a string that `buf` ends inside, or one structural character.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|(?P<unterminated>"[^"\\]*(?:\\.[^"\\]*)*\\?\Z)|[\[\]{},]')
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")
_QUOTE = ord('"')
_COMMA = ord(",")


class Cut(NamedTuple):
    spans: list[tuple[int, int]]  # (start, end) of each whole element, whitespace stripped; `[,]` dropped
    closed: bool  # the array's closing ']' was found
    rest: int  # just past the closing ']', or where the element that `buf` ends inside begins


def element_spans(buf: bytes, start: int) -> Cut:
    """Cut the array whose body begins at `start` (just after its '[')."""
    spans: list[tuple[int, int]] = []
    depth = 0
    element_start = start
    for token in _TOKEN.finditer(buf, start):
        if token.lastgroup == "unterminated":
            break
        first = buf[token.start()]
        if first == _QUOTE:
            continue
        if first in _OPENERS:
            depth += 1
        elif first in _CLOSERS:
            if depth == 0:
                _add(spans, buf, element_start, token.start())
                return Cut(spans, True, token.end())
            depth -= 1
        elif first == _COMMA and depth == 0:
            _add(spans, buf, element_start, token.start())
            element_start = token.end()
    return Cut(spans, False, element_start)


def _add(spans: list[tuple[int, int]], buf: bytes, start: int, end: int) -> None:
    while start < end and buf[start] in b" \t\r\n":
        start += 1
    while end > start and buf[end - 1] in b" \t\r\n":
        end -= 1
    if end > start:
        spans.append((start, end))
