"""Benchmark of batch recompute: the compiled view vs a plain Spark groupBy vs DuckDB.

All three read the same master Parquet in the same run (Spark from HDFS, DuckDB from a
local copy of the same files) and compute the same (url, hour) aggregates of
``pageviews_by_url_hourly``, every result row fetched (so no engine can prune an
aggregate nobody reads). Reported: rows/s of each (best of ``repeats``) and the
ratios, so the numbers mean something on any machine. Run:
``.venv/bin/python -m bench.bench_batch [rows]``.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch.master import commit_file, to_table
from lambdalab.hdfs import webhdfs
from lambdalab.paths import HdfsPaths, MasterFile
from lambdalab.schema import PAGE_VIEWS, format_ts
from lambdalab.settings import Settings, get_settings

W_MS = 60_000
VIEW = "pageviews_by_url_hourly"


def _land(settings: Settings, rows: int, files: int, seed: int = 1) -> list[str]:
    """Write ``rows`` synthetic page views as ``files`` committed master files."""
    rng = random.Random(seed)
    client, paths, base = webhdfs(settings), HdfsPaths(settings), 1_790_000_000_000
    out, per = [], rows // files
    for f in range(files):
        mf = MasterFile(base + f * W_MS, 0, f * per, (f + 1) * per - 1)
        batch = [_row(settings, rng, mf.window_ms, mf.first_offset + i) for i in range(per)]
        commit_file(client, settings, PAGE_VIEWS, mf, to_table(PAGE_VIEWS, batch))
        out.append(f"{paths.master(PAGE_VIEWS.name)}/{mf.date_dir}/{mf.name}")
    return out


def _row(settings: Settings, rng: random.Random, window_ms: int, offset: int) -> dict[str, Any]:
    ingest_ms = window_ms + rng.randrange(W_MS)
    event = {
        "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "url": f"/page/{rng.randrange(500)}",
        "user_id": f"u{rng.randrange(20_000)}",
        "referrer": rng.choice([None, "google", "news"]),
        "bytes": rng.randrange(100, 50_000),
        "event_time": format_ts(
            datetime.fromtimestamp((ingest_ms - rng.randrange(7_200_000)) / 1000, tz=UTC)
        ),
    }
    return {
        "topic": settings.topic_for(PAGE_VIEWS.name),
        "partition": 0,
        "offset": offset,
        "ingest_ts": datetime.fromtimestamp(ingest_ms / 1000, tz=UTC),
        "key": None,
        "value": PAGE_VIEWS.encode(event),
        "event": event,
    }


def _best(func: Callable[[], int], repeats: int) -> tuple[float, int]:
    best, groups = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        groups = func()
        best = min(best, time.perf_counter() - start)
    return best, groups


def _spark_cases(settings: Settings, spark: Any, uris: list[str]) -> dict[str, Callable[[], int]]:
    from pyspark.sql import functions as F

    from batch.compile import compile_view, read_master
    from views.registry import get_view

    view, cut = get_view(VIEW), 4_102_444_800_000  # 2100-01-01: every record

    def compiled() -> int:
        return len(compile_view(view, read_master(spark, uris, cut)).collect())

    def plain() -> int:
        df = spark.read.parquet(*uris)
        hour = F.expr("unix_millis(event_time) - pmod(unix_millis(event_time), 3600000)")
        agg = df.groupBy("url", hour.alias("b")).agg(F.count("*"), F.min("bytes"), F.max("bytes"))
        return len(agg.collect())

    return {"compiled view (Spark)": compiled, "plain Spark groupBy": plain}


def _duckdb_case(settings: Settings, paths: list[str], tmp: Path) -> Callable[[], int]:
    import duckdb

    client = webhdfs(settings)
    for i, path in enumerate(paths):
        client.download(path, str(tmp / f"part-{i}.parquet"))
    sql = (
        "SELECT url, epoch_ms(event_time) - epoch_ms(event_time) % 3600000 "
        "AS b, count(*), min(bytes), max(bytes) "
        f"FROM read_parquet('{tmp}/*.parquet') GROUP BY ALL"
    )

    con = duckdb.connect()

    def run() -> int:
        return len(con.execute(sql).fetchall())

    return run


def run(
    settings: Settings, rows: int = 200_000, files: int = 8, repeats: int = 3
) -> dict[str, Any]:
    """Land ``rows`` synthetic events, time the three engines; return the results."""
    from batch.spark import spark_session

    paths = _land(settings, rows, files)
    uris = [HdfsPaths(settings).uri(p) for p in paths]
    spark = spark_session(settings, app_name="bench-batch")
    results: dict[str, Any] = {"rows": rows, "files": files, "engines": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cases = {
                **_spark_cases(settings, spark, uris),
                "DuckDB (local copy)": _duckdb_case(settings, paths, Path(tmp)),
            }
            for name, func in cases.items():
                func()  # warm-up: JIT, file listing, caches
                seconds, groups = _best(func, repeats)
                results["engines"][name] = {
                    "seconds": seconds,
                    "rows_per_s": rows / seconds,
                    "groups": groups,
                }
    finally:
        webhdfs(settings).delete(settings.hdfs_root, recursive=True)
    base = results["engines"]["compiled view (Spark)"]["rows_per_s"]
    for r in results["engines"].values():
        r["vs_compiled"] = r["rows_per_s"] / base
    print_table(results)
    return results


def print_table(results: dict[str, Any]) -> None:
    """The results as a table on the console."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"batch recompute of {VIEW}: {results['rows']} rows, {results['files']} files"
    )
    for col in ("engine", "seconds (best)", "rows/s", "groups", "x compiled"):
        table.add_column(col)
    for name, r in results["engines"].items():
        table.add_row(
            name,
            f"{r['seconds']:.3f}",
            f"{r['rows_per_s']:,.0f}",
            str(r["groups"]),
            f"{r['vs_compiled']:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    import json

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    settings = get_settings().model_copy(update={"namespace": f"bench{uuid.uuid4().hex[:8]}"})
    print(json.dumps(run(settings, rows=rows), indent=2))
