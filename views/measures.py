"""The measure kinds: one class per kind, holding every form of it the layers need.

A view's measure is a commutative monoid (:meth:`Kind.merge` with :meth:`Kind.identity`),
which is what makes the Lambda merge ``batch ⊕ realtime`` exact whichever side of the cut
a record fell on. Each class keeps side by side, so that they read in parallel:

- the Spark form (``spark_aggs``: the aggregate columns of the batch layer's groupBy, and
  ``spark_outputs``: the columns a version's Parquet holds, state first, then derived
  read-only columns such as an estimate) and their Trino and DuckDB types;
- the Python form (``step``: the speed layer's per-event update of an accumulator, and
  ``finish``: the accumulator as the merged value);
- the stored forms: a Redis hash field (``encode``/``decode``), a batch row read back
  (``from_batch``), an Arrow column of realtime cells (``arrow``);
- the answer (``render``: JSON) and the field types it accepts.

A kind is instantiated per measure of a view (:func:`bind`), knowing its field's type and
its params. Adding a kind is one class here and its entry in :data:`KINDS_BY_NAME`.
Sketches (HLL, theta, KLL) are Apache DataSketches: Spark's ``hll_sketch_agg``,
``theta_sketch_agg`` and ``kll_sketch_agg_*`` and the ``datasketches`` Python package
write the same bytes (tests/integration/test_measure_parity.py proves it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from lambdalab.errors import DefinitionError
from lambdalab.schema import value_text

if TYPE_CHECKING:
    from pyspark.sql import Column

    from views.definition import Measure

Step = Callable[[dict[str, Any], dict[str, Any]], None]  # (accumulator row, event) -> None
SUM_TYPE = "decimal(38,0)"  # integer sums are exact beyond int64, like Python ints
HLL_MARK = "\x1f"
DEFAULTS: dict[str, Any] = {"lg_k": 12, "k": 200, "quantiles": (0.5, 0.95, 0.99)}
NUMERIC = ("int", "float")


def sketch_item(value: str) -> str:
    r"""The string a sketch is updated with for ``value``, so that ``""`` counts too.

    DataSketches ignores an empty string (HLL and theta, in Python and in Spark), so ``""``
    alone would be counted as no value at all. One injective rewrite, the same in both
    layers (Spark's is :func:`spark_item`): ``""`` becomes ``HLL_MARK`` and a value that
    starts with ``HLL_MARK`` gets one more in front; every other value is itself.
    """
    if value == "":
        return HLL_MARK
    return HLL_MARK + value if value.startswith(HLL_MARK) else value


def spark_item(text: Column) -> Column:
    """:func:`sketch_item` in Spark: ``""`` counts as a value (NULL stays NULL)."""
    from pyspark.sql import functions as F

    mark = F.lit(HLL_MARK)
    return (
        F.when(text == F.lit(""), mark)
        .when(text.startswith(HLL_MARK), F.concat(mark, text))
        .otherwise(text)
    )


def _exact(value: Any) -> Any:
    """A decimal read back from Parquet as the speed layer's exact int."""
    return int(value) if isinstance(value, Decimal) else value


class Kind:
    """One measure of a view: its algebra and every form of it (see the module docstring).

    Attributes:
        name: the measure's name; field: the field it reads (None for count);
        field_type: that field's type (None when unknown: reading stored values only).
    """

    kind: ClassVar[str]
    accepts: ClassVar[tuple[str, ...]] = ()  # field types it reads; () takes no field
    params: ClassVar[tuple[str, ...]] = ()  # the Measure params it uses
    trino: str = "bigint"
    duckdb: str = "BIGINT"
    arrow_type: str = "int64"
    orderable: bool = True  # its rendered value is a number (``/rows`` order_by)
    pushdown: ClassVar[str | None] = None  # DuckDB aggregate merging partials, if any
    finishes: ClassVar[bool] = False  # the speed accumulator differs from the value
    additive: ClassVar[bool] = False  # rendered values of parts add up to the merged one

    def __init__(self, measure: Measure, field_type: str | None = None) -> None:
        self.measure = measure
        self.name = measure.name
        self.field = measure.field
        self.field_type = field_type

    def param(self, name: str) -> Any:
        """A param of the measure, or its default."""
        value = getattr(self.measure, name, None)
        return DEFAULTS[name] if value is None else value

    # --- the algebra ---------------------------------------------------------------------
    def identity(self) -> Any:
        """The neutral element: the value of no records."""
        return None

    def merge(self, a: Any, b: Any) -> Any:
        """Combine two values (associative and commutative; None is the identity)."""
        raise NotImplementedError

    def merge_all(self, values: Iterable[Any]) -> Any:
        """The merge of many values (sketches union them at once)."""
        out = self.identity()
        for v in values:
            out = self.merge(out, v)
        return out

    # --- speed layer (Python) ------------------------------------------------------------
    def step(self) -> Step:
        """The per-event update of an accumulator row (the speed layer's hot loop)."""
        raise NotImplementedError

    def finish(self, acc: Any) -> Any:
        """The value of an accumulator (a live sketch becomes its bytes)."""
        return acc

    # --- stored forms --------------------------------------------------------------------
    def encode(self, value: Any) -> bytes | str:
        """The Redis hash field value of a (non-None) value."""
        return str(value)

    def decode(self, raw: bytes) -> Any:
        """The value of a Redis hash field (:meth:`encode`'s inverse)."""
        return int(raw)

    def columns(self) -> list[tuple[str, str, str]]:
        """(name, Trino type, DuckDB type) of the Parquet columns: state, then derived."""
        return [(self.name, self.trino, self.duckdb)]

    def from_batch(self, row: dict[str, Any]) -> Any:
        """The value in a batch row (a version's columns by name)."""
        return _exact(row.get(self.name))

    def arrow(self, values: list[Any]) -> dict[str, Any]:
        """Realtime values as Arrow columns with the batch version's names and types."""
        import pyarrow as pa

        return {self.name: pa.array(values, getattr(pa, self.arrow_type)())}

    # --- batch layer (Spark) -------------------------------------------------------------
    def spark_aggs(self, value: Column, text: Column) -> list[Column]:
        """The aggregate columns (aliased) of the groupBy; ``text`` is the field as text."""
        raise NotImplementedError

    def spark_outputs(self) -> list[Column]:
        """The version's columns after the groupBy (state, then derived)."""
        from pyspark.sql import functions as F

        return [F.col(self.name)]

    # --- the answer ----------------------------------------------------------------------
    def render(self, value: Any) -> Any:
        """The JSON value of a merged value."""
        return value

    def sketch(self, value: Any) -> bytes | None:
        """The sketch bytes of a value, for kinds that keep one (None otherwise)."""
        return None

    def close(self, a: Any, b: Any) -> bool:
        """Whether two rendered answers computed apart agree (exact kinds: equal)."""
        return bool(a == b)


# --- exact scalar kinds ------------------------------------------------------------------


class Count(Kind):
    """``count``: the number of records."""

    kind = "count"
    additive = True

    @override
    def identity(self) -> Any:
        return 0

    @override
    def merge(self, a: Any, b: Any) -> Any:
        return (a or 0) + (b or 0)

    @override
    def step(self) -> Step:
        name = self.name

        def step(acc: dict[str, Any], event: dict[str, Any]) -> None:
            acc[name] += 1

        return step

    @override
    def spark_aggs(self, value: Column, text: Column) -> list[Column]:
        from pyspark.sql import functions as F

        return [F.count(F.lit(1)).cast("long").alias(self.name)]


class Sum(Count):
    """``sum`` of an int field (exact: Python int, decimal(38,0)) or a float field (double)."""

    kind = "sum"
    accepts = NUMERIC

    def __init__(self, measure: Measure, field_type: str | None = None) -> None:
        super().__init__(measure, field_type)
        floating = field_type == "float"
        self.trino, self.duckdb = ("double", "DOUBLE") if floating else (SUM_TYPE, "DECIMAL(38,0)")
        self.arrow_type = "float64" if floating else "decimal"

    @override
    def step(self) -> Step:
        name, fld = self.name, self.field or ""

        def step(acc: dict[str, Any], event: dict[str, Any]) -> None:
            value = event.get(fld)
            if value is not None:
                acc[name] += value

        return step

    @override
    def decode(self, raw: bytes) -> Any:
        return float(raw) if self.field_type == "float" else int(raw)

    @override
    def encode(self, value: Any) -> bytes | str:
        return repr(float(value)) if self.field_type == "float" else str(value)

    @override
    def arrow(self, values: list[Any]) -> dict[str, Any]:
        import pyarrow as pa

        if self.field_type == "float":
            return {self.name: pa.array([float(v or 0) for v in values], pa.float64())}
        exact = [Decimal(int(v or 0)) for v in values]
        return {self.name: pa.array(exact, pa.decimal128(38, 0))}

    @override
    def spark_aggs(self, value: Column, text: Column) -> list[Column]:
        from pyspark.sql import functions as F

        typ = "double" if self.field_type == "float" else SUM_TYPE
        total = F.coalesce(F.sum(value.cast(typ)), F.lit(0).cast(typ))
        return [total.cast(typ).alias(self.name)]

    @override
    def close(self, a: Any, b: Any) -> bool:
        if self.field_type == "float":
            return math.isclose(float(a or 0), float(b or 0), rel_tol=1e-9, abs_tol=1e-300)
        return bool(a == b)


class Min(Kind):
    """``min`` of an int, float or timestamp field (a timestamp as its ISO text)."""

    kind = "min"
    accepts = ("int", "float", "timestamp")

    def __init__(self, measure: Measure, field_type: str | None = None) -> None:
        super().__init__(measure, field_type)
        types = {
            "float": ("double", "DOUBLE", "float64"),
            "timestamp": ("varchar", "VARCHAR", "string"),
        }
        self.trino, self.duckdb, self.arrow_type = types.get(
            field_type or "int", ("bigint", "BIGINT", "int64")
        )
        self.orderable = field_type != "timestamp"  # text: no numeric order term

    @override
    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        return min(a, b) if self.kind == "min" else max(a, b)

    @override
    def step(self) -> Step:
        name, fld = self.name, self.field or ""

        def step(acc: dict[str, Any], event: dict[str, Any]) -> None:
            value = event.get(fld)
            if value is not None and (acc[name] is None or value < acc[name]):
                acc[name] = value

        return step

    @override
    def encode(self, value: Any) -> bytes | str:
        return repr(value) if self.field_type == "float" else str(value)

    @override
    def decode(self, raw: bytes) -> Any:
        if self.field_type == "timestamp":
            return raw.decode()
        return float(raw) if self.field_type == "float" else int(raw)

    @override
    def spark_aggs(self, value: Column, text: Column) -> list[Column]:
        from pyspark.sql import functions as F

        agg = F.min if self.kind == "min" else F.max
        if self.field_type == "timestamp":  # the ISO text orders as the instants do
            return [agg(text).alias(self.name)]
        typ = "double" if self.field_type == "float" else "long"
        return [agg(value).cast(typ).alias(self.name)]


class Max(Min):
    """``max`` of an int, float or timestamp field."""

    kind = "max"

    @override
    def step(self) -> Step:
        name, fld = self.name, self.field or ""

        def step(acc: dict[str, Any], event: dict[str, Any]) -> None:
            value = event.get(fld)
            if value is not None and (acc[name] is None or value > acc[name]):
                acc[name] = value

        return step


Count.pushdown = Sum.pushdown = "coalesce(sum({0}), 0)"
Min.pushdown, Max.pushdown = "min({0})", "max({0})"


class Avg(Kind):
    """``avg`` of an int or float field, kept as (sum, count): the mean of the merged pair.

    Int sums are exact (Python int, decimal(38,0)); float sums are IEEE doubles whose order
    differs between layers (the one documented inexactness). Rendered sum/count, null when
    no record had the field.
    """

    kind = "avg"
    accepts = NUMERIC
    trino, duckdb, arrow_type = "double", "DOUBLE", "float64"

    @override
    def identity(self) -> Any:
        return (0, 0)

    @override
    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        return (a[0] + b[0], a[1] + b[1])

    @override
    def step(self) -> Step:
        name, fld = self.name, self.field or ""

        def step(acc: dict[str, Any], event: dict[str, Any]) -> None:
            value = event.get(fld)
            if value is not None:
                total, n = acc[name]
                acc[name] = (total + value, n + 1)

        return step

    @override
    def encode(self, value: Any) -> bytes | str:
        total = repr(float(value[0])) if self.field_type == "float" else str(value[0])
        return f"{total} {value[1]}"

    @override
    def decode(self, raw: bytes) -> Any:
        total, n = raw.split()
        return (float(total) if self.field_type == "float" else int(total), int(n))

    def _sum_types(self) -> tuple[str, str]:
        return ("double", "DOUBLE") if self.field_type == "float" else (SUM_TYPE, "DECIMAL(38,0)")

    @override
    def columns(self) -> list[tuple[str, str, str]]:
        trino, duck = self._sum_types()
        return [
            (f"{self.name}_sum", trino, duck),
            (f"{self.name}_count", "bigint", "BIGINT"),
            (self.name, "double", "DOUBLE"),
        ]

    @override
    def from_batch(self, row: dict[str, Any]) -> Any:
        return (_exact(row.get(f"{self.name}_sum")) or 0, row.get(f"{self.name}_count") or 0)

    @override
    def arrow(self, values: list[Any]) -> dict[str, Any]:
        import pyarrow as pa

        pairs = [v or (0, 0) for v in values]
        if self.field_type == "float":
            sums = pa.array([float(s) for s, _ in pairs], pa.float64())
        else:
            sums = pa.array([Decimal(int(s)) for s, _ in pairs], pa.decimal128(38, 0))
        return {
            f"{self.name}_sum": sums,
            f"{self.name}_count": pa.array([n for _, n in pairs], pa.int64()),
            self.name: pa.array([self.render(p) for p in pairs], pa.float64()),
        }

    @override
    def spark_aggs(self, value: Column, text: Column) -> list[Column]:
        from pyspark.sql import functions as F

        typ = "double" if self.field_type == "float" else SUM_TYPE
        total = F.coalesce(F.sum(value.cast(typ)), F.lit(0).cast(typ)).cast(typ)
        return [total.alias(f"{self.name}_sum"), F.count(value).alias(f"{self.name}_count")]

    @override
    def spark_outputs(self) -> list[Column]:
        from pyspark.sql import functions as F

        total, n = F.col(f"{self.name}_sum"), F.col(f"{self.name}_count")
        mean = F.when(n > 0, total.cast("double") / n.cast("double"))
        return [total, n.cast("long").alias(f"{self.name}_count"), mean.alias(self.name)]

    @override
    def render(self, value: Any) -> Any:
        total, n = value if value is not None else (0, 0)
        return None if n == 0 else total / n

    @override
    def close(self, a: Any, b: Any) -> bool:
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9)


