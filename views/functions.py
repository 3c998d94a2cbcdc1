"""The closed set of operators and functions of view expressions, each in both layers.

One :class:`Function` per name: its type rule, its Python form (a closure built once,
run per event by the speed layer) and its Spark form (a Column), side by side so they
read in parallel. The semantics, defined once (docs/lab/transforms.md):

- NULL in, NULL out (SQL), except ``and``/``or`` (three-valued), ``is [not] null``,
  ``coalesce`` and ``if`` (a NULL condition takes the else branch).
- int op int is int, exact; a result outside int64 is NULL. Any float makes it float
  (the int is converted first, in both layers); a non-finite result is NULL.
- ``/`` is float division; ``//`` integer division truncated toward zero (SQL ``div``);
  ``%`` the remainder with the dividend's sign (SQL, Java; for floats C ``fmod``).
  A zero divisor gives NULL.
- ``lower``/``upper`` map ASCII letters only (Python and the JVM ship different
  Unicode versions); ``length`` and ``substring`` count code points.
- Time parts read a timestamp in UTC; ``day_of_week`` is ISO (Monday 1 .. Sunday 7).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from lambdalab.schema import parse_ts_ms
from views import saferegex
from views.expr import INT_MAX, INT_MIN, ExprError, Node

if TYPE_CHECKING:
    from pyspark.sql import Column

Ev = Callable[[dict[str, Any]], Any]
PyForm = Callable[[Node, list[Ev]], Ev]
SparkForm = Callable[[Node, list["Column"]], "Column"]
Rule = Callable[[str, list[Node]], tuple[str, list[Node]]]
NUMERIC = ("int", "float")
INF = math.inf
ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ASCII_LOWER = ASCII_UPPER.lower()
REGEX_MEMO = 4096  # results remembered per regex call site (cleared when full)
_MISS = object()
URL_HOST = r"^[A-Za-z][A-Za-z0-9+.\-]*://(?:[^/?#]*@)?([^/?#@:]*)"
URL_PATH = r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*([^?#]*)"


@dataclass(frozen=True)
class Function:
    """An operator or function: its type rule and its two forms."""

    rule: Rule
    py: PyForm
    spark: SparkForm


def build(op: str, args: list[Node]) -> Node:
    """The typed node of ``op`` applied to ``args`` (its rule may convert int args to float).

    Raises:
        ExprError: wrong number or types of arguments, naming the function.
    """
    result, args = FUNCTIONS[op].rule(op, args)
    return Node(op, result, tuple(args))


def _f() -> Any:
    """``pyspark.sql.functions``, imported only when a Spark form is built."""
    from pyspark.sql import functions as F

    return F


# --- type rules ---------------------------------------------------------------------------


def _fail(op: str, args: list[Node], expected: str) -> None:
    got = ", ".join(a.type for a in args) or "nothing"
    name = f"{op}()" if op.isidentifier() else f"operator {op!r}"
    msg = f"{name} takes {expected}, got ({got})"
    raise ExprError(msg)


def _as_float(node: Node) -> Node:
    if node.type == "int":
        return Node("to_float", "float", (node,))
    return Node(node.op, "float", node.args, node.value) if node.type == "null" else node


def _unify(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    """One type for all ``args``: equal types, NULL takes the other's, int+float is float."""
    types = {a.type for a in args} - {"null"}
    if not types:
        return "null", args
    if len(types) == 1:
        return types.pop(), args
    if types == set(NUMERIC):
        return "float", [_as_float(a) for a in args]
    _fail(op, args, "arguments of one type")
    raise AssertionError


def _typed(*params: str, result: str) -> Rule:
    def rule(op: str, args: list[Node]) -> tuple[str, list[Node]]:
        if len(args) != len(params) or any(
            a.type not in (p, "null") for a, p in zip(args, params, strict=False)
        ):
            _fail(op, args, f"({', '.join(params)})")
        return result, args

    return rule


