"""Spark and Python compute every expression alike: the parity the transforms rest on.

Per class of operators and functions, Hypothesis draws batches of records (empty and
unicode strings, line terminators, odd URLs, NULLs, int64 and float edges, zero divisors,
timestamps at both ends of the accepted range); each batch is computed once by Spark
(``views.expr.to_spark``, a local session configured as the batch layer's, ANSI mode on)
and by the Python evaluator (``views.expr.to_python``), and every value must be equal,
type included (floats by their exact repr, so 0.0 and -0.0 differ). A fixed batch of the
edges runs first in every class. One Spark job per batch keeps the module near a minute.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lambdalab.schema import TS_MAX, TS_MIN, format_ts
from lambdalab.settings import Settings
from views.definition import Derived, Measure, ViewDef
from views.expr import parse, to_python, to_spark

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TS_LO = (TS_MIN - EPOCH) // timedelta(milliseconds=1)
TS_HI = (TS_MAX - EPOCH) // timedelta(milliseconds=1) - 1
FIELDS = {
    "s": "string",
    "t": "string",
    "u": "string",
    "i": "int",
    "j": "int",
    "x": "float",
    "y": "float",
    "b": "bool",
    "ts": "timestamp",
}
EXPRESSIONS = {
    "arithmetic": [
        "i + j",
        "i - j",
        "i * j",
        "i / j",
        "i // j",
        "i % j",
        "-i",
        "x + y",
        "x - y",
        "x * y",
        "x / y",
        "x % y",
        "-x",
        "x + i",
        "i / x",
        "i * 3 + 2",
        "(i + 1) // 2",
        "floor(x)",
        "floor(x / y)",
        "floor(i)",
        "i % -3",
        "x * 0.1 - 7",
    ],
    "logic": [
        "i < j",
        "i == j",
        "x >= y",
        "i == x",
        "i <= x",
        "s == t",
        "s < t",
        "s != t",
        "b and i > 0",
        "b or x < 0.0",
        "not b",
        "b == false",
        "s is null",
        "x is not null",
        "coalesce(i, j, 0)",
        "coalesce(x, i)",
        "coalesce(s, t)",
        "if(b, s, t)",
        "if(i > j, i, x)",
        "if(s == t, 1, null)",
        "(i > 0 or s is null) and not (x < 0.0 and b)",
    ],
    "strings": [
        "lower(s)",
        "upper(s)",
        "length(s)",
        "substring(s, 1, 2)",
        "substring(s, 3, 100)",
        "substring(s, 2, 0)",
        "concat(s, '-', t)",
        "concat(s)",
        "url_host(u)",
        "url_path(u)",
        "lower(url_host(u))",
        "length(url_path(u))",
        "s == lower(s)",
    ],
    "regex": [
        "regex_extract(s, '([a-z]+)', 1)",
        "regex_extract(s, '^(.)(.*)$', 2)",
        "regex_extract(s, '.$', 0)",
        "regex_extract(s, '\\d+', 0)",
        "regex_extract(s, '(\\w+)\\W(\\w*)', 2)",
        "regex_extract(s, '\\s(\\S*)', 1)",
        "regex_extract(s, '[^a-c]{2,3}?', 0)",
        "regex_extract(s, '(a|b)+?c?', 1)",
        "regex_extract(s, '(x)?y', 1)",
        "regex_extract(u, '^[a-z]+://([^/]*)/(.*)', 2)",
        "regex_extract(s, '[\\-_.\\n]+', 0)",
        "regex_extract(s, 'é|ß|🙂', 0)",
    ],
    "time": [
        "hour(ts)",
        "minute(ts)",
        "day_of_week(ts)",
        "date(ts)",
        "epoch_ms(ts)",
        "ts < ts",
        "hour(ts) * 60 + minute(ts)",
    ],
}
EDGE_STRINGS = ["", "A", "abc", "a\nb", "ab\n", "ab\r", "x\r\n", "a\u2028", "\u0085z", "ß"]
EDGE_STRINGS += ["İ", "ΣΑΣ", "🙂x", "é", "NaN", " 12 ab", "a-b_c.d", "xy", "aaac", "\\"]
EDGE_URLS = ["http://Example.COM/a/b?q#f", "https://u:p@h.example:8080", "HTTP://h", ""]
EDGE_URLS += ["ftp://[::1]:21/x", "no-scheme/path", "a+b.c-d://h/p@q", "1http://h/", "http://"]
EDGE_URLS += ["http:///p", "http://h?x=/y", "s://é.例/ü#", "http://a@b@c/d"]
EDGE_INTS = [0, 1, -1, 2, -3, 7, INT_MIN, INT_MAX, INT_MIN + 1, INT_MAX - 1, 2**53 + 1, 2**31]
EDGE_FLOATS = [0.0, -0.0, 0.5, -2.5, 1e308, -1e308, 5e-324, 0.1, 1e19, 9.223372036854776e18]
EDGE_TS = [TS_LO, TS_HI, 0, -1, 1_772_409_598_123, 951_782_400_000]


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
STRINGS = _nullable(st.one_of(st.sampled_from(EDGE_STRINGS), TEXT))
URLS = st.one_of(
    st.sampled_from(EDGE_URLS),
    st.builds(
        lambda scheme, sep, user, host, port, path: scheme + sep + user + host + port + path,
        st.sampled_from(["http", "HTTPS", "a+b", "x1", "1x", ""]),
        st.sampled_from(["://", ":/", "//", "://"]),
        st.sampled_from(["", "u@", "u:p@", "a@b@"]),
        TEXT,
        st.sampled_from(["", ":80", ":", ":x"]),
        st.sampled_from(["", "/", "/a/b", "?q=/x", "#f", "/é?x#y"]),
    ),
)
INTS = _nullable(st.one_of(st.sampled_from(EDGE_INTS), st.integers(INT_MIN, INT_MAX)))
FLOATS = _nullable(
    st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(allow_nan=False, allow_infinity=False))
)
TIMES = _nullable(st.one_of(st.sampled_from(EDGE_TS), st.integers(TS_LO, TS_HI)))
ROW = st.tuples(STRINGS, STRINGS, URLS, INTS, INTS, FLOATS, FLOATS, _nullable(st.booleans()), TIMES)
COLUMNS = ("s", "t", "u", "i", "j", "x", "y", "b", "ts_ms")


def _edge_rows() -> list[tuple[Any, ...]]:
    """Every edge value at least once, paired off against the others (and NULLs)."""
    pools = [EDGE_STRINGS, EDGE_STRINGS[::-1], EDGE_URLS, EDGE_INTS, EDGE_INTS[::-1]]
    pools += [EDGE_FLOATS, EDGE_FLOATS[::-1], [True, False], EDGE_TS]
    size = max(len(p) for p in pools) * 3
    cycles = [itertools.cycle([*p, None]) for p in pools]
    return [tuple(next(c) for c in cycles) for _ in range(size)]


EDGES = _edge_rows()


@pytest.fixture(scope="module")
def spark(base_settings: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(base_settings, app_name="test-expr-parity")
    yield session
    session.stop()


def _event(row: tuple[Any, ...]) -> dict[str, Any]:
    event = dict(zip(COLUMNS, row, strict=True))
    ms = event.pop("ts_ms")
    event["ts"] = None if ms is None else format_ts(EPOCH + timedelta(milliseconds=ms))
    return event


def _exact(value: Any) -> Any:
    """A value compared by type and, for floats, by repr (sign of zero included)."""
    return (type(value).__name__, repr(value) if isinstance(value, float) else value)


def _spark_values(spark: Any, rows: list[tuple[Any, ...]], texts: list[str]) -> list[tuple]:
    from pyspark.sql import functions as F

    ddl = "n bigint, s string, t string, u string, i bigint, j bigint, x double, y double, "
    ddl += "b boolean, ts_ms bigint"
    df = spark.createDataFrame([(n, *row) for n, row in enumerate(rows)], ddl)
    df = df.withColumn("ts", F.timestamp_millis("ts_ms"))
    cols = [to_spark(parse(text, FIELDS)).alias(f"e{k}") for k, text in enumerate(texts)]
    return [tuple(r)[1:] for r in df.select("n", *cols).orderBy("n").collect()]


def check_parity(spark: Any, kind: str, rows: list[tuple[Any, ...]]) -> None:
    texts = EXPRESSIONS[kind]
    evaluators = [to_python(parse(text, FIELDS)) for text in texts]
    for row, spark_row in zip(rows, _spark_values(spark, rows, texts), strict=True):
        event = _event(row)
        for text, evaluate, got in zip(texts, evaluators, spark_row, strict=True):
            expected = evaluate(event)
            assert _exact(got) == _exact(expected), (text, event, got, expected)


PARITY = settings(
    max_examples=4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("kind", sorted(EXPRESSIONS))
@PARITY
@given(rows=st.lists(ROW, min_size=1, max_size=80))
@example(rows=EDGES)
def test_spark_and_python_agree(spark: Any, kind: str, rows: list[tuple[Any, ...]]) -> None:
    check_parity(spark, kind, rows)


KEYED = ViewDef(
    name="keyed_by_derived",
    stream="pageviews",
    keys=("big", "hour", "day", "host", "at", "maybe"),
    bucket_s=3600,
    measures=(Measure("n", "count"), Measure("kb", "sum", "kb")),
    derive=(
        Derived("big", "bytes >= 5000"),
        Derived("hour", "hour(event_time)"),
        Derived("day", "date(event_time)"),
        Derived("host", "url_host(url)"),
        Derived("at", "event_time"),
        Derived("maybe", "if(bytes % 3 == 0, referrer is null, null)"),
        Derived("kb", "bytes // 1024"),
    ),
    where="length(coalesce(referrer, '')) < 8",
)


def test_a_view_keyed_by_derived_fields_is_the_same_in_both_layers(spark: Any) -> None:
    """compile_view (Spark) and aggregate (Python) agree on keys made of derived fields:
    bools render true/false, ints, dates, NULL hosts and timestamps alike."""
    from pyspark.sql import functions as F

    from batch.compile import compile_view
    from views.compute import aggregate

    events = []
    for n, row in enumerate(EDGES * 2):
        s, _, u, i, _, _, _, _, ts_ms = row
        at = EPOCH + timedelta(milliseconds=ts_ms if ts_ms is not None else n * 997_000)
        events.append(
            {"event_id": str(n), "url": u, "user_id": "u", "referrer": s, "bytes": i or n}
        )
        events[-1]["event_time"] = format_ts(at)
    ddl = "event_id string, url string, user_id string, referrer string, bytes bigint, ms bigint"
    columns = ("event_id", "url", "user_id", "referrer", "bytes")
    rows = [(*(e[c] for c in columns), _ms(e["event_time"])) for e in events]

    df = spark.createDataFrame(rows, ddl).withColumn("event_time", F.timestamp_millis("ms"))
    got = {
        (r["key"], r["bucket_ms"]): (r["n"], int(r["kb"]))
        for r in compile_view(KEYED, df).collect()
    }
    cells = aggregate(KEYED, [(0, e) for e in events], 60)
    expected = {(k, b): (row["n"], row["kb"]) for (_, k, b), row in cells.items()}
    assert got == expected
    assert any(k.startswith("true\x1f") for k, _ in got) and any(
        "\x1f(none)\x1f" in k for k, _ in got
    )


def _ms(text: str) -> int:
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - EPOCH) // timedelta(
        milliseconds=1
    )