def hll_union(sketches: Iterable[bytes], lg_k: int) -> bytes:
    """Union of serialized DataSketches HLL sketches, as a compact HLL_4 sketch."""
    from datasketches import hll_sketch, tgt_hll_type
    from datasketches import hll_union as union_t

    union = union_t(lg_k)
    for blob in sketches:
        union.update(hll_sketch.deserialize(blob))
    return bytes(union.get_result(tgt_hll_type.HLL_4).serialize_compact())


class Hll(Kind):
    """``hll``: approximate distinct count, an Apache DataSketches HLL_4 sketch (``lg_k``)."""

    kind = "hll"
    # hashed as their text, the same in both layers (a bool as true/false: value_text)
    accepts: ClassVar[tuple[str, ...]] = ("string", "int", "bool", "timestamp")
    params = ("lg_k",)
    trino, duckdb, arrow_type = "varbinary", "BLOB", "binary"
    finishes = True

    def __init__(self, measure: Measure, field_type: str | None = None) -> None:
        super().__init__(measure, field_type)
        self.lg_k = int(self.param("lg_k"))

    @override
    def merge(self, a: Any, b: Any) -> Any:
        return self.merge_all([a, b])

    @override
    def merge_all(self, values: Iterable[Any]) -> Any:
        present = [v for v in values if v]
        if len(present) <= 1:
            return present[0] if present else None
        return hll_union(present, self.lg_k)

    @override
    def step(self) -> Step:
        from datasketches import hll_sketch

        name, fld, lg_k = self.name, self.field or "", self.lg_k

        def step(acc: dict[str, Any], event: dict[str, Any]) -> None:
            value = event.get(fld)
            if value is not None:
                sk = acc[name]
                if sk is None:
                    sk = acc[name] = hll_sketch(lg_k)
                sk.update(sketch_item(value_text(value)))

        return step

    @override
    def finish(self, acc: Any) -> Any:
        return None if acc is None else bytes(acc.serialize_compact())

    @override
    def encode(self, value: Any) -> bytes | str:
        return bytes(value)

    @override
    def decode(self, raw: bytes) -> Any:
        return raw

    @override
    def columns(self) -> list[tuple[str, str, str]]:
        return [(self.name, self.trino, self.duckdb), (f"{self.name}_estimate", "double", "DOUBLE")]

    @override
    def arrow(self, values: list[Any]) -> dict[str, Any]:
        import pyarrow as pa

        return {
            self.name: pa.array(values, pa.binary()),
            f"{self.name}_estimate": pa.array([self.render(v) for v in values], pa.float64()),
        }

    @override
    def spark_aggs(self, value: Column, text: Column) -> list[Column]:
        from pyspark.sql import functions as F

        return [F.hll_sketch_agg(spark_item(text), self.lg_k).alias(self.name)]

    @override
    def spark_outputs(self) -> list[Column]:
        from pyspark.sql import functions as F

        estimate = F.hll_sketch_estimate(F.col(self.name)).cast("double")
        return [F.col(self.name), estimate.alias(f"{self.name}_estimate")]

    @override
    def render(self, value: Any) -> Any:
        from datasketches import hll_sketch

        return 0.0 if not value else float(hll_sketch.deserialize(value).get_estimate())

    @override
    def sketch(self, value: Any) -> bytes | None:
        return value or None

    def rse(self) -> float:
        """Relative standard error of the estimate (≈ 1.04/sqrt(2^lg_k))."""
        return 1.04 / (2 ** (self.lg_k / 2))

    @override
    def close(self, a: Any, b: Any) -> bool:
        return abs(float(a or 0) - float(b or 0)) <= 2 * self.rse() * max(1.0, float(b or 0))


