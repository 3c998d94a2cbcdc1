"""Spark <-> Python parity of every measure kind, on random records with hostile edges.

The same records (ints near int64, negatives, +-0.0, tiny and huge floats, empty and
unicode strings, timestamps, bools, None) go to each kind's Spark form (its aggregate and
output columns, one groupBy over three partitions, so Spark merges partial aggregates) and
to its Python form (the speed layer's step and finish, then the batch row read back with
``from_batch``); per group the two must be equal: exactly for count/sum/min/max/avg of
ints, min/max of floats and timestamps; within 1e-9 relative for float sums and averages
(IEEE sums in another order, the contract's one exception); byte-equal theta sketches;
equal HLL estimates; KLL sketches below k that both read back as the exact quantiles.
Sketches also cross the other way: Python's bytes read by Spark's functions.
KLL beyond k (it compacts at random) is held to its normalized rank error against the
exact oracle, Spark's sketch read in Python and Python's read in Spark.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from batch.compile import _text
from lambdalab.schema import format_ts
from lambdalab.settings import Settings
from views.definition import Measure
from views.measures import HLL_MARK, KINDS, Kind, Quantiles, kind_of, quantile_label

pytestmark = pytest.mark.integration

FIELDS = {"i": "int", "x": "float", "s": "string", "t": "timestamp", "b": "bool"}
SCHEMA = "g int, i bigint, x double, s string, t timestamp, b boolean"
CASES = [
    ("count", None),
    ("sum", "i"),
    ("sum", "x"),
    ("min", "i"),
    ("min", "x"),
    ("min", "t"),
    ("max", "i"),
    ("max", "x"),
    ("max", "t"),
    ("avg", "i"),
    ("avg", "x"),
    ("hll", "s"),
    ("hll", "i"),
    ("hll", "b"),
    ("theta", "s"),
    ("theta", "i"),
    ("theta", "x"),
    ("theta", "t"),
    ("quantiles", "i"),
    ("quantiles", "x"),
]
KINDS_UNDER_TEST = [
    kind_of(
        Measure(
            f"{k}_{f or 'all'}",
            k,  # type: ignore[arg-type]
            f,
            quantiles=(0.0, 0.25, 0.5, 0.99, 1.0) if k == "quantiles" else None,
        ),
        FIELDS.get(f or ""),
    )
    for k, f in CASES
]

INTS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 2**63 - 1, -(2**63), 2**62, -(2**53) - 1]),
)
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e200, max_value=1e200),
    st.sampled_from([0.0, -0.0, 5e-324, -1e-300, 1e200, 0.1, 3.0]),
)
TEXTS = st.one_of(st.text(max_size=6), st.sampled_from(["", HLL_MARK, "é", "😀", "(none)"]))
TIMES = st.integers(-2_208_988_800_000, 32_503_680_000_000)  # 1900 .. 3000, ms
RECORDS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.one_of(st.none(), INTS),
        st.one_of(st.none(), FLOATS),
        st.one_of(st.none(), TEXTS),
        st.one_of(st.none(), TIMES),
        st.one_of(st.none(), st.booleans()),
    ),
    min_size=1,
    max_size=60,
)


def test_every_kind_is_covered() -> None:
    assert {k for k, _ in CASES} == set(KINDS)


@pytest.fixture(scope="module")
def spark(stack: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(stack, app_name="test-measure-parity")
    yield session
    session.stop()


def _event(record: tuple[Any, ...]) -> dict[str, Any]:
    """A record as the speed layer sees it (a timestamp as its normal ISO text)."""
    g, i, x, s, t, b = record
    ts = None if t is None else format_ts(datetime.fromtimestamp(t / 1000, tz=UTC))
    return {"g": g, "i": i, "x": x, "s": s, "t": ts, "b": b}


def _spark_rows(spark: Any, records: list[tuple[Any, ...]], kinds: list[Kind]) -> dict[int, Any]:
    from pyspark.sql import functions as F

    rows = [
        (g, i, x, s, None if t is None else datetime.fromtimestamp(t / 1000, tz=UTC), b)
        for g, i, x, s, t, b in records
    ]
    df = spark.createDataFrame(rows, SCHEMA).repartition(3)
    aggs = []
    for kind in kinds:
        fld = kind.field
        value = F.col(fld) if fld else F.lit(None)
        text = _text(fld, FIELDS[fld]) if fld else F.lit(None)
        aggs += kind.spark_aggs(value, text)
    out = df.groupBy("g").agg(*aggs)
    out = out.select("g", *[c for kind in kinds for c in kind.spark_outputs()])
    return {row["g"]: row.asDict() for row in out.collect()}


def _python_rows(records: list[tuple[Any, ...]], kinds: list[Kind]) -> dict[int, Any]:
    out: dict[int, dict[str, Any]] = {}
    steps = [k.step() for k in kinds]
    for record in records:
        event = _event(record)
        acc = out.setdefault(event["g"], {k.name: k.identity() for k in kinds})
        for step in steps:
            step(acc, event)
    for acc in out.values():
        for k in kinds:
            acc[k.name] = k.finish(acc[k.name])
    return out


def _theta_bytes_equal(java: bytes, cpp: bytes) -> bool:
    """Byte-equal, but for the flag Java sets on a one-item sketch (0x20) and C++ does not.

    Both read either form; the preamble, seed hash, theta and hashes are the same bytes.
    """
    if java == cpp:
        return True
    same_but_flag = java[:5] == cpp[:5] and java[6:] == cpp[6:]
    return len(java) == len(cpp) and same_but_flag and java[5] | 0x20 == cpp[5] | 0x20


def _same(kind: Kind, spark_value: Any, python_value: Any) -> bool:
    if kind.field_type == "float" and kind.kind in ("sum", "avg"):
        if kind.kind == "avg":
            (s1, n1), (s2, n2) = spark_value, python_value
            return n1 == n2 and math.isclose(s1, s2, rel_tol=1e-9, abs_tol=1e-290)
        return math.isclose(spark_value, python_value, rel_tol=1e-9, abs_tol=1e-290)
    if kind.kind == "theta" and python_value is None:  # no value: Spark keeps an empty sketch
        return bool(kind.render(bytes(spark_value)) == 0.0)
    if kind.kind == "theta":
        return _theta_bytes_equal(bytes(spark_value), bytes(python_value))
    if kind.kind in ("hll", "quantiles"):
        return bool(kind.render(bytes(spark_value)) == kind.render(python_value))
    return bool(spark_value == python_value)


# No shrinking: each example is a Spark job; a failure prints its records as drawn.
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(records=RECORDS)
def test_spark_and_python_forms_agree(spark: Any, records: list[tuple[Any, ...]]) -> None:
    got = _spark_rows(spark, records, KINDS_UNDER_TEST)
    want = _python_rows(records, KINDS_UNDER_TEST)
    assert set(got) == set(want)
    for g, row in got.items():
        for kind in KINDS_UNDER_TEST:
            spark_value = kind.from_batch(row)
            assert _same(kind, spark_value, want[g][kind.name]), (kind.name, g)
            if isinstance(kind, Quantiles):  # Spark's own quantile columns agree too
                rendered = kind.render(want[g][kind.name])
                for q in kind.quantiles:
                    label = quantile_label(q)
                    assert row[f"{kind.name}_{label}"] == rendered[label], (kind.name, label)
            if kind.kind in ("hll", "theta"):  # Spark's estimate is rounded to a bigint
                estimate = kind.render(want[g][kind.name])
                assert row[f"{kind.name}_estimate"] == round(estimate), (kind.name, g)


def test_python_sketches_read_in_spark(spark: Any) -> None:
    """Python's bytes, merged and read by Spark's functions, give Python's answers."""
    from pyspark.sql import functions as F

    values = [
        (0, i * 7919 % 1000 - 500, (i % 97) / 8, f"u{i % 300}", None, None) for i in range(1500)
    ]
    by_name = {k.name: k for k in KINDS_UNDER_TEST}
    kinds = [by_name[n] for n in ("theta_s", "theta_i", "hll_s", "quantiles_i", "quantiles_x")]
    python = _python_rows(values, kinds)[0]
    halves = [_python_rows(part, kinds)[0] for part in (values[:700], values[700:])]
    df = spark.createDataFrame(
        [tuple(bytearray(h[k.name]) for k in kinds) for h in halves],
        ", ".join(f"{k.name} binary" for k in kinds),
    )
    merged = df.agg(
        F.theta_sketch_estimate(F.theta_union_agg("theta_s")).alias("theta_s"),
        F.theta_sketch_estimate(F.theta_union_agg("theta_i")).alias("theta_i"),
        F.hll_sketch_estimate(F.hll_union_agg("hll_s")).alias("hll_s"),
        F.kll_sketch_get_n_bigint(F.kll_merge_agg_bigint("quantiles_i")).alias("n_i"),
        F.kll_sketch_get_n_double(F.kll_merge_agg_double("quantiles_x")).alias("n_x"),
    ).first()
    assert merged["theta_s"] == by_name["theta_s"].render(python["theta_s"])
    assert merged["theta_i"] == by_name["theta_i"].render(python["theta_i"])
    assert merged["hll_s"] == pytest.approx(by_name["hll_s"].render(python["hll_s"]), rel=0.02)
    assert merged["n_i"] == merged["n_x"] == 1500
    per_half = df.select(
        F.kll_sketch_get_quantile_bigint("quantiles_i", F.lit(0.5)).alias("i"),
        F.kll_sketch_get_quantile_double("quantiles_x", F.lit(0.5)).alias("x"),
    ).collect()
    for half, row in zip(halves, per_half, strict=True):
        assert row["i"] == by_name["quantiles_i"].render(half["quantiles_i"])["p50"]
        assert row["x"] == by_name["quantiles_x"].render(half["quantiles_x"])["p50"]


