"""Local copies of published batch versions: what the serving layer reads, key by key.

A published version is immutable, so each host keeps one local columnar copy of it and
every API worker on the host reads that copy: an uncompressed Arrow IPC file sorted by
(key, bucket_ms), memory-mapped read-only. The operating system's page cache holds it
once for all workers, a point query is a binary search on the key column, and nothing is
ever loaded whole into Python objects, so memory stays bounded by what a query touches.

A copy is built once per host: under an exclusive file lock (a second worker waits and
then finds it built), written to a temporary file in the same directory, and renamed into
place. A crash at any point leaves either no copy (the next reader builds it) or a whole
one; a stale temporary file is overwritten by the next build. The name holds the version
number and a digest of its lineage, so a namespace recreated under the same name never
reads another run's copy. Copies beyond the newest ``keep`` per view are deleted; a worker
that still has one mapped keeps reading it (Linux keeps an unlinked file's pages).
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from lambdalab.errors import DefinitionError, LambdaLabError
from views.definition import Measure, ViewDef
from views.measures import Kind, kind_of

Fetch = Callable[[Path], list[Path]]  # download a version's Parquet files into a directory
BATCH_ROWS = 65_536  # rows per Arrow record batch of a copy
BUILD_MEMORY = "512MB"  # DuckDB's sort of one version while it builds a copy
_NOT_MEASURES = ("key", "bucket_ms")


def copy_name(version: int, lineage: dict[str, Any]) -> str:
    """File name of a version's copy: its number and a digest of its lineage."""
    digest = hashlib.sha256(json.dumps(lineage, sort_keys=True).encode()).hexdigest()[:12]
    return f"v{version:06d}-{digest}.arrow"


class LocalVersion:
    """One memory-mapped local copy: rows of one key, or cells of many.

    Values are as the version's Parquet holds them, except that exact sums (decimal) come
    back as Python ints, like the speed layer's.
    """

    def __init__(self, path: Path, key_fields: tuple[str, ...], kinds: Sequence[Kind] = ()) -> None:
        """``kinds``: the view's measures, when a row must be read back into their values.

        Kinds whose value is one column (count, sum, min, max, sketches) need none; a kind
        kept in several columns (avg: sum and count) is read with its ``from_batch``.
        """
        self.path = path
        self._kinds = [k for k in kinds if type(k).from_batch is not Kind.from_batch]
        self._all = list(kinds)
        self.table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        self.key_fields = key_fields
        skip = set(_NOT_MEASURES) | set(key_fields)
        self.measures = [n for n in self.table.column_names if n not in skip]
        keys = self.table.column("key")
        self._chunks = keys.chunks
        self._starts = [0]
        for chunk in self._chunks:
            self._starts.append(self._starts[-1] + len(chunk))

    def __len__(self) -> int:
        return self.table.num_rows

    def _bounds(self, key: str) -> tuple[int, int]:
        column = _KeyColumn(self._chunks, self._starts)
        lo = bisect.bisect_left(column, key)
        return lo, bisect.bisect_right(column, key, lo=lo)

    def rows(self, key: str, bucket_from_ms: int, bucket_to_ms: int) -> dict[int, dict[str, Any]]:
        """bucket_ms -> {measure: value} of ``key``, buckets in [from, to)."""
        lo, hi = self._bounds(key)
        if lo == hi:
            return {}
        part = self.table.slice(lo, hi - lo).select(["bucket_ms", *self.measures])
        return {
            int(row.pop("bucket_ms")): self._values(row)
            for row in part.to_pylist()
            if bucket_from_ms <= row["bucket_ms"] < bucket_to_ms
        }

    def cells(
        self, bucket_from_ms: int, bucket_to_ms: int, keep: Callable[[str], bool] | None = None
    ) -> dict[str, dict[int, dict[str, Any]]]:
        """Per key ``keep`` accepts: bucket_ms -> measures, buckets in [from, to).

        Reads one record batch at a time; ``keep`` is asked once per key.
        """
        import pyarrow.compute as pc

        out: dict[str, dict[int, dict[str, Any]]] = {}
        verdicts: dict[str, bool] = {}
        for batch in self.table.to_batches(BATCH_ROWS):
            b = batch.column("bucket_ms")
            inside = pc.and_(pc.greater_equal(b, bucket_from_ms), pc.less(b, bucket_to_ms))
            batch = batch.filter(inside)
            keys = batch.column("key").to_pylist()
            wanted = [i for i, k in enumerate(keys) if _verdict(verdicts, keep, k)]
            if not wanted:
                continue
            chosen = batch.take(pa.array(wanted, pa.int64()))
            names = ["key", "bucket_ms", *self.measures]
            for row in chosen.select(names).to_pylist():
                key, bucket = row.pop("key"), int(row.pop("bucket_ms"))
                out.setdefault(key, {})[bucket] = self._values(row)
        return out

    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row as measure values (the columns as they are unless a kind reads several)."""
        if not self._kinds:
            return _exact(row)
        return {k.name: k.from_batch(row) for k in self._all}


class _KeyColumn(Sequence[str]):
    """The key column of a copy as a sequence, for :mod:`bisect` (it is sorted)."""

    def __init__(self, chunks: list[Any], starts: list[int]) -> None:
        self.chunks, self.starts = chunks, starts

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i: Any) -> Any:
        c = bisect.bisect_right(self.starts, i) - 1
        return self.chunks[c][i - self.starts[c]].as_py()


def _verdict(seen: dict[str, bool], keep: Callable[[str], bool] | None, key: str) -> bool:
    if keep is None:
        return True
    verdict = seen.get(key)
    if verdict is None:
        verdict = seen[key] = keep(key)
    return verdict


def _exact(row: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in row.items()}


class LocalCopies:
    """The local copies of one namespace's versions on this host, under ``root``.

    Thread-safe; one instance per process. Builds are serialised per copy across
    processes by a lock file beside it.
    """

    def __init__(self, root: Path, keep: int = 4) -> None:
        self.root = root
        self.keep = keep
        self._open: dict[Path, LocalVersion] = {}
        self._lock = threading.Lock()

    def path(self, view: str, version: int, lineage: dict[str, Any]) -> Path:
        """Where the copy of ``view`` version ``version`` lives (built or not)."""
        return self.root / view / copy_name(version, lineage)

    def ready(self, view: str, version: int, lineage: dict[str, Any]) -> bool:
        """Whether the copy exists (a copy is only ever visible whole)."""
        return self.path(view, version, lineage).exists()

    def build(self, view: str, version: int, lineage: dict[str, Any], fetch: Fetch) -> Path:
        """Build the copy unless it exists; return its path. Blocks while another builds it.

        ``fetch`` downloads the version's Parquet files into a directory it is given.
        """
        final = self.path(view, version, lineage)
        if final.exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(final.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not final.exists():
                _write(final, lineage, fetch)
        self.prune(view)
        return final

    def open(self, view: str, version: int, lineage: dict[str, Any], fetch: Fetch) -> LocalVersion:
        """The copy, memory-mapped (built first if needed), shared by this process's threads."""
        path = self.path(view, version, lineage)
        with self._lock:
            hit = self._open.get(path)
        if hit is not None:
            return hit
        self.build(view, version, lineage, fetch)
        definition = lineage["view_definition"]
        opened = LocalVersion(path, tuple(definition["keys"]), _kinds(definition))
        with self._lock:
            self._open = {p: v for p, v in self._open.items() if p.parent != path.parent}
            self._open[path] = self._open.get(path, opened)
            return self._open[path]

    def prune(self, view: str) -> list[Path]:
        """Delete all but the newest ``keep`` copies of ``view``; return those deleted."""
        copies = sorted(self._copies(view), reverse=True)
        for old in copies[self.keep :]:
            old.unlink(missing_ok=True)
            old.with_suffix(".lock").unlink(missing_ok=True)
        return copies[self.keep :]

    def _copies(self, view: str) -> Iterator[Path]:
        folder = self.root / view
        return folder.glob("v*.arrow") if folder.exists() else iter(())


