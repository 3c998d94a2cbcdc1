"""Dimension tables on HDFS: load a version, pin a view to the newest, read it in Spark.

A dimension version is immutable and published like a batch view version: its Parquet
and ``_meta.json`` are written to a staging folder, then one rename makes it
``dimensions/{name}/v{n:06d}`` (a rename never moves into an existing folder, so two
loaders racing get distinct numbers). The newest version is the current one. Loading the
same rows again publishes nothing (the content hash is compared with the newest's).

A batch cycle pins each view to the newest version of every dimension it enriches from
(:func:`pin`), so that version is part of the view's fingerprint: a new dimension version
makes the next cycle publish a new batch version. The speed layer copies the same
versions into Redis itself (``speed.dimensions``).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from lambdalab.errors import BatchError, DefinitionError
from lambdalab.hdfs import DIMENSION_DATA, answering, dimension_versions, webhdfs
from lambdalab.paths import HdfsPaths
from lambdalab.settings import Settings
from views.definition import ViewDef
from views.dimension import Dimension, Table, content_hash, topic_rows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

META = "_meta.json"
ATTEMPTS = 5


def arrow_table(dim: Dimension, table: Table) -> Any:
    """The rows as a pyarrow table: the key column, then each value field, typed."""
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    columns = {dim.key.name: pa.array(list(table), types[dim.key.type])}
    for i, f in enumerate(dim.fields):
        columns[f.name] = pa.array([values[i] for values in table.values()], types[f.type])
    return pa.table(columns)


def load(settings: Settings, dim: Dimension, table: Table, source: str) -> dict[str, Any]:
    """Publish ``table`` as the next version of ``dim`` (nothing if the newest is equal).

    Returns:
        {"dimension", "version", "status": "loaded" | "unchanged", "rows", "hash"}.

    Raises:
        ServiceUnavailable: HDFS did not answer.
        BatchError: no version number could be taken in ``ATTEMPTS`` renames.
    """
    import pyarrow.parquet as pq

    from batch.publish import VersionStore

    client, paths, digest = webhdfs(settings), HdfsPaths(settings), content_hash(table)
    out = {"dimension": dim.name, "rows": len(table), "hash": digest}
    newest = dimension_versions(client, settings, dim.name)
    if newest and version_meta(settings, dim.name, newest[0]).get("hash") == digest:
        return {**out, "version": newest[0], "status": "unchanged"}
    staged = f"{paths.dimension(dim.name)}/_staging/{uuid.uuid4().hex[:12]}"
    buffer = io.BytesIO()
    pq.write_table(arrow_table(dim, table), buffer)
    meta = {"hash": digest, "rows": len(table), "source": source, "loaded_ms": _now_ms()}
    with answering(settings, staged):
        client.write(f"{staged}/{DIMENSION_DATA}", data=buffer.getvalue())
        client.write(f"{staged}/{META}", data=json.dumps(meta).encode())
    store = VersionStore(settings)
    for _ in range(ATTEMPTS):
        n = (newest[0] if newest else 0) + 1
        with answering(settings, staged):
            if store._rename_new(staged, paths.dimension_version(dim.name, n)):
                return {**out, "version": n, "status": "loaded"}
        newest = dimension_versions(client, settings, dim.name)
    msg = f"dimension {dim.name}: no version number after {ATTEMPTS} attempts (other loaders?)"
    raise BatchError(msg)


def topic_table(settings: Settings, dim: Dimension, topic: str) -> Table:
    """The rows a compacted topic holds now (its newest value per key), read to its end.

    Raises:
        ValidationFailed: a record is malformed (named by partition and offset).
        ServiceUnavailable: Kafka did not answer.
    """
    from lambdalab.topics import read_topic

    records = sorted(read_topic(settings, topic), key=lambda r: (r.partition, r.offset))
    return topic_rows(dim, ((r.partition, r.offset, r.key, r.value) for r in records))


def version_meta(settings: Settings, name: str, n: int) -> dict[str, Any]:
    """The ``_meta.json`` of version ``n`` of dimension ``name`` (hash, rows, source)."""
    path = f"{HdfsPaths(settings).dimension_version(name, n)}/{META}"
    client = webhdfs(settings)
    with answering(settings, path), client.read(path) as reader:
        return dict(json.loads(reader.read()))


def pin(settings: Settings, view: ViewDef) -> ViewDef:
    """``view`` pinned to the newest version of each dimension it enriches from.

    Raises:
        DefinitionError: a dimension has no version yet (saying how to load one).
        ServiceUnavailable: HDFS did not answer.
    """
    if not view.enrich:
        return view
    client = webhdfs(settings)
    versions: dict[str, int | None] = {}
    for e in view.enrich:
        found = dimension_versions(client, settings, e.dimension)
        if not found:
            msg = (
                f"view {view.name} enriches from dimension {e.dimension!r}, which has no "
                f"version yet: lambdalab dim load {e.dimension} FILE"
            )
            raise DefinitionError(msg)
        versions[e.dimension] = found[0]
    return view.pinned(versions)


def frames(spark: SparkSession, settings: Settings, view: ViewDef) -> dict[str, DataFrame]:
    """The pinned dimension versions of ``view`` as Spark DataFrames, by dimension name."""
    paths = HdfsPaths(settings)
    out: dict[str, DataFrame] = {}
    for e in view.enrich:
        if e.version is None:
            msg = f"view {view.name}: dimension {e.dimension!r} is not pinned to a version"
            raise BatchError(msg)
        path = f"{paths.dimension_version(e.dimension, e.version)}/{DIMENSION_DATA}"
        out[e.dimension] = spark.read.parquet(paths.uri(path))
    return out


def _now_ms() -> int:
    return int(time.time() * 1000)