class Theta(Hll):
    """``theta``: approximate distinct count, a DataSketches compact theta sketch (``lg_k``).

    Unlike HLL, theta sketches intersect (:func:`theta_intersection`). Strings and
    timestamps are hashed as their text (with :func:`sketch_item`), ints and floats as
    numbers, exactly as Spark's ``theta_sketch_agg`` hashes a string, bigint or double.
    """

    kind = "theta"
    accepts = ("string", "int", "float", "bool", "timestamp")

    @property
    def hashes_text(self) -> bool:
        """Whether the field is hashed as its text (else as a number), in both layers."""
        return self.field_type in ("string", "bool", "timestamp")

    @override
    def merge_all(self, values: Iterable[Any]) -> Any:
        from datasketches import compact_theta_sketch, theta_union

        present = [v for v in values if v]
        if len(present) <= 1:
            return present[0] if present else None
        union = theta_union(self.lg_k)
        for blob in present:
            union.update(compact_theta_sketch.deserialize(blob))
        return bytes(union.get_result().serialize(True))

    @override
    def step(self) -> Step:
        from datasketches import update_theta_sketch

        name, fld, lg_k, as_text = self.name, self.field or "", self.lg_k, self.hashes_text

        def step(acc: dict[str, Any], event: dict[str, Any]) -> None:
            value = event.get(fld)
            if value is not None:
                sk = acc[name]
                if sk is None:
                    sk = acc[name] = update_theta_sketch(lg_k)
                sk.update(sketch_item(value_text(value)) if as_text else value)

        return step

    @override
    def finish(self, acc: Any) -> Any:
        return None if acc is None else bytes(acc.compact().serialize(True))

    @override
    def spark_aggs(self, value: Column, text: Column) -> list[Column]:
        from pyspark.sql import functions as F

        item = spark_item(text) if self.hashes_text else value
        return [F.theta_sketch_agg(item, self.lg_k).alias(self.name)]

    @override
    def spark_outputs(self) -> list[Column]:
        from pyspark.sql import functions as F

        estimate = F.theta_sketch_estimate(F.col(self.name)).cast("double")
        return [F.col(self.name), estimate.alias(f"{self.name}_estimate")]

    @override
    def render(self, value: Any) -> Any:
        from datasketches import compact_theta_sketch

        return 0.0 if not value else float(compact_theta_sketch.deserialize(value).get_estimate())

    def rse(self) -> float:
        """Relative standard error of the estimate (≈ 1/sqrt(2^lg_k))."""
        return 1.0 / (2 ** (self.lg_k / 2))


