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
    if name in SEES_ABSENT or getattr(test, "handles_lists", False):
        return test
    return _any_element(test)


def _inlinable(test: Test, template: str, constant: Any = None) -> Test:
    """Give the code generator this test as an expression, so a detector runs it without a call.

    `template` must compute exactly what `test` does: `{value}` is the value's expression (used once),
    `{held}` a fresh name holding it, `{constant}` a name bound to `constant`. The two forms are written
    side by side here; tests/test_codegen.py checks generated code against the tests themselves.
    """
    test.inline = (template, constant)  # type: ignore[attr-defined]
    return test


def handles_lists(test: Test) -> Test:
    """Mark a test that already answers for None and lists itself (saves a call per value on hot paths)."""
    test.handles_lists = True  # type: ignore[attr-defined]
    return test


def _any_element(test: Test) -> Test:
    def guarded(value: Any) -> bool:
        if value is None:
            return False
        if type(value) is list:
            return any(test(element) for element in value if element is not None)
        return test(value)

    return guarded


CACHE_ENTRIES = 4096
CACHE_VALUE_LENGTH = 256


def remembered(test: Callable[[str], bool]) -> Test:
    """A string test with a bounded cache of its answers.

    Principal ARNs, source IPs and user agents repeat across events, and a regex or CIDR test costs
    microseconds in Python. Only short values are kept and the cache is emptied when full, so hostile
    input can neither grow memory nor slow matching down.
    """
    cache: dict[str, bool] = {}

    def cached(value: Any) -> bool:
        if type(value) is not str:
            return type(value) is list and any(cached(element) for element in value)
        answer = cache.get(value)
        if answer is None:
            answer = test(value)
            if len(value) <= CACHE_VALUE_LENGTH:
                if len(cache) >= CACHE_ENTRIES:
                    cache.clear()
                cache[value] = answer
        return answer

    return handles_lists(cached)


def _string_test(test: Callable[[str], bool]) -> Test:
    """A test of strings that answers for lists (any element) and other types (no) itself."""

    def answer(value: Any) -> bool:
        if type(value) is str:
            return test(value)
        return type(value) is list and any(type(v) is str and test(v) for v in value)

    return handles_lists(answer)


def string_arguments(argument: Any, what: str) -> list[str]:
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
    if type(argument) is str:
        # Only a str equals a str, so no type checks: None and dicts are simply unequal.
        return _inlinable(
            handles_lists(lambda value: value == argument or (type(value) is list and argument in value)),
            "(({held} := {value}) == {constant} or (type({held}) is list and {constant} in {held}))",
            argument,
        )
    return lambda value: _same(value, argument)


@operator("ieq")
def _ieq(argument: Any) -> Test:
    if not isinstance(argument, str):
        raise ValueError(f"ieq takes a string, got {argument!r} (use iin for a list)")
    expected = argument.casefold()
    return lambda value: type(value) is str and value.casefold() == expected


@operator("in")
def _in(argument: Any) -> Test:
    if not isinstance(argument, list) or not all(_scalar(v) and v is not None for v in argument):
        raise ValueError(f"in takes a list of strings, numbers or booleans, got {argument!r}")
    strings = frozenset(value for value in argument if type(value) is str)
    others = [value for value in argument if type(value) is not str]
    if not others:

        def test(value: Any) -> bool:
            if type(value) is str:
                return value in strings
            return type(value) is list and any(type(v) is str and v in strings for v in value)

        # the condition of `a if c else b` runs first, so the value is taken there
        return _inlinable(
            handles_lists(test),
            "({held} in {constant} if type({held} := {value}) is str "
            "else (type({held}) is list and any(type(_e) is str and _e in {constant} for _e in {held})))",
            strings,
        )
    return lambda value: (value in strings) if type(value) is str else any(_same(value, o) for o in others)


@operator("iin")
def _iin(argument: Any) -> Test:
    expected = frozenset(value.casefold() for value in string_arguments(argument, "iin"))
    return lambda value: type(value) is str and value.casefold() in expected


def glob_to_regex(pattern: str) -> str:
    """An IAM-style glob as a Python regex that runs in linear time, for `fullmatch` with DOTALL.

    `*` is any run of characters (`/` and `:` included), `?` one character. Pieces between stars are
    matched at their earliest place (which is optimal for globs) inside atomic groups `(?>.*?piece)`, so
    the engine never backtracks into them; only the last star backtracks, once, to find the suffix.
    """
    pieces = ["".join("." if c == "?" else re.escape(c) for c in piece) for piece in pattern.split("*")]
    if len(pieces) == 1:
        return pieces[0]
    head, *middle, tail = pieces
    return head + "".join(f"(?>.*?{piece})" for piece in middle if piece) + ".*" + tail


