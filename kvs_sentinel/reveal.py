"""Hidden characters in event values, made visible: what an analyst reads is what the event says.

CloudTrail fields are attacker-controlled. A right-to-left override (U+202E) makes a file name read
backwards, a zero-width space splits a name two lookups will disagree on, tag characters
(U+E0000 to U+E007F) carry invisible text, a newline forges a second line. Every sink renders event values
through `reveal` (or, for JSON, `reveal_in_json`), which replaces each such character with its escape
(`\\u202e`, `\\U000e0041`, `\\n`) instead of dropping it: a silent strip would hide that the value was
tampered with and make it match lookalike names it is not equal to; the escape shows both.

Hidden means: controls (C0, DEL, C1), format characters (bidi embeddings, overrides and isolates, U+061C,
U+200E/F, zero-width spaces and joiners, word joiner, soft hyphen, BOM, tag characters…), the line and
paragraph separators U+2028/U+2029, lone surrogates, and the Hangul fillers that render as nothing.
"""

from __future__ import annotations

import re

# Unicode categories Cc, Cf, Cs, Zl and Zp (as of Python 3.11's Unicode 14, plus U+13439 to U+1343F that
# Unicode 15 added), the whole tag block, and the invisible Hangul fillers (category Lo).
# tests/test_reveal.py checks this class against `unicodedata`.
HIDDEN = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2"
    "\u115f-\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\u3164"
    "\ud800-\udfff\ufeff\uffa0\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f"
    "]"
)
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_of(char: str) -> str:
    """`\\n`, `\\u202e` or `\\U000e0041`: how a hidden character is shown."""
    point = ord(char)
    return _SHORT.get(char) or (f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}")


def reveal(value: str) -> str:
    """`value` with every hidden character replaced by its visible escape."""
    return HIDDEN.sub(lambda match: escape_of(match.group()), value)


def _json_escape(match: re.Match[str]) -> str:
    point = ord(match.group())
    if point < 0x20:  # valid JSON has these only as whitespace between tokens: strings escape them
        return match.group()
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"


def reveal_in_json(encoded: bytes) -> bytes:
    """JSON text with every hidden character written as a `\\uXXXX` escape.

    Valid wherever it applies: outside strings JSON is ASCII without DEL, so DEL or a non-ASCII character
    can only be inside a string, where any character may be written as its escape (C0 controls are
    left alone: a string cannot hold them raw, and between tokens they are whitespace). A parser gets the
    exact value back (forensics and correlation keep working); a terminal, a log viewer or an email
    client shows the escape instead of obeying the character.
    """
    if encoded.isascii() and b"\x7f" not in encoded:
        return encoded  # the encoder already escaped C0 controls: nothing else can be hidden
    text = encoded.decode("utf-8", "surrogatepass")
    return HIDDEN.sub(_json_escape, text).encode("utf-8")
