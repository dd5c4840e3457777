"""IAM glob matching for Action and Resource elements: linear time on attacker-controlled patterns.

``*`` matches any run of characters, ``?`` one character, case-insensitively (IAM compares action
names without case; for ARNs we accept the looser match so that odd spellings never hide a grant).
"""

from __future__ import annotations

import functools
import re

__all__ = ["MAX_PATTERN_CHARS", "collapse_stars", "glob_match", "may_match_arn"]

MAX_PATTERN_CHARS = 4096  # longer than any ARN IAM accepts


def collapse_stars(pattern: str) -> str:
    return re.sub(r"\*{2,}", "*", pattern)


@functools.lru_cache(maxsize=4096)
def _glob_matcher(pattern: str) -> tuple[tuple[re.Pattern[str], int], ...]:
    """IAM glob → fixed-width segment regexes + widths."""
    return tuple(
        (re.compile("".join("." if c == "?" else re.escape(c) for c in seg), re.DOTALL), len(seg))
        for seg in pattern.casefold().split("*")
    )


def glob_match(pattern: str, text: str) -> bool:
    """Greedy leftmost segment matching: O(len(text) * len(pattern)), no backtracking."""
    segments = _glob_matcher(pattern)
    text = text.casefold()
    (first, _), (last, last_width) = segments[0], segments[-1]
    if len(segments) == 1:
        return first.fullmatch(text) is not None
    head = first.match(text)
    if head is None:
        return False
    pos, end = head.end(), len(text)
    for seg, _ in segments[1:-1]:
        found = seg.search(text, pos, end)
        if found is None:
            return False
        pos = found.end()
    start = end - last_width
    return start >= pos and last.fullmatch(text, start, end) is not None


# Tokens of an ARN language: a literal character, SEG* (any run without ':') or ANY* (any run).
_SEG = "SEG*"
_ANY = "ANY*"


@functools.cache
def _arn_language(partition: str, service: str, resource_type: str) -> tuple[str, ...]:
    """``arn:<partition>:<service>:<region>:<account>:<resource_type>/...`` as tokens."""
    return (
        *f"arn:{partition}:{service}:".casefold(),
        _SEG,
        ":",
        _SEG,
        ":",
        *f"{resource_type}/".casefold(),
        _ANY,
    )


@functools.lru_cache(maxsize=8192)
def may_match_arn(pattern: str, partition: str, service: str, resource_type: str) -> bool:
    """Can this Resource glob match some ARN of ``resource_type`` in ``partition``?

    Reachability in the product of the glob and the ARN language: linear in their sizes.
    """
    pat = collapse_stars(pattern.casefold())
    if len(pat) > MAX_PATTERN_CHARS:
        return False
    q = _arn_language(partition, service, resource_type)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(pat) and j == len(q):
            return True
        a = pat[i] if i < len(pat) else None
        b = q[j] if j < len(q) else None
        if a == "*":
            stack.append((i + 1, j))
        if b in (_SEG, _ANY):
            stack.append((i, j + 1))
        if a is None or b is None:
            continue
        a_any = a in ("*", "?")
        if b == _ANY:
            ok = True
        elif b == _SEG:
            ok = a_any or a != ":"
        else:
            ok = a_any or a == b
        if ok:
            stack.append((i if a == "*" else i + 1, j if b in (_SEG, _ANY) else j + 1))
    return False
