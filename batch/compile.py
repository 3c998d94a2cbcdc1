"""A view definition compiled to Spark: the batch layer's form of a view.

The speed layer applies the same :class:`views.definition.ViewDef` in plain Python
(``views.compute``); this module turns it into one Spark aggregation over the master
dataset. Both produce, per (view key, event-time bucket), the same measures, and both
write HLL sketches in the Apache DataSketches binary format (Spark's ``hll_sketch_agg``),
so the serving layer can merge a batch row with realtime partials.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lambdalab.schema import Stream, get_stream
from views.definition import ESCAPE, HLL_LG_K, HLL_MARK, KEY_SEP, NULL_KEY, ViewDef

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# Bumped whenever the compiled form changes meaning: part of every version's fingerprint.
CODE_VERSION = "batch-compile-5"
# Timestamps as text exactly as the edge normalises them (lambdalab.schema.format_ts);
# the session time zone is UTC (batch.spark).
TS_TEXT = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
SUM_TYPE = "decimal(38,0)"  # sums are exact beyond int64, like Python ints in the speed layer


def read_master(
    spark: SparkSession, uris: list[str], cut_ms: int, stream: Stream | None = None
) -> DataFrame:
    """The master-dataset records of ``uris`` with ingest time before the cut ``cut_ms``.

    Files written before a field was added to ``stream`` lack its column: the files'
    schemas are merged (``mergeSchema``) and a field with a default holds it wherever the
    column is absent or null (schema evolution; ``batch.master.conform`` in Python).
    """
    from pyspark.sql import functions as F

    df = spark.read.option("mergeSchema", "true").parquet(*uris)
    if stream is not None:
        for f in stream.fields:
            if f.name in df.columns and f.default is None:
                continue
            value = F.lit(_stored(f.type, f.default)).cast(_SPARK_TYPES[f.type])
            column = F.coalesce(F.col(f.name), value) if f.name in df.columns else value
            df = df.withColumn(f.name, column)
    cut = datetime.fromtimestamp(cut_ms / 1000, tz=UTC)  # a literal lets Parquet skip row groups
    return df.where(F.col("ingest_ts") < F.lit(cut))


_SPARK_TYPES = {
    "string": "string",
    "int": "bigint",
    "float": "double",
    "bool": "boolean",
    "timestamp": "timestamp",
}


def _stored(field_type: str, value: object) -> object:
    """A default as a Spark literal: a timestamp's normal ISO text as a datetime."""
    if field_type == "timestamp" and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def bucket_column(view: ViewDef, time_field: str = "event_time") -> Column:
    """Start (ms) of the event-time bucket of each record, as ``ViewDef.bucket_of``."""
    from pyspark.sql import functions as F

    event_ms = F.expr(f"unix_millis(`{time_field}`)")
    return event_ms - F.pmod(event_ms, F.lit(view.bucket_s * 1000))


def measure_columns(view: ViewDef) -> list[Column]:
    """One Spark aggregate per measure, plus ``<name>_estimate`` after each HLL."""
    from pyspark.sql import functions as F

    types = _field_types(view)
    cols: list[Column] = []
    for m in view.measures:
        if m.kind == "count":
            cols.append(F.count(F.lit(1)).cast("long").alias(m.name))
        elif m.kind == "sum":
            total = F.sum(F.col(str(m.field)).cast(SUM_TYPE))
            cols.append(F.coalesce(total, F.lit(0)).cast(SUM_TYPE).alias(m.name))
        elif m.kind in ("min", "max"):
            agg = F.min if m.kind == "min" else F.max
            cols.append(agg(str(m.field)).cast("long").alias(m.name))
        else:
            value = _hll_item(_text(str(m.field), types[str(m.field)]))
            cols.append(F.hll_sketch_agg(value, HLL_LG_K).alias(m.name))
    return cols


def compile_view(view: ViewDef, records: DataFrame) -> DataFrame:
    """The batch view of ``records``: one row per (key, bucket) with the contract's columns.

    Columns: one string column per key field (its value as text, NULL when missing),
    ``key``, ``bucket_ms`` (int64), one column per measure (int64; decimal(38,0) for sums;
    binary HLL sketch) and ``<name>_estimate`` (double) for each HLL. ``key`` joins the
    key parts as ``views.definition.key_part`` renders them, so batch and speed agree on
    every key. Rows are grouped by the key fields' text: the key part is a one-to-one
    function of it (escaping is injective, NULL has its own mark), so the groups are the
    same, and the escaping runs once per output row instead of once per input record.
    """
    from pyspark.sql import functions as F

    types = _field_types(view)
    groups = [_text(k, types[k]).alias(f"__v{i}") for i, k in enumerate(view.keys)]
    time_field = get_stream(view.stream).time_field
    grouped = records.groupBy(*groups, bucket_column(view, time_field).alias("__bucket"))
    parts = [_key_part(F.col(f"__v{i}")) for i in range(len(view.keys))]
    return grouped.agg(*measure_columns(view)).select(
        *[F.col(f"__v{i}").alias(k) for i, k in enumerate(view.keys)],
        F.concat_ws(KEY_SEP, *parts).alias("key"),
        F.col("__bucket").cast("long").alias("bucket_ms"),
        *_measure_outputs(view),
    )


def _field_types(view: ViewDef) -> dict[str, str]:
    return {f.name: f.type for f in get_stream(view.stream).fields}


def _hll_item(text: Column) -> Column:
    """``views.definition.hll_item`` in Spark: ``""`` counts as a value (NULL stays NULL)."""
    from pyspark.sql import functions as F

    mark = F.lit(HLL_MARK)
    return (
        F.when(text == F.lit(""), mark)
        .when(text.startswith(HLL_MARK), F.concat(mark, text))
        .otherwise(text)
    )


def _text(field: str, field_type: str) -> Column:
    """A field's value as the speed layer sees it in an event: ``str(value)``."""
    from pyspark.sql import functions as F

    column = F.col(field)
    return F.date_format(column, TS_TEXT) if field_type == "timestamp" else column.cast("string")


def _key_part(text: Column) -> Column:
    """``views.definition.key_part`` in Spark, of a field's text: escape, NULL_KEY if missing."""
    from pyspark.sql import functions as F

    escaped = F.replace(
        F.replace(text, F.lit(ESCAPE), F.lit(ESCAPE * 2)), F.lit(KEY_SEP), F.lit(ESCAPE + "u001f")
    )
    return (
        F.when(text.isNull(), F.lit(NULL_KEY))
        .when(escaped == F.lit(NULL_KEY), F.concat(F.lit(ESCAPE), escaped))
        .otherwise(escaped)
    )


def _measure_outputs(view: ViewDef) -> list[Column]:
    from pyspark.sql import functions as F

    cols: list[Column] = []
    for m in view.measures:
        cols.append(F.col(m.name))
        if m.kind == "hll":
            estimate = F.hll_sketch_estimate(F.col(m.name)).cast("double")
            cols.append(estimate.alias(f"{m.name}_estimate"))
    return cols


def output_columns(view: ViewDef) -> list[tuple[str, str]]:
    """(name, Trino type) of every column of a version's Parquet, in order."""
    cols = [(k, "varchar") for k in view.keys] + [("key", "varchar"), ("bucket_ms", "bigint")]
    for m in view.measures:
        if m.kind == "hll":
            cols += [(m.name, "varbinary"), (f"{m.name}_estimate", "double")]
        else:
            cols.append((m.name, SUM_TYPE if m.kind == "sum" else "bigint"))
    return cols
