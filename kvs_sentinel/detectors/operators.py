"""The operator table of the detector language: name → factory compiling an argument into a value test.

Every test takes any JSON value (event fields are attacker-controlled) and returns a bool: a wrong type,
a non-IP string for `cidr`, a huge string, never raises and never hangs. Regexes and globs run on RE2, so
matching is linear in the input. A list value (a CloudTrail array, or a path that fanned out through one)
matches when any element matches; an absent value matches nothing except `exists: false`.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import re2

Test = Callable[[Any], bool]
Factory = Callable[[Any], Test]

OPERATORS: dict[str, Factory] = {}
# Operators whose test must also see absent values (all others answer False for them without being called).
SEES_ABSENT = frozenset({"exists"})
_MAX_IP_TEXT = 64


def operator(*names: str) -> Callable[[Factory], Factory]:
    """Register an operator factory under one or more names."""

    def register(factory: Factory) -> Factory:
        for name in names:
            OPERATORS[name] = factory
        return factory

    return register


def compile_operator(name: str, argument: Any) -> Test:
    """Compile `name: argument`; ValueError says what is wrong with the argument."""
    factory = OPERATORS.get(name)
    if factory is None:
        raise ValueError(f"unknown operator {name!r}; known: {', '.join(sorted(OPERATORS))}")
    test = factory(argument)
    if name in SEES_ABSENT:
        return test
    return _any_element(test)


def _any_element(test: Test) -> Test:
    def guarded(value: Any) -> bool:
        if value is None:
            return False
        if type(value) is list:
            return any(test(element) for element in value if element is not None)
        return test(value)

    return guarded


def _strings(argument: Any, what: str) -> list[str]:
    # An empty list is allowed (a named list a deployment left empty) and matches nothing.
    values = argument if isinstance(argument, list) else [argument]
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"{what} takes a string or a list of strings, got {argument!r}")
    return values


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _same(left: Any, right: Any) -> bool:
    # JSON equality: true is not 1, 1 is 1.0.
    return (type(left) is bool) == (type(right) is bool) and left == right


@operator("eq")
def _eq(argument: Any) -> Test:
    if not _scalar(argument) or argument is None:
        raise ValueError(f"eq takes a string, number or boolean, got {argument!r}")
    return lambda value: _same(value, argument)


@operator("ieq")
def _ieq(argument: Any) -> Test:
    expected = _strings(argument, "ieq")[0].casefold()
    return lambda value: type(value) is str and value.casefold() == expected


@operator("in")
def _in(argument: Any) -> Test:
    if not isinstance(argument, list) or not all(_scalar(v) and v is not None for v in argument):
        raise ValueError(f"in takes a list of strings, numbers or booleans, got {argument!r}")
    strings = frozenset(value for value in argument if type(value) is str)
    others = [value for value in argument if type(value) is not str]
    if not others:
        return lambda value: type(value) is str and value in strings
    return lambda value: (value in strings) if type(value) is str else any(_same(value, o) for o in others)


@operator("iin")
def _iin(argument: Any) -> Test:
    expected = frozenset(value.casefold() for value in _strings(argument, "iin"))
    return lambda value: type(value) is str and value.casefold() in expected


def glob_to_regex(pattern: str) -> str:
    """IAM-style globs: `*` is any run of characters (`/` and `:` included), `?` is one character."""
    parts = []
    for char in pattern:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return "".join(parts)


def _regex_test(pattern: str, *, full: bool) -> Test:
    try:
        compiled = re2.compile(pattern)
    except re2.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    method = compiled.fullmatch if full else compiled.search
    return lambda value: type(value) is str and method(value) is not None


def _glob(argument: Any, *, ignore_case: bool) -> Test:
    patterns = _strings(argument, "glob")
    if not any("*" in p or "?" in p for p in patterns):
        return _iin(patterns) if ignore_case else _in(patterns)
    flags = "(?is)" if ignore_case else "(?s)"
    return _regex_test(flags + "|".join(f"(?:{glob_to_regex(p)})" for p in patterns), full=True)


@operator("glob")
def _glob_case(argument: Any) -> Test:
    return _glob(argument, ignore_case=False)


@operator("iglob")
def _glob_nocase(argument: Any) -> Test:
    return _glob(argument, ignore_case=True)


def _regex(argument: Any, *, ignore_case: bool) -> Test:
    patterns = _strings(argument, "regex")
    if not patterns:
        return lambda value: False
    for pattern in patterns:  # validate each on its own so the error names the bad one
        _regex_test(pattern, full=False)
    flags = "(?i)" if ignore_case else ""
    return _regex_test(flags + "|".join(f"(?:{p})" for p in patterns), full=False)


@operator("regex")
def _regex_case(argument: Any) -> Test:
    return _regex(argument, ignore_case=False)


@operator("iregex")
def _regex_nocase(argument: Any) -> Test:
    return _regex(argument, ignore_case=True)


@operator("prefix")
def _prefix(argument: Any) -> Test:
    prefixes = tuple(_strings(argument, "prefix"))
    return lambda value: type(value) is str and value.startswith(prefixes)


@operator("iprefix")
def _iprefix(argument: Any) -> Test:
    prefixes = tuple(p.casefold() for p in _strings(argument, "iprefix"))
    return lambda value: type(value) is str and value.casefold().startswith(prefixes)


@operator("suffix")
def _suffix(argument: Any) -> Test:
    suffixes = tuple(_strings(argument, "suffix"))
    return lambda value: type(value) is str and value.endswith(suffixes)


@operator("isuffix")
def _isuffix(argument: Any) -> Test:
    suffixes = tuple(s.casefold() for s in _strings(argument, "isuffix"))
    return lambda value: type(value) is str and value.casefold().endswith(suffixes)


@operator("contains")
def _contains(argument: Any) -> Test:
    needles = _strings(argument, "contains")
    return lambda value: type(value) is str and any(needle in value for needle in needles)


@operator("icontains")
def _icontains(argument: Any) -> Test:
    needles = [n.casefold() for n in _strings(argument, "icontains")]
    return lambda value: type(value) is str and any(needle in value.casefold() for needle in needles)


@operator("exists")
def _exists(argument: Any) -> Test:
    if not isinstance(argument, bool):
        raise ValueError(f"exists takes true or false, got {argument!r}")
    if argument:
        return lambda value: value is not None
    return lambda value: value is None


def _number(value: Any) -> float | None:
    if type(value) is int or type(value) is float:
        return float(value)
    if type(value) is str and len(value) < 40:
        try:
            number = float(value)
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def _compare(name: str, argument: Any, check: Callable[[float, float], bool]) -> Test:
    if type(argument) not in (int, float):
        raise ValueError(f"{name} takes a number, got {argument!r}")
    limit = float(argument)

    def test(value: Any) -> bool:
        number = _number(value)
        return number is not None and check(number, limit)

    return test


@operator("gt")
def _gt(argument: Any) -> Test:
    return _compare("gt", argument, lambda a, b: a > b)


@operator("gte")
def _gte(argument: Any) -> Test:
    return _compare("gte", argument, lambda a, b: a >= b)


@operator("lt")
def _lt(argument: Any) -> Test:
    return _compare("lt", argument, lambda a, b: a < b)


@operator("lte")
def _lte(argument: Any) -> Test:
    return _compare("lte", argument, lambda a, b: a <= b)


@lru_cache(maxsize=8192)
def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, with IPv4-mapped IPv6 unwrapped; None for anything else (`AWS Internal`, DNS names)."""
    if len(text) > _MAX_IP_TEXT or not text or not (text[0].isdigit() or text[0] in ":abcdefABCDEF"):
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@operator("cidr")
def _cidr(argument: Any) -> Test:
    networks = []
    for text in _strings(argument, "cidr"):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"cidr: {text!r} is not an IPv4 or IPv6 network") from None
    v4 = [(int(n.network_address), int(n.netmask)) for n in networks if n.version == 4]
    v6 = [(int(n.network_address), int(n.netmask)) for n in networks if n.version == 6]

    def test(value: Any) -> bool:
        if type(value) is not str:
            return False
        address = parse_ip(value)
        if address is None:
            return False
        number = int(address)
        table = v4 if address.version == 4 else v6
        return any(number & mask == network for network, mask in table)

    return test


@operator("is_ip")
def _is_ip(argument: Any) -> Test:
    if not isinstance(argument, bool):
        raise ValueError(f"is_ip takes true or false, got {argument!r}")
    return lambda value: type(value) is str and (parse_ip(value) is not None) is argument