@pytest.mark.parametrize("field", ["i", "x"])
def test_kll_beyond_k_is_within_its_rank_error_both_ways(spark: Any, field: str) -> None:
    """Above k KLL compacts at random: each side's quantiles are within the rank error."""
    from pyspark.sql import functions as F

    kind = kind_of(Measure("q", "quantiles", field, k=64, quantiles=(0.1, 0.5, 0.9)), FIELDS[field])
    assert isinstance(kind, Quantiles)
    n = 20_000
    numbers = [(j * 7919) % n - n // 2 for j in range(n)]  # each of -n/2 .. n/2-1 once
    values = numbers if field == "i" else [v / 4 for v in numbers]
    records = [
        (0, v, None, None, None, None) if field == "i" else (0, None, v, None, None, None)
        for v in values
    ]
    spark_blob = bytes(_spark_rows(spark, records, [kind])[0]["q"])
    python_blob = _python_rows(records, [kind])[0]["q"]
    ordered = sorted(values)
    eps = kind.load(python_blob).normalized_rank_error(False)

    def rank_of(v: float) -> float:
        return sum(1 for o in ordered if o <= v) / n

    for blob in (spark_blob, python_blob):
        assert kind.load(blob).n == n
        for q, label in zip(kind.quantiles, ("p10", "p50", "p90"), strict=True):
            assert abs(rank_of(kind.render(blob)[label]) - q) <= eps, (label, blob is spark_blob)
    get = F.kll_sketch_get_quantile_bigint if field == "i" else F.kll_sketch_get_quantile_double
    df = spark.createDataFrame([(bytearray(python_blob),)], "q binary")
    in_spark = df.select(get("q", F.lit(0.5)).alias("m")).first()["m"]
    assert in_spark == kind.render(python_blob)["p50"]
