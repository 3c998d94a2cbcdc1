"""A view definition compiled to Spark: the batch layer's form of a view.

The speed layer applies the same :class:`views.definition.ViewDef` in plain Python
(``views.compute``); this module turns it into one Spark aggregation over the master
dataset. Both produce, per (view key, event-time bucket), the same measures, and both
take every measure's form from its kind (:mod:`views.measures`), sketches included, so
the serving layer can merge a batch row with realtime partials.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lambdalab.schema import Stream, get_stream
from views.definition import ESCAPE, KEY_SEP, NULL_KEY, ViewDef
from views.measures import SUM_TYPE  # noqa: F401 (re-exported: the exact sum type)
from views.transform import spark_transformed

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

# Bumped whenever the compiled form changes meaning: part of every version's fingerprint.
CODE_VERSION = "batch-compile-5"  # unchanged: old kinds compile to the same columns
# Timestamps as text exactly as the edge normalises them (lambdalab.schema.format_ts);
# the session time zone is UTC (batch.spark).
TS_TEXT = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"


def read_master(
    spark: SparkSession,
    uris: list[str],
    cut_ms: int,
    stream: Stream | None = None,
    *,
    whole_windows: bool = False,
) -> DataFrame:
    """The master-dataset records of ``uris`` with ingest time before the cut ``cut_ms``.

    ``whole_windows``: the caller knows every file holds one whole ingest window below the
    cut (:func:`batch.build.plan`, from :func:`batch.master.recorded_window`), so no row
    can be at or after it and the row-level filter is left out: it made Spark decode and
    compare every row's ``ingest_ts``, a quarter of the view's time at 20 million events.

    With ``stream``, the files are read in its declared shape (:func:`master_spark_schema`)
    instead of a shape inferred from their footers: Spark then starts no job to read and
    merge every file's schema (at 20 million events, 400 files, that job cost a tenth of
    the view's time). A file written before a field was added lacks its column and reads
    it as null; a field with a default holds it wherever the value is null (schema
    evolution; ``batch.master.conform`` in Python). Without ``stream`` the files' own
    schemas are merged (``mergeSchema``).
    """
    from pyspark.sql import functions as F

    if stream is None:
        df = spark.read.option("mergeSchema", "true").parquet(*uris)
    else:
        df = spark.read.schema(master_spark_schema(stream)).parquet(*uris)
        for f in stream.fields:
            if f.default is not None:
                value = F.lit(_stored(f.type, f.default)).cast(_SPARK_TYPES[f.type])
                df = df.withColumn(f.name, F.coalesce(F.col(f.name), value))
    if whole_windows:
        return df
    cut = datetime.fromtimestamp(cut_ms / 1000, tz=UTC)  # a literal lets Parquet skip row groups
    return df.where(F.col("ingest_ts") < F.lit(cut))


def master_spark_schema(stream: Stream) -> StructType:
    """The Spark schema of ``stream``'s master files: :func:`batch.master.master_schema`.

    Stored types never change (``batch.master.check_schema`` refuses a retyped field),
    so the declaration is the shape of every file, old ones with fields missing.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    from batch.master import master_schema

    return from_arrow_schema(master_schema(stream))


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
    """The aggregate columns of every measure (:meth:`views.measures.Kind.spark_aggs`)."""
    from pyspark.sql import functions as F

    types = view.field_types()
    cols: list[Column] = []
    for kind in view.kinds:
        fld = kind.field
        value = F.col(fld) if fld else F.lit(None)
        text = _text(fld, types[fld]) if fld else F.lit(None)
        cols += kind.spark_aggs(value, text)
    return cols


def compile_view(
    view: ViewDef, records: DataFrame, dimensions: Mapping[str, DataFrame] | None = None
) -> DataFrame:
    """The batch view of ``records``: one row per (key, bucket) with the contract's columns.

    The view's transforms run first (:func:`views.transform.spark_transformed`: enrich
    from ``dimensions``, one version each, derive, filter), as the speed layer runs them.

    Columns: one string column per key field (its value as text, NULL when missing),
    ``key``, ``bucket_ms`` (int64), then each measure's columns
    (:meth:`views.measures.Kind.columns`: its state, then derived columns such as an
    HLL's ``<name>_estimate``). ``key`` joins the
    key parts as ``views.definition.key_part`` renders them, so batch and speed agree on
    every key. Rows are grouped by the key fields' text: the key part is a one-to-one
    function of it (escaping is injective, NULL has its own mark), so the groups are the
    same, and the escaping runs once per output row instead of once per input record.
    """
    from pyspark.sql import functions as F

    records = spark_transformed(view, records, dimensions)
    types = view.field_types()
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
    return [col for kind in view.kinds for col in kind.spark_outputs()]


def output_columns(view: ViewDef) -> list[tuple[str, str]]:
    """(name, Trino type) of every column of a version's Parquet, in order."""
    cols = [(k, "varchar") for k in view.keys] + [("key", "varchar"), ("bucket_ms", "bigint")]
    return cols + [(name, trino) for kind in view.kinds for name, trino, _ in kind.columns()]