def theta_intersection(sketches: Iterable[bytes]) -> bytes:
    """The theta sketch of the values present in every one of ``sketches`` (compact)."""
    from datasketches import compact_theta_sketch
    from datasketches import theta_intersection as intersection_t

    inter = intersection_t()
    for blob in sketches:
        inter.update(compact_theta_sketch.deserialize(blob))
    return bytes(inter.get_result().serialize(True))


def quantile_label(q: float) -> str:
    """The answer's name of a quantile: 0.5 -> p50, 0.999 -> p99_9."""
    return "p" + f"{q * 100:.10g}".replace(".", "_")


class Quantiles(Kind):
    """``quantiles`` of an int or float field: a DataSketches KLL sketch (``k``).

    Rendered as ``{"p50": ..., ...}`` for the measure's ``quantiles``. An int field keeps
    a KLL sketch of int64 (Spark's ``kll_sketch_agg_bigint``; Python reads it as a
    ``kll_items_sketch`` with ``PyLongsSerDe``), a float field a KLL sketch of doubles
    (``kll_sketch_agg_double``, ``kll_doubles_sketch``). Exact below ``k`` values; beyond,
    each quantile's rank is within the sketch's normalized rank error.
    """

    kind = "quantiles"
    accepts = NUMERIC
    params = ("k", "quantiles")
    trino, duckdb, arrow_type = "varbinary", "BLOB", "binary"
    orderable = False
    finishes = True

    def __init__(self, measure: Measure, field_type: str | None = None) -> None:
        super().__init__(measure, field_type)
        self.k = int(self.param("k"))
        self.quantiles = tuple(float(q) for q in self.param("quantiles"))
        self.ints = field_type != "float"

    def _new(self) -> Any:
        import datasketches as ds

        return ds.kll_items_sketch(self.k) if self.ints else ds.kll_doubles_sketch(self.k)

    def load(self, blob: bytes) -> Any:
        """The sketch object of serialized bytes."""
        import datasketches as ds

        if self.ints:
            return ds.kll_items_sketch.deserialize(blob, ds.PyLongsSerDe())
        return ds.kll_doubles_sketch.deserialize(blob)

    def _bytes(self, sketch: Any) -> bytes:
        import datasketches as ds

        return bytes(sketch.serialize(ds.PyLongsSerDe()) if self.ints else sketch.serialize())

    @override
    def merge(self, a: Any, b: Any) -> Any:
        return self.merge_all([a, b])

    @override
    def merge_all(self, values: Iterable[Any]) -> Any:
        present = [v for v in values if v]
        if len(present) <= 1:
            return present[0] if present else None
        out = self.load(present[0])
        for blob in present[1:]:
            out.merge(self.load(blob))
        return self._bytes(out)

    @override
    def step(self) -> Step:
        name, fld, new = self.name, self.field or "", self._new
        cast: Callable[[Any], Any] = int if self.ints else float

        def step(acc: dict[str, Any], event: dict[str, Any]) -> None:
            value = event.get(fld)
            if value is not None:
                sk = acc[name]
                if sk is None:
                    sk = acc[name] = new()
                sk.update(cast(value))

        return step

    @override
    def finish(self, acc: Any) -> Any:
        return None if acc is None else self._bytes(acc)

    encode, decode = Hll.encode, Hll.decode

    @override
    def columns(self) -> list[tuple[str, str, str]]:
        typ = ("bigint", "BIGINT") if self.ints else ("double", "DOUBLE")
        derived = [(f"{self.name}_{quantile_label(q)}", *typ) for q in self.quantiles]
        return [(self.name, self.trino, self.duckdb), *derived]

    @override
    def arrow(self, values: list[Any]) -> dict[str, Any]:
        import pyarrow as pa

        out = {self.name: pa.array(values, pa.binary())}
        rendered = [self.render(v) for v in values]
        typ = pa.int64() if self.ints else pa.float64()
        for q in self.quantiles:
            label = quantile_label(q)
            out[f"{self.name}_{label}"] = pa.array([r[label] for r in rendered], typ)
        return out

    @override
    def spark_aggs(self, value: Column, text: Column) -> list[Column]:
        from pyspark.sql import functions as F

        if self.ints:
            return [F.kll_sketch_agg_bigint(value.cast("long"), self.k).alias(self.name)]
        return [F.kll_sketch_agg_double(value.cast("double"), self.k).alias(self.name)]

    @override
    def spark_outputs(self) -> list[Column]:
        from pyspark.sql import functions as F

        get = F.kll_sketch_get_quantile_bigint if self.ints else F.kll_sketch_get_quantile_double
        sketch = F.col(self.name)
        count = F.kll_sketch_get_n_bigint if self.ints else F.kll_sketch_get_n_double
        derived = [  # Spark refuses the quantile of an empty sketch (a bucket without values)
            F.when(count(sketch) > 0, get(sketch, F.lit(q))).alias(
                f"{self.name}_{quantile_label(q)}"
            )
            for q in self.quantiles
        ]
        return [sketch, *derived]

    @override
    def render(self, value: Any) -> Any:
        sketch = self.load(value) if value else None
        if sketch is None or sketch.is_empty():  # Spark's sketch of no value is empty
            return {quantile_label(q): None for q in self.quantiles}
        return {quantile_label(q): sketch.get_quantile(q, True) for q in self.quantiles}

    @override
    def sketch(self, value: Any) -> bytes | None:
        return value or None

    def close(self, a: Any, b: Any) -> bool:
        """Both empty or both not: two KLL sketches of the same values may differ in rank."""
        return {k: v is None for k, v in (a or {}).items()} == {
            k: v is None for k, v in (b or {}).items()
        }


