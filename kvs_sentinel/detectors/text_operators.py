"""Operators on a value's text, the way SIEM query languages (and Sigma) see a field.

A string is its own text, a number or boolean its JSON text (`true`, `42`), and an object or array of
objects every string inside it plus its compact JSON text: so `requestParameters: {text_icontains: x}`
searches the whole object, keys and values. The `i` forms ignore case. A list (a CloudTrail array, or a
path that fanned out through one) matches when any element matches; an absent value matches nothing.

`ieq_field` compares two fields of the same event (Sigma's `fieldref`): see RELATIONS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from kvs_sentinel.detectors.operators import handles_lists, operator, regex_test, string_arguments

Test = Callable[[Any], bool]
Relation = Callable[[Any, Any], bool]
# Objects deeper or bigger than this are searched as far as these limits go (event fields are hostile).
_MAX_DEPTH = 32
_MAX_STRINGS = 10_000


def _object_texts(value: Any) -> Iterator[str]:
    """The strings inside an object or array, then its compact JSON text."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack and seen < _MAX_STRINGS:
        item, depth = stack.pop()
        if type(item) is str:
            seen += 1
            yield item
        elif depth < _MAX_DEPTH and type(item) is dict:
            stack.extend((child, depth + 1) for child in item.values())
        elif depth < _MAX_DEPTH and type(item) is list:
            stack.extend((child, depth + 1) for child in item)
    try:
        yield json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        return


def texts(value: Any) -> Iterator[str]:
    """Every text a value offers to a text operator (see the module docstring)."""
    kind = type(value)
    if kind is str:
        yield value
    elif kind is bool:
        yield "true" if value else "false"
    elif kind is int or kind is float:
        yield json.dumps(value)
    elif kind is list:
        for element in value:
            if type(element) is list:
                yield from _object_texts(element)  # iterative: hostile nesting cannot recurse deeply
            elif element is not None:
                yield from texts(element)
    elif kind is dict:
        yield from _object_texts(value)


def _text_test(test: Callable[[str], bool]) -> Test:
    """A test of strings applied to every text of a value; plain strings take the short way."""

    def answer(value: Any) -> bool:
        if type(value) is str:
            return test(value)
        if value is None:
            return False
        return any(test(text) for text in texts(value))

    return handles_lists(answer)


def _text_operator(name: str, matches: Callable[[str, tuple[str, ...]], bool]) -> None:
    """Register `name` and its case-insensitive twin: `text_<name>` and `text_i<name>`."""

    def cased(argument: Any) -> Test:
        needles = tuple(string_arguments(argument, f"text_{name}"))
        return _text_test(lambda text: matches(text, needles))

    def uncased(argument: Any) -> Test:
        needles = tuple(needle.casefold() for needle in string_arguments(argument, f"text_i{name}"))
        return _text_test(lambda text: matches(text.casefold(), needles))

    operator(f"text_{name}")(cased)
    operator(f"text_i{name}")(uncased)


_text_operator("contains", lambda text, needles: any(needle in text for needle in needles))
_text_operator("prefix", str.startswith)
_text_operator("suffix", str.endswith)


@operator("text_eq")
def _text_eq(argument: Any) -> Test:
    expected = frozenset(string_arguments(argument, "text_eq"))
    return _text_test(lambda text: text in expected)


@operator("text_ieq")
def _text_ieq(argument: Any) -> Test:
    expected = frozenset(value.casefold() for value in string_arguments(argument, "text_ieq"))

    def test(value: Any) -> bool:  # written out: the most common Sigma test, one call per value
        if type(value) is str:
            return value in expected or value.casefold() in expected
        if value is None:
            return False
        return any(text in expected or text.casefold() in expected for text in texts(value))

    return handles_lists(test)


@operator("text_regex")
def _text_regex(argument: Any) -> Test:
    """RE2 patterns searched in the text (flags inline: `(?i)`, `(?s)`, `(?m)`); any pattern may match."""
    patterns = string_arguments(argument, "text_regex")
    if not patterns:
        return lambda value: False
    for pattern in patterns:  # validate each on its own so the error names the bad one
        regex_test(pattern, full=False)
    return _text_test(regex_test("|".join(f"(?:{p})" for p in patterns), full=False))


def _casefolded_texts(value: Any) -> set[str]:
    return {text.casefold() for text in texts(value)} if value is not None else set()


def _ieq_field(left: Any, right: Any) -> bool:
    """Some text of one value equals some text of the other, ignoring case."""
    if left is None or right is None:
        return False
    if type(left) is str and type(right) is str:
        return left == right or left.casefold() == right.casefold()
    return not _casefolded_texts(left).isdisjoint(_casefolded_texts(right))


# Field-to-field comparisons: `<field>: {ieq_field: <other field>}`.
RELATIONS: dict[str, Relation] = {"ieq_field": _ieq_field}