def _re2_options() -> Any:
    options = re2.Options()
    # RE2 would otherwise write its own C++ log lines (absl's "WARNING: All log messages before
    # absl::InitializeLog()...", "E0000 ... re2.cc") to stderr for a bad pattern; the error we raise says it
    options.log_errors = False
    return options


_RE2_OPTIONS = _re2_options()


def regex_test(pattern: str, *, full: bool) -> Test:
    try:
        compiled = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        problem = exc.args[0] if exc.args else "invalid"
        if isinstance(problem, bytes):
            problem = problem.decode("utf-8", "replace")
        raise ValueError(f"invalid regular expression {pattern!r}: {problem}") from None
    method = compiled.fullmatch if full else compiled.search
    return remembered(lambda value: method(value) is not None)


def _glob(argument: Any, *, ignore_case: bool) -> Test:
    patterns = string_arguments(argument, "glob")
    if not any("*" in p or "?" in p for p in patterns):
        return _iin(patterns) if ignore_case else _in(patterns)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    fullmatch = re.compile("|".join(f"(?:{glob_to_regex(p)})" for p in patterns), flags).fullmatch
    return remembered(lambda value: fullmatch(value) is not None)


@operator("glob")
def _glob_case(argument: Any) -> Test:
    return _glob(argument, ignore_case=False)


@operator("iglob")
def _glob_nocase(argument: Any) -> Test:
    return _glob(argument, ignore_case=True)


def _regex(argument: Any, *, ignore_case: bool) -> Test:
    patterns = string_arguments(argument, "regex")
    if not patterns:
        return lambda value: False
    for pattern in patterns:  # validate each on its own so the error names the bad one
        regex_test(pattern, full=False)
    flags = "(?i)" if ignore_case else ""
    return regex_test(flags + "|".join(f"(?:{p})" for p in patterns), full=False)


@operator("regex")
def _regex_case(argument: Any) -> Test:
    return _regex(argument, ignore_case=False)


@operator("iregex")
def _regex_nocase(argument: Any) -> Test:
    return _regex(argument, ignore_case=True)


def _string_operator(name: str, matches: Callable[[str, tuple[str, ...]], bool]) -> None:
    """Register `name` and its case-insensitive twin `i<name>`, both taking one string or a list."""

    def cased(argument: Any) -> Test:
        needles = tuple(string_arguments(argument, name))
        return _string_test(lambda value: matches(value, needles))

    def uncased(argument: Any) -> Test:
        needles = tuple(needle.casefold() for needle in string_arguments(argument, "i" + name))
        return _string_test(lambda value: matches(value.casefold(), needles))

    OPERATORS[name] = cased
    OPERATORS["i" + name] = uncased


_string_operator("prefix", str.startswith)
_string_operator("suffix", str.endswith)
_string_operator("contains", lambda value, needles: any(needle in value for needle in needles))


@operator("exists")
def _exists(argument: Any) -> Test:
    if not isinstance(argument, bool):
        raise ValueError(f"exists takes true or false, got {argument!r}")
    if argument:
        return _inlinable(lambda value: value is not None, "({value} is not None)")
    return _inlinable(lambda value: value is None, "({value} is None)")


def _number(value: Any) -> float | None:
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:  # JSON allows integers far beyond a float's range
            return math.inf if value > 0 else -math.inf
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


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, with IPv4-mapped IPv6 unwrapped; None for anything else (`AWS Internal`, DNS names)."""
    if len(text) > _MAX_IP_TEXT or not text or not (text[0].isdigit() or text[0] in ":abcdefABCDEF"):
        return None
    return _parse_short_ip(text)


@lru_cache(maxsize=8192)
def _parse_short_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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
    for text in string_arguments(argument, "cidr"):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"cidr: {text!r} is not an IPv4 or IPv6 network") from None
    v4 = [(int(n.network_address), int(n.netmask)) for n in networks if n.version == 4]
    v6 = [(int(n.network_address), int(n.netmask)) for n in networks if n.version == 6]

    def test(value: str) -> bool:
        address = parse_ip(value)
        if address is None:
            return False
        number = int(address)
        table = v4 if address.version == 4 else v6
        return any(number & mask == network for network, mask in table)

    return remembered(test)


@operator("is_ip")
def _is_ip(argument: Any) -> Test:
    if not isinstance(argument, bool):
        raise ValueError(f"is_ip takes true or false, got {argument!r}")
    return remembered(lambda value: (parse_ip(value) is not None) is argument)