def _arith(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    if any(a.type not in (*NUMERIC, "null") for a in args):
        _fail(op, args, "numbers")
    if op == "/":
        return "float", [_as_float(a) for a in args]
    if op == "//":
        if any(a.type == "float" for a in args):
            _fail(op, args, "ints (use floor(a / b) for floats)")
        return "int", args
    kind, args = _unify(op, args)
    return ("int" if kind == "null" else kind), args


def _neg(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    if len(args) != 1 or args[0].type not in (*NUMERIC, "null"):
        _fail("-", args, "(number)")
    return ("int" if args[0].type == "null" else args[0].type), args


def _compare(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    _, args = _unify(op, args)
    return "bool", args


def _logic(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    if any(a.type not in ("bool", "null") for a in args):
        _fail(op, args, "bools")
    return "bool", args


def _any_one(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    if len(args) != 1:
        _fail(op, args, "one argument")
    return "bool", args


def _variadic(kind: str | None) -> Rule:
    def rule(op: str, args: list[Node]) -> tuple[str, list[Node]]:
        if not args:
            _fail(op, args, "at least one argument")
        if kind is not None and any(a.type not in (kind, "null") for a in args):
            _fail(op, args, f"{kind}s")
        return _unify(op, args)

    return rule


def _if(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    if len(args) != 3 or args[0].type not in ("bool", "null"):
        _fail(op, args, "(bool condition, then, else)")
    kind, branches = _unify(op, args[1:])
    return kind, [args[0], *branches]


def _floor(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    if len(args) != 1 or args[0].type not in (*NUMERIC, "null"):
        _fail(op, args, "(number)")
    return "int", args


def _literal(node: Node, kind: str, what: str) -> Any:
    if node.op != "lit" or node.type != kind:
        msg = f"{what} must be a {kind} literal"
        raise ExprError(msg)
    return node.value


def _substring(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    _typed("string", "int", "int", result="string")(op, args)
    start = _literal(args[1], "int", "substring's start")
    length = _literal(args[2], "int", "substring's length")
    if start < 1 or length < 0:
        msg = f"substring(s, start, length) needs start >= 1 and length >= 0, got {start}, {length}"
        raise ExprError(msg)
    return "string", args


def _regex(op: str, args: list[Node]) -> tuple[str, list[Node]]:
    _typed("string", "string", "int", result="string")(op, args)
    compiled = saferegex.check(_literal(args[1], "string", "regex_extract's pattern"))
    group = _literal(args[2], "int", "regex_extract's group")
    if not 0 <= group <= compiled.groups:
        msg = f"regex_extract: group {group} is not in 0..{compiled.groups}"
        raise ExprError(msg)
    return "string", args


# --- Python forms -------------------------------------------------------------------------


def _strict1(fn: Callable[[Any], Any]) -> PyForm:
    """NULL in, NULL out, one argument."""

    def form(node: Node, fs: list[Ev]) -> Ev:
        (a,) = fs

        def run(e: dict[str, Any]) -> Any:
            x = a(e)
            return None if x is None else fn(x)

        return run

    return form


def _strict2(fn: Callable[[Any, Any], Any]) -> PyForm:
    """NULL in, NULL out, two arguments."""

    def form(node: Node, fs: list[Ev]) -> Ev:
        a, b = fs

        def run(e: dict[str, Any]) -> Any:
            x = a(e)
            if x is None:
                return None
            y = b(e)
            return None if y is None else fn(x, y)

        return run

    return form


def _int_or_null(r: int) -> int | None:
    return r if INT_MIN <= r <= INT_MAX else None


def _finite(r: float) -> float | None:
    return r if -INF < r < INF else None


def _numeric(int_fn: Callable[[Any, Any], Any], float_fn: Callable[[Any, Any], Any]) -> PyForm:
    def form(node: Node, fs: list[Ev]) -> Ev:
        return _strict2(int_fn if node.type == "int" else float_fn)(node, fs)

    return form


def _py_div(x: float, y: float) -> float | None:
    return None if y == 0 else _finite(x / y)


def _py_idiv(x: int, y: int) -> int | None:
    if y == 0:
        return None
    q = abs(x) // abs(y)
    return _int_or_null(q if (x < 0) == (y < 0) else -q)


def _py_mod(x: Any, y: Any) -> Any:
    if y == 0:
        return None
    if isinstance(x, float):
        return math.fmod(x, y)
    r = abs(x) % abs(y)
    return -r if x < 0 else r


def _py_connective(decisive: bool) -> PyForm:
    """``and`` (``decisive=False``) or ``or`` (``True``) in SQL's three-valued logic.

    Either side equal to ``decisive`` decides; otherwise NULL if a side is NULL.
    """

    def form(node: Node, fs: list[Ev]) -> Ev:
        a, b = fs

        def run(e: dict[str, Any]) -> bool | None:
            x = a(e)
            if x is decisive:
                return decisive
            y = b(e)
            if y is decisive:
                return decisive
            return None if x is None or y is None else not decisive

        return run

    return form


def _py_is_null(negated: bool) -> PyForm:
    def form(node: Node, fs: list[Ev]) -> Ev:
        (a,) = fs
        return (lambda e: a(e) is not None) if negated else (lambda e: a(e) is None)

    return form


def _py_coalesce(node: Node, fs: list[Ev]) -> Ev:
    def run(e: dict[str, Any]) -> Any:
        for f in fs:
            x = f(e)
            if x is not None:
                return x
        return None

    return run


def _py_concat(node: Node, fs: list[Ev]) -> Ev:
    def run(e: dict[str, Any]) -> str | None:
        parts = [f(e) for f in fs]
        return None if None in parts else "".join(parts)

    return run


def _py_if(node: Node, fs: list[Ev]) -> Ev:
    cond, then, other = fs
    return lambda e: then(e) if cond(e) is True else other(e)


def _py_substring(node: Node, fs: list[Ev]) -> Ev:
    start = node.args[1].value - 1
    end = start + node.args[2].value
    return _strict1(lambda s: s[start:end])(node, fs[:1])


def _py_regex(pattern: str | None, group: int | None = None) -> PyForm:
    def form(node: Node, fs: list[Ev]) -> Ev:
        rx = re.compile(pattern, re.ASCII) if pattern else saferegex.check(node.args[1].value)
        g = group if group is not None else node.args[2].value

        seen: dict[str, str | None] = {}  # the same URLs come again and again

        def extract(s: str) -> str | None:
            found = seen.get(s, _MISS)
            if found is _MISS:
                m = rx.search(s)
                found = None if m is None else (m.group(g) or "")
                if len(seen) >= REGEX_MEMO:
                    seen.clear()
                seen[s] = found
            return found  # type: ignore[return-value]

        return _strict1(extract)(node, fs[:1])

    return form


def _py_floor(node: Node, fs: list[Ev]) -> Ev:
    if node.args[0].type == "int":
        return fs[0]
    return _strict1(lambda x: _int_or_null(math.floor(x)))(node, fs)


_LOWER = str.maketrans(ASCII_UPPER, ASCII_LOWER)
_UPPER = str.maketrans(ASCII_LOWER, ASCII_UPPER)


# --- Spark forms --------------------------------------------------------------------------


def _sp_finite(c: Column) -> Column:
    F = _f()
    return F.when(F.abs(c) < F.lit(INF), c)  # NaN sorts above +inf in Spark: NULL too


def _sp_long(value: int) -> Column:
    return _f().lit(value).cast("bigint")


def _sp_arith(int_name: str, float_op: Callable[[Column, Column], Column]) -> SparkForm:
    def form(node: Node, cols: list[Column]) -> Column:
        a, b = cols
        if node.type == "int":
            return getattr(_f(), int_name)(a, b)
        return _sp_finite(float_op(a, b))

    return form


def _sp_div(node: Node, cols: list[Column]) -> Column:
    return _sp_finite(_f().try_divide(*cols))


def _sp_idiv(node: Node, cols: list[Column]) -> Column:
    F = _f()
    a, b = cols
    bad = (b == 0) | ((a == _sp_long(INT_MIN)) & (b == -1))
    return F.call_function("div", a, F.when(~bad, b)).cast("bigint")


def _sp_neg(node: Node, cols: list[Column]) -> Column:
    if node.type == "int":
        return _f().try_subtract(_sp_long(0), cols[0])
    return -cols[0]


def _sp_regex(pattern: str | None, group: int | None = None) -> SparkForm:
    def form(node: Node, cols: list[Column]) -> Column:
        F = _f()
        java = saferegex.java_form(pattern or node.args[1].value)
        g = group if group is not None else node.args[2].value
        s = cols[0]
        return F.when(s.rlike(java), F.regexp_extract(s, java, g))

    return form


def _sp_floor(node: Node, cols: list[Column]) -> Column:
    F = _f()
    x = cols[0]
    if node.args[0].type == "int":
        return x
    return F.when((x >= F.lit(-(2.0**63))) & (x < F.lit(2.0**63)), F.floor(x).cast("bigint"))


def _sp_if(node: Node, cols: list[Column]) -> Column:
    return _f().when(cols[0], cols[1]).otherwise(cols[2])


def _cmp(op: str) -> Function:
    import operator

    py_ops = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le}
    py_ops |= {">": operator.gt, ">=": operator.ge}
    fn = py_ops[op]
    return Function(_compare, _strict2(fn), lambda n, c: fn(c[0], c[1]))


def _time(py: Callable[[str], Any], spark: Callable[[Column], Column]) -> Function:
    return Function(_typed("timestamp", result="int"), _strict1(py), lambda n, c: spark(c[0]))


def _string1(result: str, py: Callable[[str], Any], spark: Callable[[Column], Column]) -> Function:
    return Function(_typed("string", result=result), _strict1(py), lambda n, c: spark(c[0]))


FUNCTIONS: dict[str, Function] = {
    "+": Function(
        _arith,
        _numeric(lambda x, y: _int_or_null(x + y), lambda x, y: _finite(x + y)),
        _sp_arith("try_add", lambda a, b: a + b),
    ),
    "-": Function(
        _arith,
        _numeric(lambda x, y: _int_or_null(x - y), lambda x, y: _finite(x - y)),
        _sp_arith("try_subtract", lambda a, b: a - b),
    ),
    "*": Function(
        _arith,
        _numeric(lambda x, y: _int_or_null(x * y), lambda x, y: _finite(x * y)),
        _sp_arith("try_multiply", lambda a, b: a * b),
    ),
    "/": Function(_arith, _strict2(_py_div), _sp_div),
    "//": Function(_arith, _strict2(_py_idiv), _sp_idiv),
    "%": Function(_arith, _strict2(_py_mod), lambda n, c: _f().try_mod(c[0], c[1])),
    "neg": Function(
        _neg,
        _strict1(lambda x: _int_or_null(-x) if type(x) is int else -x),
        _sp_neg,
    ),
    **{op: _cmp(op) for op in ("==", "!=", "<", "<=", ">", ">=")},
    "and": Function(_logic, _py_connective(False), lambda n, c: c[0] & c[1]),
    "or": Function(_logic, _py_connective(True), lambda n, c: c[0] | c[1]),
    "not": Function(_logic, _strict1(lambda x: not x), lambda n, c: ~c[0]),
    "is null": Function(_any_one, _py_is_null(False), lambda n, c: c[0].isNull()),
    "is not null": Function(_any_one, _py_is_null(True), lambda n, c: c[0].isNotNull()),
    "to_float": Function(
        _typed("int", result="float"), _strict1(float), lambda n, c: c[0].cast("double")
    ),
    "coalesce": Function(_variadic(None), _py_coalesce, lambda n, c: _f().coalesce(*c)),
    "if": Function(_if, _py_if, _sp_if),
    "floor": Function(_floor, _py_floor, _sp_floor),
    "lower": _string1(
        "string",
        lambda s: s.lower() if s.isascii() else s.translate(_LOWER),  # same on ASCII, faster
        lambda c: _f().translate(c, ASCII_UPPER, ASCII_LOWER),
    ),
    "upper": _string1(
        "string",
        lambda s: s.upper() if s.isascii() else s.translate(_UPPER),
        lambda c: _f().translate(c, ASCII_LOWER, ASCII_UPPER),
    ),
    "length": _string1("int", len, lambda c: _f().char_length(c).cast("bigint")),
    "substring": Function(
        _substring,
        _py_substring,
        lambda n, c: _f().substring(c[0], n.args[1].value, n.args[2].value),
    ),
    "concat": Function(_variadic("string"), _py_concat, lambda n, c: _f().concat(*c)),
    "url_host": Function(
        _typed("string", result="string"), _py_regex(URL_HOST, 1), _sp_regex(URL_HOST, 1)
    ),
    "url_path": Function(
        _typed("string", result="string"), _py_regex(URL_PATH, 1), _sp_regex(URL_PATH, 1)
    ),
    "regex_extract": Function(_regex, _py_regex(None), _sp_regex(None)),
    "hour": _time(lambda s: int(s[11:13]), lambda c: _f().hour(c).cast("bigint")),
    "minute": _time(lambda s: int(s[14:16]), lambda c: _f().minute(c).cast("bigint")),
    "day_of_week": _time(
        lambda s: date(int(s[:4]), int(s[5:7]), int(s[8:10])).isoweekday(),
        lambda c: (_f().weekday(c) + 1).cast("bigint"),
    ),
    "epoch_ms": _time(parse_ts_ms, lambda c: _f().unix_millis(c)),
    "date": Function(
        _typed("timestamp", result="string"),
        _strict1(lambda s: s[:10]),
        lambda n, c: _f().date_format(c[0], "yyyy-MM-dd"),
    ),
}
# Operators the parser builds from symbols, not callable by name in an expression.
OPERATORS = frozenset(
    {"+", "-", "*", "/", "//", "%", "neg", "==", "!=", "<", "<=", ">", ">="}
    | {"and", "or", "not", "is null", "is not null", "to_float"}
)
