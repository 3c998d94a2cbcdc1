"""Page views per URL per hour -- the BATCH-layer copy, written by hand in Spark.

WRITTEN TWICE ON PURPOSE: the speed copy is lab/handwritten/pageviews_speed.py. Any change
here must be made there too; ``lambdalab lab drift`` shows what happens when it is not.
"""

from __future__ import annotations

from typing import Any

HOUR_MS = 3_600_000


def compute(master: Any) -> Any:
    """Spark DataFrame of the master dataset -> (url, hour_ms, views, min_bytes, max_bytes)."""
    from pyspark.sql import functions as F

    event_ms = (F.col("event_time").cast("double") * 1000).cast("long")
    return (
        master.withColumn("hour_ms", event_ms - event_ms % HOUR_MS)
        .groupBy("url", "hour_ms")
        .agg(
            F.count(F.lit(1)).alias("views"),
            F.min("bytes").alias("min_bytes"),
            F.max("bytes").alias("max_bytes"),
        )
    )
