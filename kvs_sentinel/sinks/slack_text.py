"""Event values as Slack text that cannot become formatting, a link, a mention, an emoji or reordered text.

Three places, three renderings, one first step: `reveal` (hidden and bidi characters shown as escapes,
which also keeps every value on one line), then Slack's `&`, `<`, `>` as entities (documented: without
them nothing can become `<!channel>`, `<@U123>` or `<https://evil|a disguised link>`).

- `code`: inside a `verbatim` mrkdwn object, as inline code. Slack applies no formatting inside code and
  `verbatim` turns its auto-linking of URLs, channels and mentions off (both documented), so the value is
  shown exactly; only a backtick, which would close the span, becomes a look-alike.
- `plain`: `plain_text` objects (header, summary) with `emoji: false`. No mrkdwn applies; whether a client
  linkifies URLs in plain text is not documented, so links are broken as in `notification`.
- `notification`: the top-level `text`, which is the push notification and, when blocks are rejected,
  the whole message. We send `mrkdwn: false`, but incoming webhooks are not documented to honour it, so
  the text must be safe as mrkdwn with Slack's automatic parsing on:
  * `* _ ~` and the backtick become typographic stand-ins (U+2217, U+02CD,
    U+223C, U+02CB). mrkdwn has no escape character,
    and a formatting run needs the ASCII marker: with none left, nothing can format. (The exact values
    are in the blocks; this text is the summary on a lock screen.)
  * after every `.` `:` `@` `#` (and their full-width forms) that is followed by text, a WORD JOINER
    (U+2060). A link needs `scheme:` + `//` or a `label.tld` host, an emoji a `:name:` run of
    `[a-z0-9_+-]`, a mention `@here`/`@channel`/`@name`, a channel `#name`; U+2060 is in none of those
    alphabets (IDNA disallows it in host names), so none of them matches, while the text reads the same.
    `>` only quotes at the start of a line, and no value starts one (the text opens with the severity).
"""

from __future__ import annotations

import re

from kvs_sentinel.reveal import reveal

VALUE_LIMIT = 500  # one field value, before escaping: enough for any ARN, short enough to read
WORD_JOINER = "\u2060"
_LOOKALIKES = str.maketrans({"*": "∗", "_": "ˍ", "~": "∼", "`": "ˋ"})  # noqa: RUF001 (look-alikes)
_LINK_PUNCTUATION = re.compile(r"([.:@#\u3002\uff0e\uff61\uff1a\uff20\uff03])(?=\S)")


def escape(text: str) -> str:
    """Slack's three control characters as entities: nothing in `text` can become a mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(escaped: str, limit: int) -> str:
    """Clip escaped text to `limit` characters without cutting an entity in half."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def break_links(text: str) -> str:
    """A word joiner after each `.` `:` `@` `#` followed by text: no URL, host, emoji or mention matches."""
    return _LINK_PUNCTUATION.sub(r"\1" + WORD_JOINER, text)


def code(value: str | None, limit: int = VALUE_LIMIT) -> str:
    """An event value as inline code, for a `verbatim` mrkdwn object."""
    if not value:
        return "—"
    return "`" + fit(escape(reveal(value).replace("`", "ˋ")), limit) + "`"  # noqa: RUF001 (a look-alike)


def plain(value: str, limit: int) -> str:
    """Untrusted text for a `plain_text` object (send it with `emoji: false`)."""
    return fit(escape(break_links(reveal(value))), limit)


def notification(value: str, limit: int) -> str:
    """Untrusted text for the top-level `text`: safe even where Slack reads it as mrkdwn."""
    return fit(escape(break_links(reveal(value).translate(_LOOKALIKES))), limit)


def mrkdwn_prose(value: str, limit: int) -> str:
    """Our own text (remediation, escalation reasons) in mrkdwn: escaped, hidden characters shown."""
    return fit(escape(reveal(value)), limit)
