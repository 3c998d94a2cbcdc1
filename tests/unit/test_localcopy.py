"""Local copies of batch versions (batch.localcopy) and the serving pointer that waits for them.

A version's Parquet files (written here with pyarrow in the batch contract's column types,
decimal sums beyond int64 included) are copied once per host, then read by key: every
key's rows and every filtered cell must equal the source rows; two builders build once;
old copies are pruned; a point query allocates little Python memory however large the
version is (no whole-version dict). The serving pointer (serving.deps.PointerCache) keeps
answering the version before a new one until the new one's copy is ready.
"""

from __future__ import annotations

import threading
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.localcopy import LocalCopies
from serving.deps import PointerCache

pytestmark = pytest.mark.unit
HOUR = 3_600_000
LINEAGE: dict[str, Any] = {
    "cut_ms": 7,
    "view_definition": {
        "keys": ["url", "referrer"],
        "measures": [
            {"name": "views", "kind": "count", "field": None},
            {"name": "total", "kind": "sum", "field": "bytes"},
            {"name": "visitors", "kind": "hll", "field": "user_id"},
        ],
    },
}


def _source(n: int) -> list[dict[str, Any]]:
    """n rows of a two-field view, keys shuffled across files, each key in up to 3 buckets."""
    rows = []
    for i in range(n):
        url, ref = f"/p/{(i * 7919) % (n // 3 + 1)}", ("g", "(none)")[i % 2]
        rows.append(
            {
                "url": url,
                "referrer": ref,
                "key": f"{url}\x1f{ref}",
                "bucket_ms": (i % 3) * HOUR,
                "views": i,
                "total": Decimal(2**64 + i),
                "visitors": bytes([i % 256]) * 8,
                "visitors_estimate": float(i % 5),
            }
        )
    unique = {(r["key"], r["bucket_ms"]): r for r in rows}  # one row per cell, as Spark writes
    return list(unique.values())


def _fetcher(tmp: Path, rows: list[dict[str, Any]], calls: list[int]) -> Any:
    schema = pa.schema(
        [
            ("url", pa.string()),
            ("referrer", pa.string()),
            ("key", pa.string()),
            ("bucket_ms", pa.int64()),
            ("views", pa.int64()),
            ("total", pa.decimal128(38, 0)),
            ("visitors", pa.binary()),
            ("visitors_estimate", pa.float64()),
        ]
    )
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    half = len(rows) // 2
    for name, part in (("b.parquet", rows[:half]), ("a.parquet", rows[half:])):
        pq.write_table(pa.Table.from_pylist(part, schema), src / name)

    def fetch(into: Path) -> list[Path]:
        calls.append(1)
        out = []
        for f in sorted(src.iterdir()):
            (into / f.name).write_bytes(f.read_bytes())
            out.append(into / f.name)
        return out

    return fetch


def _as_cells(rows: list[dict[str, Any]], lo: int, hi: int) -> dict[str, dict[int, Any]]:
    out: dict[str, dict[int, Any]] = {}
    for r in rows:
        if lo <= r["bucket_ms"] < hi:
            measures = {k: v for k, v in r.items() if k not in ("url", "referrer", "key")}
            bucket = measures.pop("bucket_ms")
            out.setdefault(r["key"], {})[bucket] = {**measures, "total": int(measures["total"])}
    return out


def test_rows_and_cells_equal_the_source(tmp_path: Path) -> None:
    rows, calls = _source(600), []
    version = LocalCopies(tmp_path / "c").open("v", 1, LINEAGE, _fetcher(tmp_path, rows, calls))
    want = _as_cells(rows, HOUR, 3 * HOUR)
    for key in {r["key"] for r in rows} | {"/absent\x1fg", ""}:
        assert version.rows(key, HOUR, 3 * HOUR) == want.get(key, {}), key
    got = version.cells(HOUR, 3 * HOUR)
    totals = [r["total"] for b in got.values() for r in b.values()]
    assert totals and all(type(t) is int and t > 2**64 for t in totals)  # exact ints, not floats
    keep = lambda key: key.startswith("/p/1")  # noqa: E731
    assert version.cells(HOUR, 3 * HOUR, keep) == {k: v for k, v in want.items() if keep(k)}
    assert version.cells(0, 0) == {}


def test_two_builders_build_once_and_old_copies_are_pruned(tmp_path: Path) -> None:
    rows, calls = _source(60), []
    fetch = _fetcher(tmp_path, rows, calls)
    copies = LocalCopies(tmp_path / "c", keep=2)
    builders = [
        threading.Thread(target=LocalCopies(tmp_path / "c").build, args=("v", 1, LINEAGE, fetch))
        for _ in range(3)
    ]
    for b in builders:
        b.start()
    for b in builders:
        b.join()
    assert len(calls) == 1 and copies.ready("v", 1, LINEAGE)
    for n in (2, 3):
        copies.build("v", n, LINEAGE, fetch)
    assert [copies.ready("v", n, LINEAGE) for n in (1, 2, 3)] == [False, True, True]
    assert not list((tmp_path / "c" / "v").glob(".build-*"))  # no temporary left behind


def test_a_point_query_allocates_little_whatever_the_version_size(tmp_path: Path) -> None:
    rows, calls = _source(60_000), []
    version = LocalCopies(tmp_path / "c").open("v", 1, LINEAGE, _fetcher(tmp_path, rows, calls))
    tracemalloc.start()
    try:
        got = version.rows(rows[100]["key"], 0, 3 * HOUR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got and peak < 200_000, peak  # a whole-version dict of these rows is ~30 MB


class _Info:
    def __init__(self, version: int, definition: str = "f1") -> None:
        self.view, self.version, self.cut_ms = "v", version, version * 10
        self.lineage = {"view_fingerprint": definition}


class _Inner:
    """A batch source whose newest version is 2, with its copy built only when allowed."""

    def __init__(self, definitions: tuple[str, str] = ("f1", "f1")) -> None:
        self.built = {1}
        self.allowed = threading.Event()
        self.definitions = definitions  # of versions 1 and 2

    def current(self, view: str) -> _Info:
        return _Info(2, self.definitions[1])

    def info(self, view: str, version: int) -> _Info:
        return _Info(version, self.definitions[version - 1])

    def ready(self, info: _Info) -> bool:
        return info.version in self.built

    def prepare(self, info: _Info) -> None:
        assert self.allowed.wait(5)
        self.built.add(info.version)


def test_the_pointer_serves_the_previous_version_until_the_new_copy_is_ready() -> None:
    inner = _Inner()
    pointer = PointerCache(inner, ttl_s=0)  # type: ignore[arg-type]
    assert pointer.current("v").version == 1  # v2's copy builds in the background
    assert pointer.current("v").version == 1
    inner.allowed.set()
    for _ in range(100):
        if pointer.current("v").version == 2:
            break
        threading.Event().wait(0.02)
    assert pointer.current("v").version == 2


def test_the_pointer_waits_when_no_earlier_copy_is_ready() -> None:
    inner = _Inner()
    inner.built = set()
    inner.allowed.set()
    assert PointerCache(inner, ttl_s=0).current("v").version == 2  # type: ignore[arg-type]


def test_the_pointer_waits_rather_than_serve_a_version_of_another_definition() -> None:
    """A changed definition or dimension version: the speed layer rebuilt from the new cut,
    so the older version's realtime windows are gone and it would answer short."""
    inner = _Inner(definitions=("f1", "f2"))
    pointer = PointerCache(inner, ttl_s=0)  # type: ignore[arg-type]
    inner.allowed.set()
    assert pointer.current("v").version == 2