def _union_estimate(cls: type[Hll]) -> Callable[[list[bytes | None]], float]:
    def estimate(sketches: list[bytes | None]) -> float:
        kind = cls(_any(cls.kind))
        return float(kind.render(kind.merge_all(sketches)))

    return estimate


def _union_quantile(ints: bool) -> Callable[[list[bytes | None], float], Any]:
    def quantile(sketches: list[bytes | None], q: float) -> Any:
        kind = Quantiles(_any("quantiles"), "int" if ints else "float")
        merged = kind.merge_all(sketches)
        sketch = kind.load(merged) if merged else None
        return None if sketch is None or sketch.is_empty() else sketch.get_quantile(q, True)

    return quantile


def _any(kind: str) -> Measure:
    from views.definition import Measure

    return Measure("_", kind)


# SQL over merged parts (``POST /sql/merged``, DuckDB): per function its name, its
# parameters, the Python function of (the list of sketches it aggregates, *params), their
# DuckDB types and its result type. Each is a macro ``name(sketch, ...)`` over ``list(sketch)``.
SQL_FUNCTIONS: list[tuple[str, tuple[str, ...], Callable[..., Any], tuple[str, ...], str]] = [
    ("hll_estimate", (), _union_estimate(Hll), (), "DOUBLE"),
    ("theta_estimate", (), _union_estimate(Theta), (), "DOUBLE"),
    ("kll_quantile_bigint", ("q",), _union_quantile(True), ("DOUBLE",), "BIGINT"),
    ("kll_quantile_double", ("q",), _union_quantile(False), ("DOUBLE",), "DOUBLE"),
]


