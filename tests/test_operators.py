from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvs_sentinel.detectors.operators import OPERATORS, compile_operator


def matches(name: str, argument: Any, value: Any) -> bool:
    return compile_operator(name, argument)(value)


# ---------------------------------------------------------------- equality and membership
def test_eq_matches_equal_strings_only():
    assert matches("eq", "GetMedia", "GetMedia")
    assert not matches("eq", "GetMedia", "getmedia")
    assert not matches("eq", "GetMedia", "GetMediaX")


def test_eq_follows_json_equality_true_is_not_one():
    assert not matches("eq", True, 1)
    assert not matches("eq", 1, True)
    assert not matches("eq", False, 0)
    assert matches("eq", True, True)


def test_eq_treats_int_and_float_as_the_same_number():
    assert matches("eq", 1, 1.0)
    assert matches("eq", 1.0, 1)
    assert not matches("eq", 1, "1")


def test_ieq_ignores_case():
    assert matches("ieq", "GetMedia", "GETMEDIA")
    assert not matches("ieq", "GetMedia", "GetMedia2")
    assert not matches("ieq", "1", 1)


def test_in_matches_any_listed_value_with_json_equality():
    test = compile_operator("in", ["a", 2, True])
    assert test("a")
    assert test(2.0)
    assert test(True)
    assert not test(1)
    assert not test("2")
    assert not test("A")


def test_iin_ignores_case():
    test = compile_operator("iin", ["DeleteStream", "UpdateStream"])
    assert test("deletestream")
    assert test("UPDATESTREAM")
    assert not test("CreateStream")


def test_list_value_matches_when_any_element_matches():
    assert matches("eq", "b", ["a", "b"])
    assert matches("cidr", "10.0.0.0/8", ["AWS Internal", "10.1.2.3"])
    assert not matches("eq", "c", ["a", "b"])
    assert not matches("eq", "a", [])


def test_absent_value_matches_nothing_but_exists_false():
    for name, argument in [("eq", "x"), ("in", ["x"]), ("prefix", ""), ("regex", ".*"), ("glob", "*")]:
        assert not matches(name, argument, None), name
    assert matches("exists", False, None)
    assert not matches("exists", True, None)
    assert matches("exists", True, "")
    assert not matches("exists", False, "x")


# ---------------------------------------------------------------- string operators
@pytest.mark.parametrize(
    ("name", "argument", "hit", "miss"),
    [
        (
            "prefix",
            "arn:aws:kinesisvideo:",
            "arn:aws:kinesisvideo:us-east-1:1:stream/s",
            "ARN:AWS:KINESISVIDEO:x",
        ),
        ("iprefix", "arn:aws:kinesisvideo:", "ARN:AWS:KINESISVIDEO:x", "arn:aws:s3:::b"),
        ("suffix", "/Admin", "arn:aws:iam::1:role/Admin", "arn:aws:iam::1:role/admin"),
        ("isuffix", "/Admin", "arn:aws:iam::1:role/ADMIN", "arn:aws:iam::1:role/Admins"),
        ("contains", "Media", "GetMediaForFragmentList", "getmedia"),
        ("icontains", "Media", "getmediaforfragmentlist", "GetClip"),
    ],
)
def test_string_operators_and_case_insensitive_variants(name: str, argument: str, hit: str, miss: str):
    assert matches(name, argument, hit)
    assert not matches(name, argument, miss)
    assert not matches(name, argument, 42)


def test_string_operators_accept_a_list_of_alternatives():
    assert matches("prefix", ["Get", "List"], "ListStreams")
    assert matches("suffix", ["Stream", "Streams"], "ListStreams")
    assert matches("contains", ["x", "Media"], "GetMedia")
    assert not matches("prefix", [], "anything")


@pytest.mark.parametrize(
    ("name", "argument", "value", "expected"),
    [
        ("gt", 5, 6, True),
        ("gt", 5, 5, False),
        ("gte", 5, 5.0, True),
        ("lt", 5, "4", True),
        ("lte", 5, "5.5", False),
        ("gt", 0, True, False),
        ("gt", 0, "nan", False),
        ("lt", 0, "not a number", False),
    ],
)
def test_numeric_comparisons(name: str, argument: float, value: Any, expected: bool):
    assert matches(name, argument, value) is expected


def test_numeric_comparison_of_a_huge_json_integer_does_not_raise():
    # JSON integers have no size limit and msgspec decodes them to Python ints.
    assert matches("gt", 1, 10**400)
    assert not matches("lt", 1, 10**400)


