"""The batch layer: archiver to the master dataset, Spark recompute, versioned views, Trino."""

from lambdalab.exports import lazy

__all__, __getattr__ = lazy(
    __name__,
    {
        "land": "batch.archiver",
        "run_cycle": "batch.tasks",
        "BatchReader": "batch.reader",
        "VersionStore": "batch.publish",
        "spark_session": "batch.spark",
    },
)
