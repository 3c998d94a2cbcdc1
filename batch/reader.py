"""Reading published batch view versions: the batch half of every serving-layer answer.

The serving layer asks :class:`BatchReader` for the current version of a view (its number
and cut, from one listing of ``versions/``) and then for rows of that same version only,
so one query never mixes two versions. A version is immutable once published, which is
why a whole version may be cached in memory by its number.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hdfs import InsecureClient

from batch.publish import VersionStore
from lambdalab.errors import NotFound
from lambdalab.hdfs import guarded
from lambdalab.settings import Settings

_MAX_CACHED = 8


@dataclass(frozen=True)
class VersionInfo:
    """One published version of a view."""

    view: str
    version: int
    cut_ms: int
    path: str
    lineage: dict[str, Any]


class BatchReader:
    """Published versions and their rows, read over WebHDFS.

    Raises ServiceUnavailable from every method when HDFS does not answer.
    """

    def __init__(self, settings: Settings, client: InsecureClient | None = None) -> None:
        self.settings = settings
        self.store = VersionStore(settings, client)
        self._cache: dict[tuple[str, int], dict[str, dict[int, dict[str, Any]]]] = {}

    def versions(self, view: str) -> list[VersionInfo]:
        """Published versions of ``view``, newest first."""
        return [self._info(view, n) for n in self._guard(self.store.published, view)]

    def current(self, view: str) -> VersionInfo | None:
        """The newest published version of ``view``, or None before the first publication."""
        numbers = self._guard(self.store.published, view)
        return self._info(view, numbers[0]) if numbers else None

    def rows(
        self, view: str, version: int, key: str, bucket_from_ms: int, bucket_to_ms: int
    ) -> dict[int, dict[str, Any]]:
        """bucket_ms -> {measure: value} of one key, buckets in [from, to), as in Parquet."""
        table = self._table(view, version)
        buckets = table.get(key, {})
        return {b: dict(v) for b, v in buckets.items() if bucket_from_ms <= b < bucket_to_ms}

    def cells(
        self,
        view: str,
        version: int,
        bucket_from_ms: int,
        bucket_to_ms: int,
        keep: Callable[[str], bool] | None = None,
    ) -> dict[str, dict[int, dict[str, Any]]]:
        """Per key ``keep`` accepts: bucket_ms -> {measure: value}, buckets in [from, to).

        The many-key form of :meth:`rows`, read from the same cached version.
        """
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for key, buckets in self._table(view, version).items():
            if keep is not None and not keep(key):
                continue
            chosen = {b: dict(v) for b, v in buckets.items() if bucket_from_ms <= b < bucket_to_ms}
            if chosen:
                out[key] = chosen
        return out

    def _info(self, view: str, n: int) -> VersionInfo:
        lineage = self._guard(self.store.lineage, view, n)
        path = self.store.paths.version(view, n)
        return VersionInfo(view, n, int(lineage["cut_ms"]), path, lineage)

    def _table(self, view: str, version: int) -> dict[str, dict[int, dict[str, Any]]]:
        cached = self._cache.get((view, version))
        if cached is None:
            cached = self._guard(self._load, view, version)
            if len(self._cache) >= _MAX_CACHED:
                self._cache.pop(next(iter(self._cache)))
            self._cache[(view, version)] = cached
        return cached

    def _load(self, view: str, version: int) -> dict[str, dict[int, dict[str, Any]]]:
        import pyarrow.parquet as pq

        data = f"{self.store.paths.version(view, version)}/data"
        if not self.store.exists(data):
            msg = f"view {view}: version {version} is not published ({data})"
            raise NotFound(msg)
        keys = tuple(self.store.lineage(view, version)["view_definition"]["keys"])
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for name in sorted(self.store.client.list(data)):
            if name.startswith(("_", ".")) or not name.endswith(".parquet"):
                continue
            with self.store.client.read(f"{data}/{name}") as reader:
                table = pq.read_table(io.BytesIO(reader.read()))
            _index(table.to_pylist(), keys, out)
        return out

    def _guard(self, func: Any, *args: Any) -> Any:
        return guarded(self.settings, f"view {args[0]}", func, *args)


_NOT_MEASURES = ("key", "bucket_ms")


def _index(
    rows: list[dict[str, Any]], keys: tuple[str, ...], out: dict[str, dict[int, dict[str, Any]]]
) -> None:
    skip = set(_NOT_MEASURES) | set(keys)
    for row in rows:
        key, bucket = row["key"], int(row["bucket_ms"])
        out.setdefault(key, {})[bucket] = {
            k: int(v) if isinstance(v, Decimal) else v for k, v in row.items() if k not in skip
        }