# ---------------------------------------------------------------- cidr and is_ip
def test_cidr_matches_ipv4_inside_the_network():
    test = compile_operator("cidr", ["10.0.0.0/8", "192.168.1.0/24"])
    assert test("10.200.3.4")
    assert test("192.168.1.255")
    assert not test("192.168.2.1")
    assert not test("11.0.0.1")


def test_cidr_matches_ipv6_and_not_across_versions():
    test = compile_operator("cidr", "2001:db8::/32")
    assert test("2001:db8:0:1::5")
    assert test("2001:DB8::1")
    assert not test("2001:db9::1")
    assert not test("10.0.0.1")
    assert not compile_operator("cidr", "0.0.0.0/0")("::1")


def test_cidr_unwraps_ipv4_mapped_ipv6():
    assert matches("cidr", "203.0.113.0/24", "::ffff:203.0.113.7")
    assert not matches("cidr", "203.0.113.0/24", "::ffff:198.51.100.7")


def test_cidr_accepts_a_host_address_as_network():
    assert matches("cidr", "203.0.113.7", "203.0.113.7")
    assert matches("cidr", "10.1.2.3/8", "10.9.9.9")  # host bits set: not strict


@pytest.mark.parametrize(
    "value",
    [
        "AWS Internal",
        "kinesisvideo.amazonaws.com",
        "225.01.00.16",
        "",
        " 10.0.0.1",
        "10.0.0.1/8",
        "abc",
        "ffff",
        "x" * 10_000_000,
        "1" * 10_000_000,
        42,
        True,
        {"ip": "10.0.0.1"},
    ],
)
def test_cidr_ignores_non_ip_values(value: Any):
    assert not matches("cidr", "0.0.0.0/0", value)
    assert not matches("cidr", "::/0", value)
    assert not matches("is_ip", True, value)


def test_is_ip_tells_addresses_from_service_dns_names():
    assert matches("is_ip", True, "198.51.100.1")
    assert matches("is_ip", True, "::ffff:198.51.100.1")
    assert matches("is_ip", False, "kinesisvideo.amazonaws.com")
    assert matches("is_ip", False, "AWS Internal")
    assert not matches("is_ip", False, "198.51.100.1")
    assert not matches("is_ip", False, 5)


# ---------------------------------------------------------------- glob
def test_glob_star_spans_slashes_and_colons():
    test = compile_operator("glob", "arn:aws:iam::*:role/*")
    assert test("arn:aws:iam::123456789012:role/path/to/Admin")
    assert not test("arn:aws:iam::123456789012:user/bob")


def test_glob_question_mark_is_exactly_one_character():
    test = compile_operator("glob", "Get?")
    assert test("GetX")
    assert not test("Get")
    assert not test("GetXY")


def test_glob_must_match_the_whole_value():
    assert not matches("glob", "Get*", "xGetMedia")
    assert not matches("glob", "*Media", "GetMediaX")
    assert matches("glob", "*Media*", "GetMediaX")


def test_glob_star_spans_newlines():
    assert matches("glob", "a*b", "a\n\nb")


def test_glob_treats_regex_metacharacters_literally():
    test = compile_operator("glob", "a.b+(c)[d]|e$^{2}*")
    assert test("a.b+(c)[d]|e$^{2}tail")
    assert not test("aXb+(c)[d]|e$^{2}tail")
    assert not test("a.bb(c)[d]|e$^{2}")
    assert matches("glob", "a.b", "a.b")
    assert not matches("glob", "a.b", "axb")
    assert matches("glob", "back\\slash*", "back\\slash!")


def test_glob_without_wildcards_is_exact_equality():
    assert matches("glob", ["GetMedia", "GetClip"], "GetClip")
    assert not matches("glob", "GetMedia", "getmedia")


def test_iglob_ignores_case_with_and_without_wildcards():
    assert matches("iglob", "arn:aws:iam::*:role/admin*", "ARN:AWS:IAM::1:ROLE/AdminRole")
    assert matches("iglob", "GetMedia", "GETMEDIA")
    assert not matches("iglob", "Get?", "GETXY")


def test_glob_list_matches_any_pattern():
    test = compile_operator("glob", ["*Stream", "Get*"])
    assert test("DeleteStream")
    assert test("GetClip")
    assert not test("ListTagsForResource")