KINDS_BY_NAME: dict[str, type[Kind]] = {
    k.kind: k for k in (Count, Sum, Min, Max, Avg, Hll, Theta, Quantiles)
}
KINDS: tuple[str, ...] = tuple(KINDS_BY_NAME)
PARAMS: tuple[str, ...] = ("lg_k", "k", "quantiles")


def kind_of(measure: Measure, field_type: str | None = None) -> Kind:
    """The kind object of one measure (``field_type``: its field's type, when known)."""
    return KINDS_BY_NAME[measure.kind](measure, field_type)


def check(view: str, measure: Measure, fields: dict[str, str]) -> Kind:
    """The measure's kind object, after checking it against the view's field types.

    Raises:
        DefinitionError: unknown kind, a field it cannot read, a param it does not take
            or a bad param value; the message names the view, the measure and the field.
    """
    m = measure
    what = f"view {view}: measure {m.name!r}"
    cls = KINDS_BY_NAME.get(m.kind)
    if cls is None:
        msg = f"{what} has unknown kind {m.kind!r} (one of {KINDS})"
        raise DefinitionError(msg)
    if not cls.accepts:
        if m.field is not None:
            msg = f"{what}: {m.kind} takes no field (got {m.field!r})"
            raise DefinitionError(msg)
    elif m.field not in fields:
        msg = f"{what} reads unknown field {m.field!r}"
        raise DefinitionError(msg)
    elif fields[m.field] not in cls.accepts:
        msg = (
            f"{what}: {m.kind} reads a field of type {' or '.join(cls.accepts)}; "
            f"field {m.field!r} is {fields[m.field]}"
        )
        raise DefinitionError(msg)
    _check_params(what, cls, m)
    return cls(m, fields.get(m.field or ""))


def _check_params(what: str, cls: type[Kind], m: Measure) -> None:
    for p in PARAMS:
        value = getattr(m, p, None)
        if value is not None and p not in cls.params:
            msg = f"{what} (field {m.field!r}): {m.kind} takes no param {p!r}"
            raise DefinitionError(msg)
    bad = None
    if m.lg_k is not None and not (isinstance(m.lg_k, int) and 5 <= m.lg_k <= 21):
        bad = f"lg_k must be an int in [5, 21], got {m.lg_k!r}"
    if m.k is not None and not (isinstance(m.k, int) and 8 <= m.k <= 65535):
        bad = f"k must be an int in [8, 65535], got {m.k!r}"
    if m.quantiles is not None and not (
        m.quantiles
        and all(
            isinstance(q, float | int) and not isinstance(q, bool) and 0 <= q <= 1
            for q in m.quantiles
        )
        and len({quantile_label(q) for q in m.quantiles}) == len(m.quantiles)
    ):
        bad = f"quantiles must be distinct numbers in [0, 1], got {m.quantiles!r}"
    if bad:
        msg = f"{what} (field {m.field!r}): {bad}"
        raise DefinitionError(msg)
