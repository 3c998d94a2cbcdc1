r"""The regular expressions both layers read alike: a checked subset of the two dialects.

``regex_extract`` runs Python's ``re`` in the speed layer and ``java.util.regex`` in
Spark. The two agree on a common core and differ at its edges (``\w`` and ``\b`` are
Unicode-aware in one and not the other, ``.`` and ``$`` know different line terminators,
``[a[b]]`` is a union in Java and a literal in Python, ``{`` is literal in one and an
error in the other). A pattern is therefore checked against this subset, and compiled
with the flags that make the rest identical: Python with ``re.ASCII`` (``\d \w \s`` are
ASCII classes, as in Java), Java with ``(?d)`` (UNIX_LINES: only ``\n`` ends a line for
``.`` and ``$``, as in Python).

Allowed: literal characters; ``.`` ``^`` ``$`` ``|``; groups ``( )`` and ``(?: )``;
quantifiers ``* + ?`` ``{m}`` ``{m,}`` ``{m,n}``, each optionally lazy (``?`` after it);
classes ``[...]`` / ``[^...]`` of literal characters, ranges ``a-z`` and escapes;
escapes ``\d \D \w \W \s \S \t \n \r`` and a backslash before ASCII punctuation.
Everything else (back-references, look-around, named groups, inline flags, ``\b``,
possessive quantifiers, nested classes) is refused with its position.
"""

from __future__ import annotations

import re
import string

from lambdalab.errors import DefinitionError

CLASS_ESCAPES = frozenset("dDwWsStnr")
PUNCTUATION = frozenset(string.punctuation)
QUANTIFIER = re.compile(r"\{[0-9]{1,4}(?:,[0-9]{0,4})?\}")
JAVA_PREFIX = "(?d)"


def check(pattern: str) -> re.Pattern[str]:
    """The Python form of a pattern of the subset (its Java form is :func:`java_form`).

    Raises:
        DefinitionError: the pattern leaves the subset (or does not compile), with where.
    """
    _Scan(pattern).run()
    try:
        return re.compile(pattern, re.ASCII)
    except re.error as exc:
        msg = f"regex {pattern!r} does not compile: {exc}"
        raise DefinitionError(msg) from exc


def java_form(pattern: str) -> str:
    """The pattern as Spark's ``regexp_extract`` / ``rlike`` should read it."""
    return JAVA_PREFIX + pattern


class _Scan:
    def __init__(self, pattern: str) -> None:
        self.p, self.i = pattern, 0
        self.quantifiable = False  # an atom precedes: a quantifier may follow

    def fail(self, why: str) -> None:
        msg = f"regex {self.p!r}: {why} at position {self.i} (see docs/lab/transforms.md)"
        raise DefinitionError(msg)

    def run(self) -> None:
        depth = 0
        while self.i < len(self.p):
            c = self.p[self.i]
            if c == "\\":
                self.escape(inside_class=False)
                self.quantifiable = True
            elif c == "[":
                self.klass()
                self.quantifiable = True
            elif c == "(":
                if self.p.startswith("(?", self.i) and not self.p.startswith("(?:", self.i):
                    self.fail("only plain and (?:...) groups are allowed")
                self.i += 3 if self.p.startswith("(?:", self.i) else 1
                depth += 1
                self.quantifiable = False
            elif c == ")":
                depth -= 1
                if depth < 0:
                    self.fail("unbalanced ')'")
                self.i += 1
                self.quantifiable = True
            elif c in "*+?{":
                self.quantifier()
            elif c in "]}":
                self.fail(f"{c!r} must be escaped")
            else:
                self.i += 1
                self.quantifiable = c not in "|^$"
        if depth:
            self.fail("unbalanced '('")

    def quantifier(self) -> None:
        if not self.quantifiable:
            self.fail("a quantifier must follow a character, class or group")
        if self.p[self.i] == "{":
            m = QUANTIFIER.match(self.p, self.i)
            if m is None:
                self.fail("'{' must start {m}, {m,} or {m,n} (or be escaped)")
                return
            self.i = m.end()
        else:
            self.i += 1
        if self.p.startswith("?", self.i):
            self.i += 1  # lazy
        if self.i < len(self.p) and self.p[self.i] in "*+?{":
            self.fail("a quantifier cannot follow a quantifier")
        self.quantifiable = False

    def escape(self, *, inside_class: bool) -> str | None:
        """Skip an escape; return the literal character it stands for (None for a class)."""
        if self.i + 1 >= len(self.p):
            self.fail("a trailing backslash")
        c = self.p[self.i + 1]
        self.i += 2
        if c in CLASS_ESCAPES:
            return {"t": "\t", "n": "\n", "r": "\r"}.get(c)
        if c in PUNCTUATION:
            return c
        self.i -= 2
        self.fail(f"escape \\{c} is not in the common subset")
        return None

    def klass(self) -> None:
        self.i += 1
        if self.p.startswith("^", self.i):
            self.i += 1
        members = 0
        while True:
            if self.i >= len(self.p):
                self.fail("unterminated '['")
            c = self.p[self.i]
            if c == "]" and members:
                self.i += 1
                return
            if c in "[]&^-":
                self.fail(f"{c!r} inside a class must be escaped (or '-' form a range)")
            low = self.escape(inside_class=True) if c == "\\" else self.plain()
            if self.p.startswith("-", self.i) and not self.p.startswith("-]", self.i):
                self.i += 1
                high = self.escape(inside_class=True) if self.p[self.i] == "\\" else self.plain()
                if low is None or high is None or low > high:
                    self.fail("a range needs two characters in order")
            members += 1

    def plain(self) -> str:
        c = self.p[self.i]
        self.i += 1
        return c
