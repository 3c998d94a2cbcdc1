"""The drift check of the two-codebase lab: do the hand-written copies still agree?

Runs the speed copy (plain Python) and the batch copy (Spark) of a hand-written view over
the SAME records: the master-dataset files of a range of ingest windows. Any difference
is drift between the two codebases, reported per (key, bucket).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batch.master import list_files, read_master
from lab.handwritten import pageviews_batch, pageviews_speed
from lambdalab.hdfs import webhdfs
from lambdalab.paths import HdfsPaths
from lambdalab.settings import Settings


@dataclass
class DriftReport:
    """What the two copies computed over one ingest range, and where they differ."""

    files: int
    records: int
    cells_speed: int
    cells_batch: int
    differences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        """Whether the two hand-written copies disagree on any cell."""
        return bool(self.differences)


def check(settings: Settings, window_from_ms: int = 0, window_to_ms: int = 2**62) -> DriftReport:
    """Compare the hand-written copies over master files of windows in [from, to)."""
    client = webhdfs(settings)
    files = [
        p
        for p, mf in list_files(client, settings, "pageviews")
        if window_from_ms <= mf.window_ms < window_to_ms
    ]
    events = _events(read_master(client, settings, "pageviews", files)) if files else []
    speed = pageviews_speed.compute(events)
    batch = _run_batch(settings, files)
    report = DriftReport(len(files), len(events), len(speed), len(batch))
    for cell in sorted(set(speed) | set(batch)):
        if speed.get(cell) != batch.get(cell):
            report.differences.append(
                {
                    "url": cell[0],
                    "hour_ms": cell[1],
                    "speed": speed.get(cell),
                    "batch": batch.get(cell),
                }
            )
    return report


def _events(table: Any) -> list[dict[str, Any]]:
    from lambdalab.schema import format_ts

    rows = table.select(["url", "bytes", "event_time"]).to_pylist()
    for row in rows:
        row["event_time"] = format_ts(row["event_time"])
    return list(rows)


def _run_batch(settings: Settings, files: list[str]) -> dict[tuple[str, int], dict[str, int]]:
    if not files:
        return {}
    from batch.spark import spark_session

    spark = spark_session(settings, app_name="lambdalab-drift")
    uris = [HdfsPaths(settings).uri(p) for p in files]
    rows = pageviews_batch.compute(spark.read.parquet(*uris)).collect()
    return {
        (r["url"], int(r["hour_ms"])): {
            "views": int(r["views"]),
            "min_bytes": int(r["min_bytes"]),
            "max_bytes": int(r["max_bytes"]),
        }
        for r in rows
    }