def _write(final: Path, lineage: dict[str, Any], fetch: Fetch) -> None:
    """Download, sort by (key, bucket_ms) in DuckDB, stream into a temp file, rename."""
    import tempfile

    import duckdb

    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".build-") as tmp:
        files = [str(p) for p in fetch(Path(tmp))]
        con = duckdb.connect(config={"memory_limit": BUILD_MEMORY, "threads": 1})
        try:
            con.execute(f"SET temp_directory = '{tmp}/spill'")
            reader = con.sql(_select(files, lineage)).to_arrow_reader(BATCH_ROWS)
            part = Path(tmp) / final.name
            with pa.OSFile(str(part), "wb") as sink:
                with pa.ipc.new_file(sink, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(part, final)
        finally:
            con.close()


def _kinds(definition: dict[str, Any]) -> list[Kind]:
    """The measure kinds of a lineage's definition (field types from its stream if known)."""
    try:
        return list(ViewDef.from_dict(definition).kinds)
    except (DefinitionError, LambdaLabError):  # a partial record: its kinds without types
        return [kind_of(Measure.from_dict(m)) for m in definition["measures"]]


def _select(files: list[str], lineage: dict[str, Any]) -> str:
    """The copy's rows: every Parquet file of the version (typed by the view when none)."""
    definition = lineage["view_definition"]
    cols = [(k, "VARCHAR") for k in definition["keys"]] + [("key", "VARCHAR")]
    cols.append(("bucket_ms", "BIGINT"))
    cols += [(name, duck) for kind in _kinds(definition) for name, _, duck in kind.columns()]
    names = ", ".join(f'CAST("{n}" AS {t}) AS "{n}"' for n, t in cols)
    if not files:
        empty = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in cols)
        return f"SELECT {empty} WHERE false"
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"SELECT {names} FROM read_parquet([{listed}]) ORDER BY key, bucket_ms"
