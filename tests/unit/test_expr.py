"""The expression language: parsing, type errors and the Python evaluator's semantics.

Expected values are worked out by hand from the documented semantics
(docs/lab/transforms.md), never by asking the evaluator. Spark's form is held to the same
values by tests/integration/test_expr_parity.py.
"""

from __future__ import annotations

import pytest

from lambdalab.errors import DefinitionError
from views import saferegex
from views.expr import ExprError, fields_of, parse, to_python

FIELDS = {
    "url": "string",
    "ref": "string",
    "n": "int",
    "m": "int",
    "x": "float",
    "ok": "bool",
    "ts": "timestamp",
}
EVENT = {
    "url": "https://Bob@Shop.Example.COM:8443/a/B?q=1#f",
    "ref": None,
    "n": 7,
    "m": -2,
    "x": 2.5,
    "ok": True,
    "ts": "2026-03-01T23:59:58.123Z",  # a Sunday
}
BIG = 2**63 - 1


def run(text: str, **changes: object) -> object:
    return to_python(parse(text, FIELDS))({**EVENT, **changes})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n + m", 5),
        ("n * m - 1", -15),
        ("n / m", -3.5),
        ("n // m", -3),  # truncated toward zero, not floored (-4)
        ("-7 // 2", -3),
        ("n % m", 1),  # sign of the dividend
        ("-7 % 3", -1),
        ("x % 1.0", 0.5),
        ("-x % 2.0", -0.5),
        ("n + x", 9.5),
        ("n / 0", None),
        ("n // 0", None),
        ("n % 0", None),
        ("x / 0.0", None),
        (f"{BIG} + 1", None),  # int64 overflow is NULL
        ("-9223372036854775808 // -1", None),
        ("-(-9223372036854775808)", None),
        ("-9223372036854775808 % -1", 0),
        ("1.0e308 * 10.0", None),  # not finite
        ("floor(x)", 2),
        ("floor(-x)", -3),
        ("floor(1.0e19)", None),
        ("n + null", None),
        ("(n + 1) * 2", 16),
        ("n + 1 * 2", 9),
    ],
)
def test_arithmetic(text: str, expected: object) -> None:
    got = run(text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n > m and ok", True),
        ("ref == 'x'", None),
        ("ref == 'x' and false", False),  # three-valued: NULL and false is false
        ("ref == 'x' or true", True),
        ("ref == 'x' or false", None),
        ("not ref == 'x'", None),
        ("ref is null", True),
        ("ref is not null", False),
        ("n == 7.0", True),  # the int becomes a float
        ("9007199254740993 == 9007199254740992.0", True),  # ... in both layers
        ("'b' > 'a'", True),
        ("ok == true", True),
        ("coalesce(ref, url_host(url), 'none')", "Shop.Example.COM"),
        ("coalesce(ref, null)", None),
        ("if(n > 5, 'big', 'small')", "big"),
        ("if(ref == 'x', 1, 2)", 2),  # a NULL condition takes the else branch
        ("if(ok, n, x)", 7.0),
    ],
)
def test_logic_and_null(text: str, expected: object) -> None:
    got = run(text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lower(url_host(url))", "shop.example.com"),
        ("url_path(url)", "/a/B"),
        ("url_host('no scheme/here')", None),
        ("url_host('http://')", ""),
        ("url_path('http://h')", ""),
        ("upper('straße é')", "STRAßE é"),  # ASCII letters only
        ("lower('ÀB')", "Àb"),
        ("length('naïve 🙂')", 7),  # code points
        ("substring('abcdef', 2, 3)", "bcd"),
        ("substring('ab', 5, 3)", ""),
        ("concat('a', ref)", None),
        ("concat('a', '-', 'b')", "a-b"),
        ("regex_extract(url, '/([a-z]+)/', 1)", "a"),
        ("regex_extract(url, 'zzz(z)', 1)", None),  # no match
        ("regex_extract('ab', 'a(x)?b', 1)", ""),  # group did not take part
        ("regex_extract('x = ''q''', '''([a-z]*)''', 1)", "q"),
        ("hour(ts)", 23),
        ("minute(ts)", 59),
        ("day_of_week(ts)", 7),
        ("date(ts)", "2026-03-01"),
        ("epoch_ms(ts)", 1772409598123),
        ("ts > '2026-03-01'", None),
    ],
)
def test_functions(text: str, expected: object) -> None:
    if text == "ts > '2026-03-01'":  # timestamps compare with timestamps only
        with pytest.raises(ExprError, match="one type"):
            parse(text, FIELDS)
        return
    got = run(text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty expression"),
        ("url +", "unexpected end"),
        ("nope == 1", "unknown field 'nope'"),
        ("eval(url)", "unknown function 'eval'"),
        ("url.lower()", "unexpected character '.'"),
        ("__import__('os')", "unknown function '__import__'"),
        ("to_float(n)", "unknown function 'to_float'"),
        ("n + url", r"operator '\+' takes numbers"),
        ("x // 2.0", "ints"),
        ("lower(n)", r"lower\(\) takes \(string\)"),
        ("if(n, 1, 2)", "bool condition"),
        ("if(ok, 1, 'a')", "one type"),
        ("n and ok", "bools"),
        ("substring(url, 0, 2)", "start >= 1"),
        ("substring(url, n, 2)", "literal"),
        ("regex_extract(url, ref, 1)", "literal"),
        ("regex_extract(url, '(a)', 2)", "group 2"),
        ("99999999999999999999", "64-bit"),
        ("(n", r"expected '\)'"),
        ("n n", "unexpected 'n'"),
    ],
)
def test_errors_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ExprError, match=problem):
        parse(text, FIELDS)


@pytest.mark.parametrize(
    "pattern",
    [r"\bword", r"(?i)a", r"(?P<n>a)", r"(a)\1", r"a(?=b)", r"[a[b]]", r"a{,2}", "a**", "x{"],
)
def test_regex_outside_the_common_subset_is_refused(pattern: str) -> None:
    with pytest.raises(DefinitionError, match="regex"):
        saferegex.check(pattern)


@pytest.mark.parametrize(
    "pattern", [r"^(\w+)\.(\d{2,4})$", r"[^/?#]*", r"a+?b|c", r"[\-_.a-z0-9]+", r"(?:ab)*x\?"]
)
def test_regex_in_the_common_subset_is_accepted(pattern: str) -> None:
    assert saferegex.check(pattern).pattern == pattern


def test_fields_of_lists_what_an_expression_reads() -> None:
    assert fields_of(parse("coalesce(ref, lower(url)) == 'a' and n > 1", FIELDS)) == {
        "ref",
        "url",
        "n",
    }