# ---------------------------------------------------------------- regex
def test_regex_searches_anywhere_in_the_value():
    assert matches("regex", r"Get(Media|Clip)", "xxGetClipyy")
    assert not matches("regex", r"^Get", "xGet")
    assert not matches("regex", "a", 1)


def test_iregex_ignores_case():
    assert matches("iregex", "^getmedia$", "GetMedia")
    assert not matches("regex", "^getmedia$", "GetMedia")


def test_regex_list_matches_any_pattern():
    test = compile_operator("regex", ["^Delete", "Policy$"])
    assert test("DeleteStream")
    assert test("PutRolePolicy")
    assert not test("GetMedia")
    assert not matches("regex", [], "anything")


def test_regex_runs_catastrophic_backtracking_pattern_in_linear_time():
    # On a backtracking engine this would not finish; RE2 answers (correctly) at once.
    test = compile_operator("regex", "(a+)+$")
    assert not test("a" * 50_000 + "!" + "b")
    assert test("a" * 50_000 + "!" + "a")
    assert not compile_operator("regex", "^(a+)+$")("a" * 50_000 + "!")


# ---------------------------------------------------------------- invalid arguments
@pytest.mark.parametrize(
    ("name", "argument", "message"),
    [
        ("nope", "x", "unknown operator 'nope'"),
        ("eq", ["a"], "eq takes"),
        ("eq", None, "eq takes"),
        ("eq", {"a": 1}, "eq takes"),
        ("in", "a", "in takes a list"),
        ("in", [["a"]], "in takes a list"),
        ("in", [None], "in takes a list"),
        ("ieq", 5, "ieq takes a string"),
        ("iin", [1], "iin takes a string"),
        ("glob", 5, "glob takes a string"),
        ("glob", ["a", 1], "glob takes a string"),
        ("regex", "(", "invalid regular expression '('"),
        ("regex", ["ok", "a(?<=b)"], "invalid regular expression 'a(?<=b)'"),
        ("iregex", "[", "invalid regular expression"),
        ("prefix", 1, "prefix takes"),
        ("contains", {"a": 1}, "contains takes"),
        ("cidr", "10.0.0.0/33", "'10.0.0.0/33' is not an IPv4 or IPv6 network"),
        ("cidr", ["10.0.0.0/8", "office"], "'office' is not"),
        ("cidr", 10, "cidr takes"),
        ("exists", "yes", "exists takes true or false"),
        ("is_ip", 1, "is_ip takes true or false"),
        ("gt", "5", "gt takes a number"),
        ("lte", True, "lte takes a number"),
    ],
)
def test_invalid_argument_raises_value_error_naming_the_problem(name: str, argument: Any, message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_operator(name, argument)


def test_ieq_with_an_empty_list_raises_value_error():
    with pytest.raises(ValueError, match="ieq"):
        compile_operator("ieq", [])


def test_unknown_operator_error_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: ") as caught:
        compile_operator("regexx", "a")
    assert "regex" in str(caught.value)
    assert "cidr" in str(caught.value)


# ---------------------------------------------------------------- robustness
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)

ARGUMENTS: dict[str, Any] = {
    "eq": "x",
    "ieq": "x",
    "in": ["x", 1, True],
    "iin": ["x"],
    "glob": ["a*", "b?c"],
    "iglob": "A*",
    "regex": ["^a", "b$"],
    "iregex": "a.b",
    "prefix": "a",
    "iprefix": "A",
    "suffix": "z",
    "isuffix": "Z",
    "contains": "b",
    "icontains": "B",
    "exists": True,
    "gt": 1,
    "gte": 1.5,
    "lt": -1,
    "lte": 0,
    "cidr": ["10.0.0.0/8", "2001:db8::/32"],
    "is_ip": True,
    "text_eq": "x",
    "text_ieq": ["X", "true", "1"],
    "text_contains": "b",
    "text_icontains": ["B", '"a"'],
    "text_prefix": "a",
    "text_iprefix": "A",
    "text_suffix": "z",
    "text_isuffix": "Z",
    "text_regex": ["(?i)^a", "b$"],
}


def test_every_operator_is_covered_by_the_robustness_property():
    assert set(ARGUMENTS) == set(OPERATORS)


COMPILED = {name: compile_operator(name, argument) for name, argument in ARGUMENTS.items()}


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_no_operator_raises_on_arbitrary_json(value: Any):
    for test in COMPILED.values():
        assert test(value) in (True, False)
