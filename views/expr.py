"""The expression language of view transforms: parsed once, run by Spark and by Python.

A view's ``where`` filter and ``derive``d fields are small expressions over the fields of
an event (docs/lab/transforms.md lists every operator and function). This module holds
the syntax: the tokenizer, a recursive-descent parser and the type check, which turn the
text into a typed :class:`Node` tree. The closed set of operators and functions, each
with its type rule, its Python form and its Spark form side by side, is
:mod:`views.functions`; :func:`to_python` and :func:`to_spark` walk a tree with it.

There is no ``eval``, no attribute access and no way to name anything outside that set:
an expression can only read the event's fields and apply the listed functions. Every
operation is total: where Python would raise or Spark (in ANSI mode) would fail the
job -- division by zero, integer overflow, a non-finite float -- the result is NULL in
both, so a bad value is a NULL, never a crashed layer.

Grammar (lowest precedence first)::

    expr  := or ;  or := and ("or" and)* ;  and := not ("and" not)*
    not   := "not" not | cmp
    cmp   := sum [("==" | "!=" | "<" | "<=" | ">" | ">=") sum | "is" ["not"] "null"]
    sum   := prod (("+" | "-") prod)* ;  prod := unary (("*" | "/" | "//" | "%") unary)*
    unary := "-" unary | atom
    atom  := literal | field | name "(" [expr ("," expr)*] ")" | "(" expr ")"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambdalab.errors import DefinitionError

if TYPE_CHECKING:
    from pyspark.sql import Column

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
KEYWORDS = frozenset({"and", "or", "not", "is", "null", "true", "false"})
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
TOKEN = re.compile(
    r"""\s*(?:
      (?P<float>[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
    | (?P<int>[0-9]+)
    | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|//|[<>+\-*/%(),])
    )""",
    re.VERBOSE,
)


class ExprError(DefinitionError):
    """An expression that does not parse or does not type-check; the message says where."""


@dataclass(frozen=True)
class Node:
    """One typed node: ``lit`` (value), ``field`` (value = name), or an operator/function.

    ``type`` is one of string, int, float, bool, timestamp, or null (the NULL literal,
    which takes the type of what it is combined with).
    """

    op: str
    type: str
    args: tuple[Node, ...] = ()
    value: Any = None


def parse(text: str, fields: Mapping[str, str]) -> Node:
    """The typed tree of ``text`` over fields of the given types.

    Raises:
        ExprError: a syntax error, an unknown field or function, or a type error, with the
            position and the offending token.
    """
    return _Parser(text, fields).parse()


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, str]) -> None:
        self.text, self.fields = text, fields
        self.tokens = _tokenize(text)
        self.i = 0

    def parse(self) -> Node:
        if not self.tokens:
            msg = "empty expression"
            raise ExprError(msg)
        node = self.or_()
        if self.i < len(self.tokens):
            self.fail(f"unexpected {self.tokens[self.i][1]!r}")
        return node

    def fail(self, why: str) -> None:
        pos = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        msg = f"{why} at position {pos} of {self.text!r}"
        raise ExprError(msg)

    def peek(self, *values: str) -> str | None:
        if self.i < len(self.tokens):
            kind, value, _ = self.tokens[self.i]
            if kind in ("op", "name") and value in values:
                return value
        return None

    def take(self, *values: str) -> str | None:
        found = self.peek(*values)
        if found is not None:
            self.i += 1
        return found

    def expect(self, value: str) -> None:
        if self.take(value) is None:
            self.fail(f"expected {value!r}")

    def call(self, op: str, *args: Node) -> Node:
        from views.functions import build

        return build(op, list(args))

    def or_(self) -> Node:
        node = self.and_()
        while self.take("or"):
            node = self.call("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.take("and"):
            node = self.call("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.take("not"):
            return self.call("not", self.not_())
        return self.cmp()

    def cmp(self) -> Node:
        node = self.sum()
        op = self.take(*COMPARISONS)
        if op is not None:
            return self.call(op, node, self.sum())
        if self.take("is"):
            negated = self.take("not") is not None
            self.expect("null")
            return self.call("is not null" if negated else "is null", node)
        return node

    def sum(self) -> Node:
        node = self.prod()
        while (op := self.take("+", "-")) is not None:
            node = self.call(op, node, self.prod())
        return node

    def prod(self) -> Node:
        node = self.unary()
        while (op := self.take("*", "/", "//", "%")) is not None:
            node = self.call(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.take("-"):
            if self.i < len(self.tokens) and self.tokens[self.i][0] in ("int", "float"):
                return self.literal(negative=True)  # so that -9223372036854775808 is a literal
            return self.call("neg", self.unary())
        return self.atom()

    def atom(self) -> Node:
        if self.i >= len(self.tokens):
            self.fail("unexpected end")
        kind, value, _ = self.tokens[self.i]
        if kind in ("int", "float", "str"):
            return self.literal()
        if self.take("("):
            node = self.or_()
            self.expect(")")
            return node
        if kind != "name":
            self.fail(f"unexpected {value!r}")
        self.i += 1
        if value in ("true", "false"):
            return Node("lit", "bool", value=value == "true")
        if value == "null":
            return Node("lit", "null")
        if value in KEYWORDS:
            self.i -= 1
            self.fail(f"unexpected {value!r}")
        if self.take("("):
            return self.function(value)
        if value not in self.fields:
            self.i -= 1
            self.fail(f"unknown field {value!r} (fields: {', '.join(sorted(self.fields))})")
        return Node("field", self.fields[value], value=value)

    def function(self, name: str) -> Node:
        from views.functions import FUNCTIONS, OPERATORS

        if name not in FUNCTIONS or name in OPERATORS:
            self.i -= 2
            named = sorted(set(FUNCTIONS) - OPERATORS)
            self.fail(f"unknown function {name!r} (one of: {', '.join(named)})")
        args: list[Node] = []
        if not self.take(")"):
            args.append(self.or_())
            while self.take(","):
                args.append(self.or_())
            self.expect(")")
        return self.call(name, *args)

    def literal(self, *, negative: bool = False) -> Node:
        kind, text, _ = self.tokens[self.i]
        self.i += 1
        if kind == "str":
            return Node("lit", "string", value=text[1:-1].replace(text[0] * 2, text[0]))
        if kind == "int":
            number = -int(text) if negative else int(text)
            if not INT_MIN <= number <= INT_MAX:
                self.i -= 1
                self.fail(f"integer {text} is outside the 64-bit range")
            return Node("lit", "int", value=number)
        real = -float(text) if negative else float(text)
        if real in (float("inf"), float("-inf")):
            self.i -= 1
            self.fail(f"float {text} is too large")
        return Node("lit", "float", value=real)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) of each token; a character that starts none is an error."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            start = len(text) - len(text[pos:].lstrip())
            msg = f"unexpected character {text[start]!r} at position {start} of {text!r}"
            raise ExprError(msg)
        out.append((m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    return out


def fields_of(node: Node) -> set[str]:
    """The names of the fields an expression reads."""
    if node.op == "field":
        return {str(node.value)}
    return set().union(*(fields_of(a) for a in node.args)) if node.args else set()


# --- the two back-ends --------------------------------------------------------------------

Evaluator = Callable[[dict[str, Any]], Any]


def to_python(node: Node) -> Evaluator:
    """A closure computing the expression of one event (a dict of field values).

    Compiled once per definition; the speed layer calls it per event in its hot loop.
    """
    from operator import itemgetter

    from views.functions import FUNCTIONS

    if node.op == "lit":
        value = node.value
        return lambda _event: value
    if node.op == "field":
        return itemgetter(str(node.value))
    return FUNCTIONS[node.op].py(node, [to_python(a) for a in node.args])


SPARK_TYPES = {
    "string": "string",
    "int": "bigint",
    "float": "double",
    "bool": "boolean",
    "timestamp": "timestamp",
    "null": "string",
}


def to_spark(node: Node) -> Column:
    """The Spark column computing the expression over a DataFrame with the fields as columns.

    Timestamps are Spark timestamps (session time zone UTC, ``batch.spark``); ints are
    bigint, so every integer literal is cast to bigint (Spark types a small literal int).
    """
    from pyspark.sql import functions as F

    from views.functions import FUNCTIONS

    if node.op == "lit":
        return F.lit(node.value).cast(SPARK_TYPES[node.type])
    if node.op == "field":
        return F.col(f"`{node.value}`")
    return FUNCTIONS[node.op].spark(node, [to_spark(a) for a in node.args])
