"""Millions of page views for the batch benchmark, written as the archiver writes them.

The archiver lands 5,000 to 12,000 events/s here and the producer sends 7,000 to 9,000, so
20 million events through Kafka would take 50 minutes to two hours. This module writes the
bulk of the benchmark's master dataset directly, vectorised with numpy and Arrow, through
the archiver's own commit (:func:`batch.master.commit_file`): same schema, file size cap
(``MAX_ROWS_PER_FILE``), naming, compression and claims. The raw ``value`` of each row is
the JSON the producer would have sent; :func:`check_format` decodes a sample of it with the
stream's own decoder and rebuilds it with :func:`batch.master.to_table`, which must give
the same table. The traffic resembles ``ingest.generator``'s: Zipf URLs and users, a few
referrers, log-normal sizes, 5 % of events late by minutes to hours.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch.archiver import MAX_ROWS_PER_FILE
from batch.master import commit_file, master_schema, to_table
from ingest.generator import REFERRERS, GeneratorConfig
from lambdalab.hdfs import webhdfs
from lambdalab.paths import MasterFile
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings

BACKFILL_PARTITION = 1000  # past any topic's partitions: these offsets exist in no Kafka log
W_MS = 60_000
PARTITIONS = 4
WRITERS = 3  # files generated and committed side by side (HDFS latency, not CPU, bounds it)


def _zipf(n: int, s: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** s
    return weights / weights.sum()


def events_table(settings: Settings, mf: MasterFile, n: int, seed: int) -> pa.Table:
    """``n`` page views of one master file: coordinates, raw JSON value, parsed fields."""
    cfg, rng = GeneratorConfig(), np.random.default_rng(seed)
    ingest = mf.window_ms + np.sort(rng.integers(0, W_MS, n))
    late = rng.random(n) < cfg.late_fraction
    lag_ms = np.where(
        late,
        rng.integers(int(cfg.late_min_s * 1000), int(cfg.late_max_s * 1000), n),
        rng.integers(0, 30_000, n),
    )
    urls = pa.array([f"https://shop.example/p/{i}" for i in range(cfg.urls)])
    users = pa.array([f"u{i:06d}" for i in range(cfg.users)])
    url = urls.take(pa.array(rng.choice(cfg.urls, n, p=_zipf(cfg.urls, cfg.zipf_s))))
    user = users.take(pa.array(rng.choice(cfg.users, n, p=_zipf(cfg.users, cfg.zipf_s))))
    ref_pick = pa.array(rng.integers(0, len(REFERRERS), n))
    referrer = pa.array(list(REFERRERS), pa.string()).take(ref_pick)
    ref_json = pa.array([f'"{r}"' if r else "null" for r in REFERRERS]).take(ref_pick)
    size = pa.array(rng.lognormal(9.0, 1.0, n).astype(np.int64))
    hexed = rng.bytes(16 * n).hex()
    event_id = pa.array([hexed[i * 32 : (i + 1) * 32] for i in range(n)])
    event_time = pa.array(ingest - lag_ms, pa.timestamp("ms", tz="UTC"))
    ts_text = pc.binary_join_element_wise(pc.strftime(event_time, "%Y-%m-%dT%H:%M:%S"), "Z", "")
    parts: list[Any] = ['{"event_id":"', event_id, '","url":"', url, '","user_id":"', user]
    parts += ['","referrer":', ref_json, ',"bytes":', pc.cast(size, pa.string())]
    parts += [',"event_time":"', ts_text, '"}']
    value = pc.binary_join_element_wise(*parts, "")
    columns = {
        "topic": pa.array([settings.topic_for(PAGE_VIEWS.name)] * n),
        "partition": pa.array(np.full(n, mf.partition, np.int32)),
        "offset": pa.array(np.arange(mf.first_offset, mf.first_offset + n, dtype=np.int64)),
        "ingest_ts": pa.array(ingest, pa.timestamp("ms", tz="UTC")),
        "key": pc.cast(event_id, pa.binary()),
        "value": pc.cast(value, pa.binary()),
        "event_id": event_id,
        "url": url,
        "user_id": user,
        "referrer": referrer,
        "bytes": size,
        "event_time": event_time,
    }
    return pa.table(columns, schema=master_schema(PAGE_VIEWS))


def backfill(settings: Settings, events: int, local: Path, seed: int) -> dict[str, Any]:
    """Commit ``events`` page views as master files of ``MAX_ROWS_PER_FILE`` rows.

    One ingest window per file, the last a few windows before now (below any cut taken
    from now on); a copy of each file goes to ``local`` for DuckDB.
    """
    assert settings.batch.window_s * 1000 == W_MS, "files of one ingest window each, as landed"
    client = webhdfs(settings)
    files = -(-events // MAX_ROWS_PER_FILE) if events > 0 else 0
    now_ms = int(time.time() * 1000)
    first_window = now_ms - now_ms % W_MS - (files + 3) * W_MS
    nxt = dict.fromkeys(range(BACKFILL_PARTITION, BACKFILL_PARTITION + PARTITIONS), 0)

    plans = []
    for k in range(files):
        n = min(MAX_ROWS_PER_FILE, events - k * MAX_ROWS_PER_FILE)
        p = BACKFILL_PARTITION + k % PARTITIONS
        plans.append((k, MasterFile(first_window + k * W_MS, p, nxt[p], nxt[p] + n - 1), n))
        nxt[p] += n

    def write(k: int, mf: MasterFile, n: int) -> str:
        table = events_table(settings, mf, n, seed * 1_000_003 + k)
        pq.write_table(table, local / f"backfill-{k}.parquet", compression="zstd")
        return commit_file(client, settings, PAGE_VIEWS, mf, table)

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        paths = list(pool.map(lambda plan: write(*plan), plans))
    return {"events": events, "files": files, "paths": paths}


def check_format(settings: Settings, paths: list[str], rows: int = 500) -> int:
    """Rebuild the first ``rows`` of each file from its raw values with the archiver's code.

    Returns how many rows were compared. Raises AssertionError on any difference: the
    generated files would then not be what the archiver writes.
    """
    client = webhdfs(settings)
    checked = 0
    for path in paths:
        with client.read(path) as reader:
            table = pq.read_table(io.BytesIO(reader.read())).slice(0, rows)
        records = table.to_pylist()
        for row in records:
            event, reason = PAGE_VIEWS.decode(row["value"])
            assert event is not None, f"{path}: offset {row['offset']} does not decode: {reason}"
            row["event"] = event
        rebuilt = to_table(PAGE_VIEWS, records)
        assert rebuilt.equals(table.cast(rebuilt.schema)), f"{path}: not the archiver's format"
        checked += len(records)
    return checked
